"""Same command, same numbers: two fresh ``minidisc compress`` processes give the same
report and bit-identical weights; a run resumed after a finished stage ends bit-for-bit
where the uninterrupted run ends; every training stage leaves its logs.

The teacher is a bare tiny encoder (no task head), like the packaged teacher: its
classifier is drawn when the teacher stage loads it, the draw that was unseeded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from minidisc.config import CompressConfig, TrainConfig, save_yaml
from minidisc.fileio import read_json, write_json
from tests.faults import timeless, weight_digests
from tests.helpers import run_minidisc, tiny_sst2_data, write_tiny_bert

# the default seed (776): "the same command" is the one a user types
STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, learning_rate=1e-3, eval_steps=3, patience=None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A folder with ``config.yaml`` and ``run/``, one finished compress run made by the CLI."""
    root = tmp_path_factory.mktemp("repro")
    cfg = CompressConfig(
        teacher=str(write_tiny_bert(root / "teacher", with_head=False)),
        data=tiny_sst2_data(root / "glue"),
        target_sparsity=0.75, truncation=0.25, grid=(0.0, 0.25, 0.5, 0.75), lam=0.0,  # λ = 0: an assistant, then iter2
        finetune=STAGE, sandwich=STAGE, final=STAGE,
    )
    save_yaml(root / "config.yaml", cfg)
    _compress(root, "run")
    return root


def _compress(root: Path, output: str) -> None:
    proc = run_minidisc("compress", "--config", "config.yaml", "--output", output, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _assert_same_run(a: Path, b: Path) -> None:
    assert timeless(read_json(a / "report.json")) == timeless(read_json(b / "report.json"))
    weights = weight_digests(a)
    assert "student/model.safetensors" in weights and "teacher/model.safetensors" in weights
    assert weight_digests(b) == weights


def test_two_fresh_runs_give_the_same_report_and_bit_identical_weights(reference):
    _compress(reference, "again")
    _assert_same_run(reference / "run", reference / "again")


def test_a_run_resumed_after_its_teacher_stage_ends_where_the_uninterrupted_run_ends(reference):
    # stop after the teacher stage: keep its folder and manifest entry, drop the rest, and
    # rerun in a fresh process, which skips the teacher and its random draws
    resumed = reference / "resumed"
    shutil.copytree(reference / "run", resumed, symlinks=True)
    manifest = read_json(resumed / "manifest.json")
    for name in [n for n in manifest["stages"] if n != "teacher"]:
        del manifest["stages"][name]
        shutil.rmtree(resumed / name, ignore_errors=True)
    for name in ("report.json", "report.md", "tradeoff.png"):
        (resumed / name).unlink(missing_ok=True)
    manifest["finished"] = False
    manifest.pop("completed", None)
    manifest.pop("cost", None)
    write_json(resumed / "manifest.json", manifest)

    _compress(reference, "resumed")
    assert list(read_json(resumed / "manifest.json")["stages"]) == list(read_json(reference / "run" / "manifest.json")["stages"])
    _assert_same_run(reference / "run", resumed)


def test_every_training_stage_writes_tensorboard_events_and_a_metrics_jsonl(reference):
    run = reference / "run"
    trained = ["teacher", *[n for n in read_json(run / "manifest.json")["stages"] if n.startswith("iter")]]
    for stage in trained:
        logs = run / stage / "logs"
        assert list(logs.glob("events.out.tfevents.*")), f"no TensorBoard events in {logs}"
        events = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
        train = [e for e in events if "loss" in e]
        assert train and all({"step", "epoch", "grad_norm", "learning_rate"} <= e.keys() for e in train)
        assert [e["step"] for e in events] == sorted(e["step"] for e in events)
        evaluations = [e for e in events if any(k.startswith("eval_") for k in e)]
        assert evaluations
        if stage.startswith("iter"):  # every candidate's dev metric at every evaluation
            levels = {c["sparsity"] for c in read_json(run / "manifest.json")["stages"][stage]["candidates"]}
            assert all({f"eval_s{s:g}_main" for s in levels} <= e.keys() for e in evaluations if "eval_selection_score" in e)
        else:
            assert all("eval_main" in e for e in evaluations)


def test_finetune_is_seeded_at_its_start_whatever_was_drawn_before(tmp_path):
    # two fine-tunings in one process, after different draws: the same head, the same weights
    import torch

    from minidisc.cli.finetune import finetune_one
    from minidisc.models import ModelSource, load_tokenizer

    source = ModelSource(str(write_tiny_bert(tmp_path / "bare", with_head=False)))
    data = tiny_sst2_data(tmp_path / "glue")
    weights = []
    for earlier_seed in (1, 2):
        torch.manual_seed(earlier_seed)
        out = tmp_path / f"ft{earlier_seed}"
        finetune_one(source, load_tokenizer(source), data, STAGE, out)
        weights.append(hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest())
        assert (out / "logs" / "metrics.jsonl").is_file()
    assert weights[0] == weights[1]


def test_pretrain_logs_cover_the_whole_stage_after_a_resume(tmp_path):
    from minidisc.pretrain.run import run_pretrain
    from tests.helpers import interrupt_at_step
    from tests.pretrain_helpers import tiny_config, write_corpus, write_teacher

    teacher, corpus = write_teacher(tmp_path / "teacher"), write_corpus(tmp_path / "corpus.txt")
    cfg = tiny_config(teacher, corpus, "scratch", checkpoint_steps=2, optim={"batch_size": 4})  # 4 steps
    with pytest.raises(KeyboardInterrupt):
        run_pretrain(cfg, tmp_path / "resumed", callbacks=[interrupt_at_step(3)])
    steps = []
    for name in ("resumed", "reference"):
        run_pretrain(cfg, tmp_path / name)
        logs = tmp_path / name / "student" / "logs"
        assert list(logs.glob("events.out.tfevents.*"))
        events = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
        steps.append([e["step"] for e in events if "loss" in e])
    assert steps[0] == steps[1] and steps[1]  # the resumed run's file starts at step 1 too
