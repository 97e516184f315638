"""One rule for every command's output folder, through the real command line in a fresh
process: a folder that is not a minidisc run is never deleted, even with --overwrite; a
file is never an output folder; the staging folders of a killed run are removed by the
next run of the same command (and nothing else is)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import write_tiny_bert, write_tiny_sst2


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    teacher, glue = write_tiny_bert(root / "teacher"), write_tiny_sst2(root / "glue")
    corpus = root / "corpus.txt"
    corpus.write_text("a small corpus line for the pretraining command\n" * 50)
    return root, str(teacher), str(glue), str(corpus)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "minidisc.cli", *args], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _commands(teacher: str, glue: str, corpus: str) -> dict[str, list[str]]:
    t, d = ["--teacher", teacher], ["--data-dir", glue]
    return {
        "finetune": ["finetune", *t, *d],
        "finetune --glue-suite": ["finetune", "--glue-suite", "sst2", *t, *d],
        "compress": ["compress", *t, *d],
        "demo": ["demo", *d],
        "distill": ["distill", *t, *d, "--sparsity", "0.5"],
        "takd": ["takd", *t, *d],
        "maxidisc": ["maxidisc", *t, *d],
        "compare": ["compare", *t, *d],
        "pretrain": ["pretrain", *t, "--corpus", corpus, "--budget-tokens", "1000", "--strategy", "scratch"],
        "sparsify": ["sparsify", *t, *d],
    }


@pytest.mark.parametrize("command", list(_commands("T", "D", "C")))
def test_overwrite_never_deletes_a_folder_that_is_not_a_run(inputs, command):
    root, teacher, glue, corpus = inputs
    mine = root / f"mine-{command.replace(' ', '')}"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    result = _cli(*_commands(teacher, glue, corpus)[command], "--output", str(mine), "--overwrite", cwd=root)
    assert result.returncode != 0, result.stdout
    assert "not a minidisc run directory" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "precious"


def test_finetune_into_an_existing_file_is_a_clear_error(inputs):
    root, teacher, glue, corpus = inputs
    a_file = root / "notes.txt"
    a_file.write_text("mine")
    result = _cli(*_commands(teacher, glue, corpus)["finetune"], "-o", str(a_file), cwd=root)
    assert result.returncode != 0
    assert "is a file, not a folder" in result.stderr and "Traceback" not in result.stderr
    assert a_file.read_text() == "mine"


def _finetune(teacher: str, glue: str, out: Path, epochs: str = "1") -> list[str]:
    return ["finetune", "--teacher", teacher, "--data-dir", glue, "--max-length", "16", "--batch-size", "8",
            "--max-train-samples", "16", "--max-eval-samples", "8", "--epochs", epochs, "--output", str(out)]


def test_a_killed_finetune_leaves_nothing_after_the_next_run_which_resumes(inputs):
    """SIGKILL during training leaves the staging folder; rerunning the same command
    removes it (and an older version's staging folder beside the output), finishes, and
    leaves the user's own hidden files alone. The output folder holds the model at its
    top (a --teacher for the next command) and is a run: the same command again is a
    no-op, another one is refused."""
    root, teacher, glue, _ = inputs
    out = root / "ft"
    args = _finetune(teacher, glue, out, epochs="6")
    proc = subprocess.Popen([sys.executable, "-m", "minidisc.cli", *args], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    staging = out / ".finetune.partial"
    deadline = time.monotonic() + 120
    while not (staging / "out" / "scratch").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert staging.is_dir(), "the run ended before it could be killed: give it more epochs"
    old_style = root / ".ft.k2x9_q0z" / "out"  # what atomic_path left beside the output before
    old_style.mkdir(parents=True)
    (old_style / "model.safetensors").write_bytes(b"\0" * 1024)
    user_hidden = [out / ".notes", root / ".ft.mine_abc" / "data.csv"]  # not minidisc's staging folders
    for path in user_hidden:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine")

    first = _cli(*args, cwd=root)
    assert first.returncode == 0, first.stderr
    assert not staging.exists() and not old_style.parent.exists()
    assert all(p.read_text() == "mine" for p in user_hidden)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("tokenizer")) == [
        ".notes", "config.json", "config.yaml", "finetune.json", "logs", "manifest.json", "model.safetensors"]

    stamp = (out / "model.safetensors").stat().st_mtime_ns
    again = _cli(*args, cwd=root)
    assert again.returncode == 0 and _dev_line(again) == _dev_line(first)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    other = _cli(*_finetune(teacher, glue, out, epochs="2"), cwd=root)
    assert other.returncode != 0 and "--overwrite" in other.stderr


def _dev_line(result: subprocess.CompletedProcess[str]) -> str:
    return next(line for line in result.stdout.splitlines() if line.startswith("dev "))
