"""MiniDisc on a token-classification task (CoNLL-2003 layout) with a tiny random BERT:
every evaluation of the sandwich run completes (the reference implementation crashed at
the first NER evaluation) and the exported student tags tokens."""

from __future__ import annotations

import math

import pytest

from minidisc.config import CompressConfig, DataConfig, TrainConfig
from tests.ner_helpers import write_tiny_conll, write_tiny_encoder

STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, eval_steps=2, patience=None, seed=1)


def test_compress_on_conll_evaluates_every_candidate(tmp_path):
    from minidisc.elastic.io import load_student
    from minidisc.fileio import read_json
    from minidisc.schedules.minidisc import run_compress
    from minidisc.tasks.registry import CONLL_TAGS

    cfg = CompressConfig(
        teacher=str(write_tiny_encoder(tmp_path / "encoder")),
        data=DataConfig(task="conll2003", data_dir=str(write_tiny_conll(tmp_path / "data")), max_length=16,
                        importance_samples=16),
        target_sparsity=0.75, truncation=0.25, grid=(0.0, 0.25, 0.5),
        finetune=STAGE, sandwich=STAGE, final=STAGE,
    )
    out = tmp_path / "run"
    assert run_compress(cfg, out).finished

    stages = read_json(out / "manifest.json")["stages"]
    assert set(stages["teacher"]["dev"]) >= {"f1", "precision", "recall", "main"}
    first = read_json(out / "iter1" / "candidates.json")
    assert [c["sparsity"] for c in first["candidates"]] == [0.25, 0.5, 0.75]
    assert len(first["history"]) == 2  # 32 sentences / batch 8 = 4 steps, evaluated every 2
    for record in first["history"]:
        assert all(0.0 <= m <= 1.0 and math.isfinite(m) for m in record["metrics"].values())
    for c in first["candidates"]:
        assert 0.0 <= c["best_metric"] <= 1.0

    student = load_student(out / "student")
    assert type(student).__name__ == "BertForTokenClassification"
    assert student.config.minidisc_subnet["sparsity"] == pytest.approx(0.75)
    report = read_json(out / "report.json")
    assert report["student"]["dev"]["main"] == pytest.approx(report["student"]["dev"]["f1"])
    _assert_tags_every_token(student, out / "student", len(CONLL_TAGS))


def _assert_tags_every_token(student, folder, n_tags: int) -> None:
    import torch
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(folder)(["Alice visited Paris ."], return_tensors="pt")
    with torch.no_grad():
        logits = student(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], n_tags)
