"""An interrupted pretraining run resumes from its last checkpoint and ends where an
uninterrupted run ends."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import BertConfig

from minidisc.errors import ConfigError, RunExistsError
from minidisc.fileio import read_json
from minidisc.objectives import build_objective
from minidisc.pretrain.run import prepare_arm, run_pretrain
from minidisc.training.trainers import (
    OBJECTIVE_STATE_FILE,
    load_objective_state,
    save_objective_state,
)
from tests.helpers import interrupt_at_step
from tests.pretrain_helpers import tiny_config, write_corpus, write_teacher


def test_interrupted_run_resumes_to_the_same_student(tmp_path):
    teacher, corpus = write_teacher(tmp_path / "teacher"), write_corpus(tmp_path / "corpus.txt")
    # 200 tokens = 13 rows = 4 steps; checkpoints after steps 2 and 4; evaluate every step
    cfg = tiny_config(teacher, corpus, "kd", checkpoint_steps=2, eval_every_tokens=64)

    with pytest.raises(KeyboardInterrupt):
        run_pretrain(cfg, tmp_path / "resumed", callbacks=[interrupt_at_step(3)])
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "resumed" / "student").exists()
    resumed = run_pretrain(cfg, tmp_path / "resumed")
    reference = run_pretrain(cfg, tmp_path / "reference")

    a, b = (read_json(r.path / "report.json") for r in (resumed, reference))
    assert a["compute"]["resumed_from"] == "checkpoint-2"
    for key in ("tokens", "sequences", "steps", "train_flops", "student_flops", "teacher_flops"):
        assert a["compute"][key] == b["compute"][key]
    assert a["compute"]["tokens"] == 200 and a["compute"]["matches_plan"] is True
    assert [p["step"] for p in a["curve"]] == [p["step"] for p in b["curve"]] == [0, 1, 2, 3, 4]
    assert a["heldout"]["final_loss"] == pytest.approx(b["heldout"]["final_loss"], abs=1e-6)
    weights_a = load_file(resumed.path / "student" / "model.safetensors")
    weights_b = load_file(reference.path / "student" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name])
    assert not (tmp_path / "resumed" / "checkpoints").exists()

    # a finished run is not redone; another configuration is refused
    again = run_pretrain(cfg, tmp_path / "resumed")
    assert read_json(again.path / "report.json") == a
    with pytest.raises(RunExistsError):
        run_pretrain(tiny_config(teacher, corpus, "scratch"), tmp_path / "resumed")


def test_resume_restores_the_objectives_width_projections(tmp_path):
    # A 16-wide student under a 32-wide teacher: TinyBERT learns two 16 -> 32 projections,
    # which are trained with the student and must survive an interruption.
    teacher, corpus = write_teacher(tmp_path / "teacher"), write_corpus(tmp_path / "corpus.txt")
    cfg = tiny_config(teacher, corpus, "tinybert", checkpoint_steps=2,
                      student={"hidden": 16, "heads": 4, "ffn": 32})

    with pytest.raises(KeyboardInterrupt):
        run_pretrain(cfg, tmp_path / "resumed", callbacks=[interrupt_at_step(3)])
    saved = load_file(tmp_path / "resumed" / "checkpoints" / "checkpoint-2" / OBJECTIVE_STATE_FILE)
    assert {k: tuple(v.shape) for k, v in saved.items()} == {
        "embedding_projection.weight": (32, 16), "hidden_projection.weight": (32, 16),
    }
    initial = prepare_arm(cfg).objective.state_dict()
    assert not torch.equal(saved["hidden_projection.weight"], initial["hidden_projection.weight"])  # trained

    resumed = run_pretrain(cfg, tmp_path / "resumed")
    reference = run_pretrain(cfg, tmp_path / "reference")
    assert read_json(resumed.path / "report.json")["compute"]["resumed_from"] == "checkpoint-2"
    weights_a = load_file(resumed.path / "student" / "model.safetensors")
    weights_b = load_file(reference.path / "student" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        torch.testing.assert_close(weights_a[name], weights_b[name])


def test_objective_state_round_trip_and_errors(tmp_path):
    objective = build_objective("hidden_mse", student_config=BertConfig(hidden_size=4),
                                teacher_config=BertConfig(hidden_size=8))
    with torch.no_grad():
        objective.projection.weight.copy_(torch.arange(32.0).reshape(8, 4))
    assert save_objective_state(objective, tmp_path) == tmp_path / OBJECTIVE_STATE_FILE
    fresh = build_objective("hidden_mse", student_config=BertConfig(hidden_size=4),
                            teacher_config=BertConfig(hidden_size=8))
    param = fresh.projection.weight
    load_objective_state(fresh, tmp_path)
    assert fresh.projection.weight is param  # in place: the optimiser still holds this tensor
    torch.testing.assert_close(param.detach(), torch.arange(32.0).reshape(8, 4))

    stateless = build_objective("kd")
    assert save_objective_state(stateless, tmp_path / "none") is None
    load_objective_state(stateless, tmp_path / "none")  # nothing to restore, nothing needed
    with pytest.raises(ConfigError, match="delete the checkpoint"):
        load_objective_state(fresh, tmp_path / "none")
    wider = build_objective("hidden_mse", student_config=BertConfig(hidden_size=2),
                            teacher_config=BertConfig(hidden_size=8))
    with pytest.raises(ConfigError, match="shapes"):
        load_objective_state(wider, tmp_path)
