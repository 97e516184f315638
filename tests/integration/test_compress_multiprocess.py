"""``compress`` launched as two CPU processes (DDP over gloo) on a tiny random BERT.

``accelerate launch --cpu --num_processes 2`` starts one process unless MPI is set up
(its CPU launcher is ``mpirun``), so the test launches with ``--multi_gpu`` (torchrun
underneath) and ``ACCELERATE_USE_CPU=1``, which makes accelerate and the Trainer use
gloo on the CPU. It checks the run finishes, the manifest and the folders are whole,
both processes shared the training, and every number the run reports is the metric of
the saved files on the *whole* dev set: 15 examples, so the sampler pads one rank with a
duplicate that a wrong gather would count.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from minidisc.config import CompressConfig, TrainConfig, save_yaml
from tests.helpers import tiny_sst2_data, write_tiny_bert

pytestmark = pytest.mark.integration

N_TRAIN, N_DEV, BATCH, PROCESSES = 48, 15, 4, 2
STAGE = TrainConfig(epochs=1, batch_size=BATCH, eval_batch_size=8, learning_rate=1e-3, eval_steps=3, patience=None, seed=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(config: Path, out: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(PROCESSES),
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "minidisc.cli", "compress", "--config", str(config), "--output", str(out),
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=150)


def _dev_metrics(model_dir: Path, cfg: CompressConfig, tmp: Path, on: str = "dev") -> dict[str, float]:
    """The saved model's metrics on dev (or ``on="slice"``: the run's selection slice),
    evaluated here in one process."""
    import dataclasses

    from minidisc.elastic.io import load_student
    from minidisc.models import ModelSource, load_tokenizer
    from minidisc.training.data import prepare_run_data
    from minidisc.training.finetune import evaluate_model

    tokenizer = load_tokenizer(ModelSource(str(model_dir)))
    data = prepare_run_data(cfg.data, tokenizer, cfg.finetune.seed, cfg.select_on, cfg.selection_examples)
    assert len(data.dev) == N_DEV
    if on == "slice":
        data = dataclasses.replace(data, dev=data.selection)
    return evaluate_model(load_student(model_dir), data, TrainConfig(), tmp / "eval")[0]


def _last_evaluation(out: Path, stage: str) -> float:
    """The selected candidate's metric at the stage's last evaluation (``candidates.json``)."""
    from minidisc.fileio import read_json

    record = read_json(out / stage / "candidates.json")
    return next(m for s, m in record["history"][-1]["metrics"].items() if float(s) == record["selected"])


def test_compress_with_two_cpu_processes(tmp_path):
    from minidisc.elastic.io import load_student
    from minidisc.elastic.sparsity_map import load_sparsity_map
    from minidisc.fileio import read_json

    cfg = CompressConfig(
        teacher=str(write_tiny_bert(tmp_path / "teacher")),
        data=tiny_sst2_data(tmp_path / "glue", N_TRAIN, N_DEV),
        target_sparsity=0.75, truncation=0.25, grid=(0.0, 0.25, 0.5, 0.75), save_candidates=True,
        finetune=STAGE, sandwich=STAGE, final=STAGE,
    )
    save_yaml(tmp_path / "config.yaml", cfg)
    out = tmp_path / "run"
    proc = _launch(tmp_path / "config.yaml", out, tmp_path)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"

    # a whole run: every stage done once, in order, its folder in place, nothing half-written
    manifest = read_json(out / "manifest.json")
    assert manifest["finished"] and manifest["command"] == "compress"
    assert manifest["config"] == cfg.model_dump(mode="json")
    stages = manifest["stages"]
    iterations = [n for n in stages if n.startswith("iter")]
    assert list(stages) == ["teacher", "sparsified", *iterations, "student", "speed", "report"]
    assert iterations in (["iter1"], ["iter1", "iter2"]) and all(s["status"] == "done" for s in stages.values())
    assert all((out / name).is_dir() for name in ["teacher", "sparsified", *iterations, "student"])
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no staging folder left
    assert {p.name for p in (out / "iter1" / "candidates").iterdir()} == {"s0.25", "s0.5", "s0.75"}

    # both processes trained: each took half of every batch of steps, and the reported
    # cost is the whole stage's: every training example left after the selection slice
    # (the default) once per epoch, and the examples the sampler repeats to fill the last
    # step of both processes, which were computed too
    trained = N_TRAIN - manifest["selection_slice"]["examples"]
    assert manifest["selection_slice"]["train_examples"] == trained < N_TRAIN
    steps = math.ceil(trained / (BATCH * PROCESSES))
    assert stages["teacher"]["compute"]["steps"] == steps
    assert stages["teacher"]["compute"]["sequences"] == steps * BATCH * PROCESSES >= trained

    # the exported student loads with its target sizes and its metrics are those the run reports
    student = load_student(out / "student")
    spec = load_sparsity_map(out / "sparsified")[0.75]
    assert [layer.intermediate.dense.out_features for layer in student.bert.encoder.layer] == list(spec.neurons)
    report = read_json(out / "report.json")
    here = _dev_metrics(out / "student", cfg, tmp_path)
    assert report["student"]["dev"] == stages["student"]["dev"]
    assert stages["student"]["dev"] == pytest.approx(here)
    assert report["teacher"]["dev"] == stages["teacher"]["dev"]

    # the processes' common selection: the saved assistant is the selected candidate's snapshot,
    # its latest weights (the default score, the mean of the last evaluations, keeps those),
    # which score on the selection slice what its last evaluation there measured
    first = stages["iter1"]
    assert read_json(out / "iter1" / "candidates.json")["selected"] == first["selected"]
    for name in iterations:
        kept = out / name / "model"
        assert _dev_metrics(kept, cfg, tmp_path, on="slice")["main"] == pytest.approx(_last_evaluation(out, name))
    assert [it["selected"] for it in report["iterations"]] == [stages[n]["selected"] for n in iterations]
