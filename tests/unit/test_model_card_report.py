"""Model cards of exported students and ``minidisc report RUN_DIR``, on a tiny compress
run made by the command line in a fresh process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, write_tiny_bert, write_tiny_sst2

REPORT_FILES = ("report.json", "report.md", "tradeoff.png")


def minidisc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process (the worktree's sources first on the path)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "minidisc.cli", *args], check=False, capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    teacher, glue = write_tiny_bert(root / "teacher"), write_tiny_sst2(root / "glue")
    args = ("compress", "--teacher", str(teacher), "--task", "sst2", "--data-dir", str(glue), "--max-length", "16",
            "--target-sparsity", "0.75", "--truncation", "0.25", "--grid", "0,0.25,0.5,0.75", "--epochs", "1",
            "--batch-size", "8", "--eval-steps", "3", "--seed", "1", "--output", str(root / "run"))
    result = minidisc(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run", teacher, args


def front_matter(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_exported_student_holds_a_hugging_face_model_card(compressed):
    from minidisc.elastic.io import load_student
    from minidisc.fileio import read_json

    run, teacher, args = compressed
    stages = read_json(run / "manifest.json")["stages"]
    meta, body = front_matter((run / "student" / "README.md").read_text())

    assert meta["library_name"] == "transformers"
    assert meta["base_model"] == str(teacher)
    assert "minidisc" in meta["tags"] and "sst2" in meta["tags"]
    assert meta["datasets"] == ["nyu-mll/glue"] and meta["metrics"] == ["accuracy"]
    result = meta["model-index"][0]["results"][0]
    assert result["dataset"] == {"name": "GLUE SST-2 (dev)", "type": "nyu-mll/glue", "config": "sst2",
                                 "split": "validation"}
    student_dev = stages["student"]["dev"]
    assert result["metrics"] == [{"type": "accuracy", "value": round(student_dev["accuracy"], 6),
                                  "name": "dev accuracy"}]

    from minidisc.compute.flops import non_embedding_params, paper_flops
    from minidisc.report.card import _flops, _params

    student = load_student(run / "student")  # the card does not disturb loading
    for fact in (
        f"| teacher | `{teacher}` (a local folder) |",
        "| task | sst2 (GLUE SST-2",
        "| sparsity | 75 % of the teacher's attention heads and FFN neurons removed |",
        (f"| parameters | {_params(sum(p.numel() for p in student.parameters()))} total, "
        f"{_params(non_embedding_params(student.config))} non-embedding |"),
        f"| FLOPs per 128 tokens | {_flops(paper_flops(student.config, seq_len=128))} (",
        f"| teacher | 0.00 | {100 * stages['teacher']['dev']['accuracy']:.2f} |",
        f"| **student (this model)** | 75.00 | {100 * student_dev['accuracy']:.2f} |",
        "- command: `minidisc " + " ".join(args) + "`",
        "Stanford Sentiment Treebank",
        'minidisc.load_student("path/to/this/folder")',
    ):
        assert fact in body, fact
    iterations = [name for name in stages if name.startswith("iter")]
    for name in iterations[:-1]:  # an assistant was chosen: it is in the lineage
        assert f"| assistant (iteration {stages[name]['iteration']}) |" in body
    # every model saved through save_student has a card, from its weights at least
    meta, _ = front_matter((run / "iter1" / "model" / "README.md").read_text())
    assert meta["library_name"] == "transformers" and "minidisc" in meta["tags"]


def _digests(folder: Path, skip: tuple[str, ...]) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip
    }


def test_report_command_rebuilds_the_report_in_a_fresh_process(compressed, tmp_path):
    original, _, _ = compressed
    run = tmp_path / "run"
    shutil.copytree(original, run, symlinks=True)
    before = {name: (run / name).read_bytes() for name in REPORT_FILES}
    others = _digests(run, REPORT_FILES)
    for name in REPORT_FILES:
        (run / name).unlink()

    result = minidisc("report", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "report.json").read_text()) == json.loads(before["report.json"])
    assert (run / "report.md").read_bytes() == before["report.md"]
    assert (run / "tradeoff.png").stat().st_size > 1000
    assert _digests(run, REPORT_FILES) == others  # nothing else written: no training, same manifest


def test_report_of_an_unfinished_compress_run_shows_what_it_has(compressed, tmp_path):
    from minidisc.fileio import read_json, write_json
    from minidisc.schedules.rebuild import rebuild_report

    original, _, _ = compressed
    run = tmp_path / "run"
    shutil.copytree(original, run, symlinks=True)
    manifest = read_json(run / "manifest.json")
    for name in ("student", "speed", "report"):  # as if killed before the export (and its timing)
        manifest["stages"].pop(name)
        shutil.rmtree(run / name, ignore_errors=True)
    manifest["finished"] = False
    manifest.pop("cost", None)
    write_json(run / "manifest.json", manifest)
    for name in REPORT_FILES:
        (run / name).unlink()

    rebuild_report(run)
    report = read_json(run / "report.json")
    assert report["student"] is None and report["iterations"]
    done = ", ".join(["teacher", "sparsified", *(name for name in manifest["stages"] if name.startswith("iter"))])
    assert f"**Unfinished run**: the student is not exported yet (finished so far: {done})" in (run / "report.md").read_text()
    assert (run / "tradeoff.png").is_file()


def test_report_refuses_what_is_not_a_minidisc_run(compressed, tmp_path):
    from minidisc.errors import ConfigError
    from minidisc.fileio import read_json, write_json
    from minidisc.schedules.rebuild import rebuild_report

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = minidisc("report", str(foreign))
    assert result.returncode == 2
    assert "not a minidisc run folder" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]

    original, _, _ = compressed
    fresh = tmp_path / "fresh"  # a run killed during its teacher stage
    fresh.mkdir()
    manifest = read_json(original / "manifest.json")
    write_json(fresh / "manifest.json", {**manifest, "stages": {}, "finished": False})
    with pytest.raises(ConfigError, match="has not finished teacher yet"):
        rebuild_report(fresh)
