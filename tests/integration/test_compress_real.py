"""`compress` with the packaged all-MiniLM-L6-v2 teacher on a real SST-2 subset."""

from __future__ import annotations

import pytest
import torch

from minidisc.config import CompressConfig, DataConfig, TrainConfig
from tests.helpers import require_glue

pytestmark = pytest.mark.integration

STAGE = TrainConfig(epochs=1, batch_size=16, eval_batch_size=64, learning_rate=1e-4, eval_steps=5, patience=None)


def test_compress_packaged_teacher_on_sst2_subset(tmp_path):
    from minidisc.elastic.io import load_student
    from minidisc.fileio import read_json
    from minidisc.models import ModelSource, load_tokenizer
    from minidisc.schedules.minidisc import run_compress
    from minidisc.training.data import prepare_task_data
    from minidisc.training.finetune import evaluate_model

    glue = require_glue()
    cfg = CompressConfig(
        data=DataConfig(task="sst2", data_dir=str(glue), max_train_samples=160, max_eval_samples=64,
                        max_length=32, importance_samples=64),
        target_sparsity=0.9, grid=(0.5, 0.7, 0.9), finetune=STAGE, sandwich=STAGE, final=STAGE,
    )
    run = run_compress(cfg, tmp_path / "run")
    report = read_json(run.path / "report.json")

    # the student is the 10 % model: its non-embedding FLOPs are about a tenth of the teacher's
    ratio = report["student"]["flops_per_128_tokens"] / report["teacher"]["flops_per_128_tokens"]
    assert 0.07 < ratio < 0.13
    assert report["teacher"]["non_embedding_params"] == pytest.approx(10.6e6, rel=0.05)  # MiniLM-L6-H384
    # the default selection slice is held out of the 160 training sentences
    held = report["data"]["selection_examples"]
    assert report["data"]["subsampled"] and held > 0 and report["data"]["train_examples"] + held == 160

    # the exported student reloads and scores on dev what the report says
    student = load_student(run.path / "student").eval()
    assert isinstance(student, torch.nn.Module)
    assert report["student"]["dev"]["main"] == pytest.approx(report["student"]["dev"]["accuracy"])
    data = prepare_task_data(cfg.data, load_tokenizer(ModelSource(str(run.path / "student"))), seed=cfg.finetune.seed)
    here = evaluate_model(student, data, TrainConfig(), tmp_path / "eval")[0]
    assert report["student"]["dev"]["main"] == pytest.approx(here["main"], abs=1e-6)
    assert (run.path / "tradeoff.png").is_file() and (run.path / "report.md").is_file()
