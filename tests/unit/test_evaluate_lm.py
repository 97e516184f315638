"""``minidisc evaluate-lm``: the window protocol, perplexity against independent references,
bits per byte, errors, and the command in a fresh process.

The model is a tiny random LLaMA (grouped-query attention, tied embeddings) saved to a
folder with a small byte-level BPE tokenizer trained on the spot, so tokens span several
bytes and multi-byte characters occur.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from minidisc.errors import ConfigError, DataError, ModelError
from minidisc.evaluation.perplexity import (
    Window,
    evaluate_perplexity,
    format_table,
    load_causal_lm,
    plan_windows,
)
from tests.helpers import run_minidisc

TEXT = (
    "The quick brown fox jumps over the lazy dog. Café au lait, naïve façade — déjà vu.\n"
    "A second line, with numbers 12345 and the fox again: the dog sleeps.\n"
)
OTHER = "Another document about the lazy fox, shorter.\n"
POSITIONS = 128


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator([TEXT, OTHER] * 5, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A random LlamaForCausalLM (4 heads over 2 KV heads, tied embeddings) and its tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.elastic_helpers import randomize_

    folder = tmp_path_factory.mktemp("lm") / "tiny-llama"
    tokenizer = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, intermediate_size=48, max_position_embeddings=POSITIONS,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = randomize_(LlamaForCausalLM(config), scale=0.3)  # outputs far from uniform
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "a.txt").write_text(TEXT, encoding="utf-8")
    (folder / "b.txt").write_text(OTHER, encoding="utf-8")
    return folder


def stream(lm, text: str) -> list[int]:
    return [lm.tokenizer.bos_token_id, *lm.tokenizer(text, add_special_tokens=False)["input_ids"]]


def reference_nll(lm, ids: list[int], block: int, stride: int) -> float:
    """The protocol restated target by target: x_j is scored in the first window that
    reaches it, k = max(0, ceil((j − block)/stride)), from the context x_{k·stride} … x_{j−1};
    one forward pass per target."""
    n = len(ids) - 1
    total = 0.0
    with torch.no_grad():
        for j in range(1, n + 1):
            k = max(0, math.ceil((j - block) / stride))
            context = torch.tensor([ids[k * stride : j]])
            assert context.shape[1] <= block
            logits = lm.model(input_ids=context).logits[0, -1].double()
            total -= float(torch.log_softmax(logits, -1)[ids[j]])
    return total


# ---------------------------------------------------------------------------
# windows


def test_windows_disjoint_and_sliding() -> None:
    assert plan_windows(10, 4, 4) == [Window(0, 4, 0), Window(4, 8, 0), Window(8, 10, 0)]
    assert plan_windows(10, 4, 2) == [Window(0, 4, 0), Window(2, 6, 2), Window(4, 8, 2), Window(6, 10, 2)]
    assert plan_windows(3, 8, 2) == [Window(0, 3, 0)]
    assert plan_windows(0, 4, 4) == []
    for n in range(1, 30):
        for block in (1, 2, 5, 8):
            for stride in range(1, block + 1):
                windows = plan_windows(n, block, stride)
                scored = [j for w in windows for j in range(w.begin + w.score_from + 1, w.end + 1)]
                assert scored == list(range(1, n + 1))  # every target once, in order
                assert all(w.length <= block for w in windows)
                # after the first window, every scored target has block − stride + 1 tokens of context
                assert all(w.score_from == block - stride for w in windows[1:])
    with pytest.raises(ConfigError, match="stride"):
        plan_windows(10, 4, 5)
    with pytest.raises(ConfigError, match="block-size"):
        plan_windows(10, 0, 1)


# ---------------------------------------------------------------------------
# perplexity and bits per byte


def test_one_window_is_the_models_own_loss(tiny_lm: Path, tmp_path: Path) -> None:
    lm = load_causal_lm(str(tiny_lm))
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    ids = stream(lm, TEXT)
    n = len(ids) - 1
    assert n < POSITIONS
    result = evaluate_perplexity(lm, [tmp_path / "t.txt"], block_size=POSITIONS, device="cpu")
    with torch.no_grad():
        tensor = torch.tensor([ids])
        mean = float(lm.model(input_ids=tensor, labels=tensor).loss)  # mean over the n next tokens
    assert result.tokens == n and result.windows == 1 and result.documents == 1
    assert result.mean_nll == pytest.approx(mean, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(mean), rel=1e-5)
    assert result.nll == pytest.approx(n * mean, rel=1e-5)
    # bits per byte: total NLL in bits over the UTF-8 bytes of the text (multi-byte characters in it)
    n_bytes = len(TEXT.encode("utf-8"))
    assert n_bytes > len(TEXT) and result.bytes == n_bytes
    assert result.bits_per_byte == pytest.approx(n * mean / math.log(2) / n_bytes, rel=1e-5)
    assert result.bits_per_byte != pytest.approx(result.mean_nll / math.log(2), rel=1e-2)  # ≠ bits per token


@pytest.mark.parametrize("block, stride", [(8, 8), (8, 3), (16, 1), (5, 4)])
def test_windows_match_the_target_by_target_reference(tiny_lm: Path, tmp_path: Path, block: int, stride: int) -> None:
    lm = load_causal_lm(str(tiny_lm))
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    result = evaluate_perplexity(lm, [tmp_path / "t.txt"], block_size=block, stride=stride, batch_size=3, device="cpu")
    ids = stream(lm, TEXT)
    expected = reference_nll(lm, ids, block, stride)
    assert result.tokens == len(ids) - 1
    assert result.nll == pytest.approx(expected, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(expected / (len(ids) - 1)), rel=1e-5)
    assert result.windows == len(plan_windows(len(ids) - 1, block, stride))


def test_stride_changes_context_but_not_what_is_scored(tiny_lm: Path, tmp_path: Path) -> None:
    lm = load_causal_lm(str(tiny_lm))
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    disjoint = evaluate_perplexity(lm, [tmp_path / "t.txt"], block_size=8, device="cpu")
    sliding = evaluate_perplexity(lm, [tmp_path / "t.txt"], block_size=8, stride=2, device="cpu")
    assert disjoint.stride == 8 and sliding.stride == 2
    assert disjoint.tokens == sliding.tokens and disjoint.bytes == sliding.bytes
    assert sliding.windows > disjoint.windows
    assert sliding.nll != pytest.approx(disjoint.nll, rel=1e-4)


def test_batches_and_documents(tiny_lm: Path, corpus: Path) -> None:
    lm = load_causal_lm(str(tiny_lm))
    one = evaluate_perplexity(lm, [corpus], block_size=8, stride=4, batch_size=1, device="cpu")
    many = evaluate_perplexity(lm, [corpus], block_size=8, stride=4, batch_size=16, device="cpu")
    assert one.nll == pytest.approx(many.nll, rel=1e-6) and one.tokens == many.tokens
    # a folder is its .txt files in name order, each scored on its own from the BOS token
    parts = [evaluate_perplexity(lm, [corpus / name], block_size=8, stride=4, device="cpu") for name in ("a.txt", "b.txt")]
    assert one.documents == 2
    assert one.nll == pytest.approx(sum(p.nll for p in parts), rel=1e-6)
    assert one.tokens == sum(p.tokens for p in parts) and one.bytes == sum(p.bytes for p in parts)
    assert one.bytes == len((TEXT + OTHER).encode("utf-8"))
    assert "perplexity" in format_table(one) and "bits per byte" in format_table(one)


def test_max_tokens_cuts_the_corpus(tiny_lm: Path, corpus: Path) -> None:
    lm = load_causal_lm(str(tiny_lm))
    ids = stream(lm, TEXT)
    full = evaluate_perplexity(lm, [corpus], block_size=8, device="cpu")
    cut = evaluate_perplexity(lm, [corpus], block_size=8, max_tokens=20, device="cpu")
    assert cut.tokens == 20 and cut.truncated and not full.truncated and cut.documents == 1
    assert cut.corpus_tokens == full.tokens
    assert cut.bytes == len(lm.tokenizer.decode(ids[1:21]).encode("utf-8"))
    assert cut.nll == pytest.approx(reference_nll(lm, ids[:21], 8, 8), rel=1e-5)
    assert cut.bits_per_byte == pytest.approx(cut.nll / math.log(2) / cut.bytes)


# ---------------------------------------------------------------------------
# errors


def test_input_errors(tiny_lm: Path, tmp_path: Path) -> None:
    lm = load_causal_lm(str(tiny_lm))
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    with pytest.raises(DataError, match="not found"):
        evaluate_perplexity(lm, [tmp_path / "missing.txt"], device="cpu")
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(DataError, match="no text"):
        evaluate_perplexity(lm, [tmp_path / "blank.txt"], device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no \.txt files"):
        evaluate_perplexity(lm, [tmp_path / "empty"], device="cpu")
    with pytest.raises(ConfigError, match=f"larger than the {POSITIONS} positions"):
        evaluate_perplexity(lm, [tmp_path / "t.txt"], block_size=POSITIONS + 1, device="cpu")
    with pytest.raises(ConfigError, match="stride"):
        evaluate_perplexity(lm, [tmp_path / "t.txt"], block_size=8, stride=9, device="cpu")
    with pytest.raises(ConfigError, match="max-tokens"):
        evaluate_perplexity(lm, [tmp_path / "t.txt"], max_tokens=0, device="cpu")


def test_models_that_are_not_causal_lms(tmp_path: Path, tiny_lm: Path) -> None:
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from tests.helpers import write_tiny_bert

    with pytest.raises(ModelError, match="not a causal language model"):
        load_causal_lm(str(write_tiny_bert(tmp_path / "bert")))
    # a decoder saved with a classification head and untied embeddings has no LM head
    config = LlamaConfig.from_pretrained(tiny_lm)
    config.tie_word_embeddings = False
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "classifier")
    _tokenizer().save_pretrained(tmp_path / "classifier")
    with pytest.raises(ModelError, match="no LM head"):
        load_causal_lm(str(tmp_path / "classifier"))
    with pytest.raises(ModelError, match="does not exist"):
        load_causal_lm(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------
# the command, in a fresh process


def test_cli_prints_a_table_and_writes_json(tiny_lm: Path, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "ppl.json"
    done = run_minidisc(
        "evaluate-lm", str(tiny_lm), "--corpus", str(corpus / "a.txt"), "--corpus", str(corpus / "b.txt"),
        "--block-size", "8", "--stride", "4", "--batch-size", "2", "--output", str(out), "--no-progress",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "perplexity" in done.stdout and "bits per byte" in done.stdout and f"wrote {out}" in done.stdout
    report = json.loads(out.read_text())
    expected = evaluate_perplexity(load_causal_lm(str(tiny_lm)), [corpus], block_size=8, stride=4, device="cpu")
    assert report["tokens"] == expected.tokens and report["bytes"] == expected.bytes
    assert report["perplexity"] == pytest.approx(expected.perplexity, rel=1e-6)
    assert report["block_size"] == 8 and report["stride"] == 4 and report["context_token"] == "<s>"
    assert f"{report['perplexity']:.3f}" in done.stdout
    assert not list(out.parent.glob(".*"))  # written atomically: no staging leftovers


def test_cli_errors_are_one_line(tiny_lm: Path, tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    cases = [
        (["--corpus", str(tmp_path / "missing.txt")], "not found"),
        (["--corpus", str(tmp_path / "t.txt"), "--block-size", "1000"], "larger than the 128 positions"),
    ]
    for extra, message in cases:
        done = run_minidisc("evaluate-lm", str(tiny_lm), *extra, "--no-progress", cwd=tmp_path)
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], done.stderr
