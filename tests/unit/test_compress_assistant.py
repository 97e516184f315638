"""The teacher-assistant path of MiniDisc on a tiny random BERT: iteration 1 selects an
assistant below the target (λ = 0, so no bonus for sparsity and ties go to the denser
candidate), iteration 2 distils that assistant into the target student."""

from __future__ import annotations

import pytest

from minidisc.config import CompressConfig, TrainConfig
from tests.helpers import tiny_sst2_data, write_tiny_bert

STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, eval_steps=3, patience=None, seed=1)
TARGET = 0.9


@pytest.fixture()
def cfg(tmp_path):
    teacher = write_tiny_bert(tmp_path / "teacher")
    return CompressConfig(
        teacher=str(teacher),
        data=tiny_sst2_data(tmp_path / "glue"),
        # λ = 0: the target (90 % pruned) only wins by beating every denser candidate
        # outright; ties (an untrained tiny model scores chance everywhere) go to the denser
        target_sparsity=TARGET, lam=0.0, iterations=2, truncation=0.25, grid=(0.0, 0.25, 0.5),
        finetune=STAGE, sandwich=STAGE, final=STAGE,
    )


def test_assistant_is_teacher_of_the_final_iteration(cfg, tmp_path):
    from minidisc.elastic.io import load_student
    from minidisc.elastic.levels import find_level
    from minidisc.elastic.sparsity_map import load_sparsity_map
    from minidisc.fileio import read_json
    from minidisc.schedules.minidisc import run_compress

    out = tmp_path / "run"
    run_compress(cfg, out)
    stages = read_json(out / "manifest.json")["stages"]
    first = stages["iter1"]
    assert first["selected"] < TARGET - 1e-6, "λ = 0 should have picked a denser assistant"
    assert (out / "iter2" / "model" / "config.json").is_file()

    second = stages["iter2"]
    assert second["final"] and second["teacher_level"] == pytest.approx(first["selected"])
    assert [c["sparsity"] for c in second["candidates"]] == [pytest.approx(TARGET)]
    assert second["selected"] == pytest.approx(TARGET)
    # same batches, a smaller teacher: iteration 2's teacher was the assistant, not the full model
    def per_token(stage):
        return stage["compute"]["teacher_forward_flops"] / stage["compute"]["tokens"]

    assert per_token(second) < per_token(first)

    # iteration 2 started from the assistant: its sizes are the assistant's spec
    spec_map = load_sparsity_map(out / "sparsified")
    assistant = read_json(out / "iter1" / "model" / "config.json")["minidisc_subnet"]
    assert assistant["heads"] == list(spec_map[find_level(spec_map, first["selected"])].heads)

    target = spec_map[find_level(spec_map, TARGET)]
    student = load_student(out / "student")
    assert student.config.minidisc_subnet["sparsity"] == pytest.approx(TARGET)
    for layer, heads, neurons in zip(student.bert.encoder.layer, target.heads, target.neurons):
        assert layer.attention.self.query.out_features == heads * 8
        assert layer.intermediate.dense.out_features == neurons

    report = read_json(out / "report.json")
    assert [a["iteration"] for a in report["assistants"]] == [1]
    assert report["assistants"][0]["sparsity"] == pytest.approx(first["selected"])
    _assert_reloaded_metric_matches(out, student, report["student"]["dev"]["main"])


def _assert_reloaded_metric_matches(out, student, reported: float) -> None:
    """Re-evaluate the reloaded student on the run's dev set; it must match the report."""
    from minidisc.config import CompressConfig as Cfg
    from minidisc.config import load_yaml
    from minidisc.models import ModelSource, load_tokenizer
    from minidisc.training.data import prepare_task_data
    from minidisc.training.finetune import evaluate_model

    cfg = load_yaml(out / "config.yaml", Cfg)
    data = prepare_task_data(cfg.data, load_tokenizer(ModelSource(str(out / "student"))), seed=cfg.finetune.seed)
    dev, _ = evaluate_model(student, data, TrainConfig(), out / ".reeval")
    assert dev["main"] == pytest.approx(reported, abs=1e-9)
