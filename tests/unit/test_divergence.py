"""A diverging stage stops with one line naming the stage and the step, and nothing of it
is recorded as finished: the CLI in a fresh process with an absurd learning rate on
``finetune``, ``compress`` and ``distill`` (tiny models), and ``pretrain`` through its API.

1e6 is the rate of the bug report: the loss turns NaN within a few steps, which the
Trainer's default logging hides (it logs an average of earlier losses instead) while
its evaluation reports the majority-class accuracy of the NaN model.
"""

from __future__ import annotations

import pytest
import torch

from minidisc.errors import DivergenceError
from minidisc.fileio import read_json
from minidisc.training.divergence import first_nonfinite_parameter
from tests.helpers import run_minidisc, write_tiny_bert, write_tiny_sst2

ABSURD = "1e6"
TINY = ["--task", "sst2", "--data-dir", "glue", "--max-length", "16", "--epochs", "2", "--batch-size", "8",
        "--eval-steps", "3", "--learning-rate", ABSURD]
SCHEDULE = [*TINY, "--importance-samples", "16", "--grid", "0,0.25,0.5,0.75"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder with ``glue/`` (toy SST-2), ``bare/`` (an encoder without a task head, like
    the packaged teacher) and ``tuned/`` (with a 2-label head, usable as --teacher-finetuned)."""
    root = tmp_path_factory.mktemp("diverge")
    write_tiny_sst2(root / "glue")
    write_tiny_bert(root / "bare", with_head=False)
    write_tiny_bert(root / "tuned", trained_head=True)
    return root


def _error_line(proc, stage: str) -> str:
    """The one error line of a failed command, checked to name ``stage`` and a step."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "error: training diverged" in line and f"stage '{stage}' at step " in line, line
    assert "--learning-rate" in line
    return line


def test_finetune_stops_and_writes_nothing(files):
    proc = run_minidisc("finetune", "--model", "bare", *TINY, "--output", "ft", cwd=files)
    _error_line(proc, "finetune")
    out = files / "ft"  # a run folder (config and manifest) with no finished stage and no model
    assert not any(e.get("status") == "done" for e in read_json(out / "manifest.json")["stages"].values())
    assert not list(out.glob("*.safetensors"))
    assert not [p for p in files.iterdir() if p.name.startswith(".ft.")]  # no staging folder left


@pytest.mark.parametrize(
    ("extra", "stage", "finished"),
    [([], "teacher", []), (["--teacher-finetuned"], "iter1", ["teacher", "sparsified"])],
    ids=["teacher-stage", "sandwich-stage"],
)
def test_compress_stops_and_records_nothing_of_the_stage(files, extra, stage, finished):
    teacher = "tuned" if extra else "bare"
    out = f"compress-{stage}"
    proc = run_minidisc(
        "compress", "--teacher", teacher, *extra, *TINY, "--grid", "0,0.25,0.5,0.75", "--target-sparsity", "0.75",
        "--truncation", "0.25", "--output", out, cwd=files,
    )
    _error_line(proc, stage)
    manifest = read_json(files / out / "manifest.json")
    assert [n for n, e in manifest["stages"].items() if e["status"] == "done"] == finished
    assert not manifest["finished"]
    assert not (files / out / stage).exists()
    assert not [p for p in (files / out).iterdir() if p.name.startswith(f".{stage}.")]


def test_distill_stops_and_records_nothing_of_the_hop(files):
    proc = run_minidisc(
        "distill", "--teacher", "tuned", "--teacher-finetuned", *SCHEDULE, "--sparsity", "0.75",
        "--output", "distill", cwd=files,
    )
    _error_line(proc, "hop-s0.75")
    manifest = read_json(files / "distill" / "manifest.json")
    assert list(manifest["stages"]) == ["teacher", "sparsified"]
    assert not (files / "distill" / "hop-s0.75").exists()


def test_pretrain_stops_and_records_no_student(tmp_path):
    from minidisc.pretrain.run import run_pretrain
    from tests.pretrain_helpers import tiny_config, write_corpus, write_teacher

    teacher, corpus = write_teacher(tmp_path / "teacher"), write_corpus(tmp_path / "corpus.txt")
    cfg = tiny_config(teacher, corpus, "kd", optim={"batch_size": 4, "learning_rate": float(ABSURD)})
    with pytest.raises(DivergenceError, match=r"stage 'student' at step \d+"):
        run_pretrain(cfg, tmp_path / "run")
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert "student" not in manifest["stages"] and not (tmp_path / "run" / "student").exists()


def test_first_nonfinite_parameter_names_the_first_bad_weight():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert first_nonfinite_parameter(model) is None
    with torch.no_grad():
        model[1].bias[0] = float("inf")
        model[1].weight[1, 1] = float("nan")
    assert first_nonfinite_parameter(model) == "1.weight"
