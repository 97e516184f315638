"""An interrupted pretraining run resumes from its last checkpoint and ends where an
uninterrupted run ends."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from minidisc.errors import RunExistsError
from minidisc.fileio import read_json
from minidisc.pretrain.run import run_pretrain
from minidisc.pretrain.testing import tiny_config, write_corpus, write_teacher


class Interrupt(TrainerCallback):
    """Raises at the end of optimiser step ``at`` (after the Trainer's own callbacks)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated interruption")


def test_interrupted_run_resumes_to_the_same_student(tmp_path):
    teacher, corpus = write_teacher(tmp_path / "teacher"), write_corpus(tmp_path / "corpus.txt")
    # 200 tokens = 13 rows = 4 steps; checkpoints after steps 2 and 4; evaluate every step
    cfg = tiny_config(teacher, corpus, "kd", checkpoint_steps=2, eval_every_tokens=64)

    with pytest.raises(KeyboardInterrupt):
        run_pretrain(cfg, tmp_path / "resumed", callbacks=[Interrupt(at=3)])
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
