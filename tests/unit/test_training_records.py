"""Typed stage records: the JSON they write is the JSON earlier versions wrote (old run
folders stay readable), and reading one back ignores the run's bookkeeping keys."""

from __future__ import annotations

import json

import pytest

from minidisc.training.records import (
    CandidatesRecord,
    HopRecord,
    IterationRecord,
    Level,
    StudentRecord,
    iteration_names,
    iterations,
)
from minidisc.training.tracker import CandidateTracker

# a manifest entry of iteration 1 as written before the records existed (plus bookkeeping)
OLD_ITERATION = {
    "status": "done", "finished": "2026-12-01T10:00:00", "wall_time_s": 12.5,
    "iteration": 1, "final": False, "teacher_level": 0.0, "selected": 0.5, "selected_metric": 0.8,
    "candidates": [
        {"sparsity": 0.25, "best_metric": 0.82, "best_step": 6, "tradeoff": 0.82},
        {"sparsity": 0.5, "best_metric": 0.8, "best_step": 3, "tradeoff": 0.8},
    ],
    "compute": {"train_flops": 1.0e9, "tokens": 640},
    "fingerprint": "abc", "outputs": [{"path": "iter1/model/model.safetensors", "size": 1}],
}
OLD_HOP = {
    "status": "done", "wall_time_s": 3.0, "level": {"sparsity": 0.5, "layers": None},
    "spec": {"heads": [2, 2], "neurons": [32, 32], "sparsity": 0.5}, "dev_main": 0.7, "best_step": 4,
    "history": [{"step": 4, "main": 0.7}], "objective": "kd", "compute": {"train_flops": 2.0},
    "teacher": "sparsified", "reused_from": "/runs/a/hop-s0.5",
}


def _result(entry, bookkeeping=("status", "finished", "wall_time_s", "fingerprint", "outputs", "reused_from")):
    return {k: v for k, v in entry.items() if k not in bookkeeping}


def test_an_old_iteration_entry_reads_back_and_writes_the_same_json():
    record = IterationRecord.from_dict(OLD_ITERATION)
    assert record.selected == 0.5 and record.candidates[0].best_step == 6 and not record.final
    assert record.to_dict() == _result(OLD_ITERATION)
    assert list(record.to_dict()) == list(_result(OLD_ITERATION))  # same key order in manifest.json


def test_an_old_hop_and_student_entry_read_back_and_write_the_same_json():
    hop = HopRecord.from_dict(OLD_HOP)
    assert hop.level == Level(sparsity=0.5) and hop.teacher == "sparsified" and hop.dev_main == 0.7
    assert hop.to_dict() == _result(OLD_HOP)
    layered = HopRecord.from_dict({**OLD_HOP, "level": {"sparsity": None, "layers": [0, 2]}})
    assert layered.level.layers == (0, 2) and layered.level.label == "L0_2"
    assert layered.to_dict()["level"] == {"sparsity": None, "layers": [0, 2]}

    student = {"status": "done", "dev": {"main": 0.6, "accuracy": 0.6}, "plain_hf_loadable": False, "from": "hop-s0.5"}
    assert StudentRecord.from_dict(student).to_dict() == _result(student)
    compress_student = {"dev": {"main": 0.6}, "plain_hf_loadable": True}
    assert StudentRecord.from_dict(compress_student).to_dict() == compress_student  # no "from" key added


def test_the_trackers_summary_survives_json_with_float_keyed_metrics():
    tracker = CandidateTracker([0.25, 0.5], lam=0.2, target=0.5)
    tracker.update(3, {0.25: 0.7, 0.5: 0.6}, lambda s: s)
    tracker.update(6, {0.25: 0.75, 0.5: 0.72}, lambda s: s)
    summary = tracker.summary()
    text = json.dumps(summary.to_dict())
    assert json.loads(text)["history"][0]["metrics"] == {"0.25": 0.7, "0.5": 0.6}  # as earlier versions wrote
    again = CandidatesRecord.from_dict(json.loads(text))
    assert again == summary
    assert again.selected == 0.5 and again.candidates[1].tradeoff == pytest.approx(0.72 + 0.2 * 0.5)


def test_iterations_are_read_in_numeric_order():
    stages = {"teacher": {}, "iter10": {**OLD_ITERATION, "iteration": 10}, "iter2": {**OLD_ITERATION, "iteration": 2},
              "iterate": {}, "iter1": OLD_ITERATION}
    assert iteration_names(stages) == ["iter1", "iter2", "iter10"]
    assert [it.iteration for it in iterations(stages)] == [1, 2, 10]


def test_lm_distillation_cost_counts_teacher_forwards_served_by_the_cache():
    """Nominal cost: an arm that reads another arm's teacher-logit cache costs what it
    would have cost computing them (a cached step is cheaper to run, not to account)."""
    from minidisc.training.records import distillation_compute

    def stage(teacher, saved):
        cache = {"hits": 4, "misses": 0, "flops_saved": saved, "served": True}
        return {"wall_time_s": 2.0, "compute": {"student_train_flops": 10.0, "teacher_forward_flops": teacher,
                                                "train_flops": 10.0 + teacher, "tokens": 64, "teacher_cache": cache}}

    built = distillation_compute({"iter1": stage(teacher=5.0, saved=0.0)})
    read = distillation_compute({"iter1": stage(teacher=0.0, saved=5.0), "iter2": stage(teacher=3.0, saved=0.0)})
    assert built == {"train_flops": 15.0, "teacher_forward_flops": 5.0, "tokens": 64, "wall_time_s": 2.0}
    assert read == {"train_flops": 28.0, "teacher_forward_flops": 8.0, "tokens": 128, "wall_time_s": 4.0}
