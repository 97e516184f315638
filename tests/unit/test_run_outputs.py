"""What a run trusts when it resumes: recorded stage outputs (sizes, SHA-256) checked on
open, damaged manifests, and the staging folders a killed run leaves behind."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from minidisc.config import CompressConfig
from minidisc.errors import RunExistsError
from minidisc.fileio import read_json
from minidisc.runfolder.run import MANIFEST, RunDir


def _writes(calls: list[str], name: str, files: dict[str, bytes]):
    def work(folder: Path) -> dict[str, Any]:
        calls.append(name)
        for rel, data in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        return {}

    return work


def _run_all(path: Path, calls: list[str]) -> RunDir:
    """Four stages: a (folder), b (folder, nested file), c (files at the run's top), d."""
    run = RunDir(path, CompressConfig(), "compress")
    run.stage("a", _writes(calls, "a", {"w.bin": b"a" * 100}))
    run.stage("b", _writes(calls, "b", {"model/w.bin": b"b" * 100, "b.json": b"{}"}))
    run.stage("c", _writes(calls, "c", {"c.md": b"report"}), folder=False, outputs=("c.md", "absent.png"))
    run.stage("d", _writes(calls, "d", {"w.bin": b"d"}))
    run.finish()
    return run


def test_a_finished_stage_records_every_file_it_wrote(tmp_path):
    run = _run_all(tmp_path / "r", [])
    entry = read_json(tmp_path / "r" / MANIFEST)["stages"]["b"]
    assert [o["path"] for o in entry["outputs"]] == ["b/b.json", "b/model/w.bin"]
    weights = entry["outputs"][1]
    assert weights["size"] == 100 and weights["sha256"] == hashlib.sha256(b"b" * 100).hexdigest()
    assert [o["path"] for o in run.record("c")["outputs"]] == ["c.md"]  # a declared file that was not written: none


@pytest.mark.parametrize("damage, why", [
    (lambda r: (r / "b" / "model" / "w.bin").unlink(), "b/model/w.bin is missing"),
    (lambda r: __import__("shutil").rmtree(r / "b"), "b/b.json is missing"),
    (lambda r: (r / "b" / "model" / "w.bin").write_bytes(b"x" * 100), "b/model/w.bin has changed (its SHA-256 checksum differs"),  # same size
    (lambda r: (r / "b" / "model" / "w.bin").write_bytes(b"b" * 99), "b/model/w.bin has changed (99 bytes, 100 recorded)"),
])
def test_a_stage_with_missing_or_changed_outputs_runs_again_with_every_later_stage(tmp_path, capsys, damage, why):
    _run_all(tmp_path / "r", [])
    damage(tmp_path / "r")
    calls: list[str] = []
    run = _run_all(tmp_path / "r", calls)
    assert calls == ["b", "c", "d"] and run.finished
    warning = capsys.readouterr().err
    assert f"stage 'b' of {tmp_path / 'r'} was recorded as finished, but {why}" in warning
    assert "running it again, and the stages after it (c, d)" in warning
    assert (tmp_path / "r" / "b" / "model" / "w.bin").read_bytes() == b"b" * 100

    assert _run_all(tmp_path / "r", calls).finished and calls == ["b", "c", "d"]  # intact now: nothing reruns


def test_a_file_at_the_run_top_is_checked_too(tmp_path, capsys):
    _run_all(tmp_path / "r", [])
    (tmp_path / "r" / "c.md").unlink()
    calls: list[str] = []
    _run_all(tmp_path / "r", calls)
    assert calls == ["c", "d"] and "c.md is missing" in capsys.readouterr().err


def test_the_same_bytes_with_a_new_time_are_intact_and_the_time_is_recorded(tmp_path):
    _run_all(tmp_path / "r", [])
    weights = tmp_path / "r" / "b" / "model" / "w.bin"
    os.utime(weights, ns=(1, 10**18))  # a copy without times, say
    calls: list[str] = []
    _run_all(tmp_path / "r", calls)
    assert calls == []
    recorded = read_json(tmp_path / "r" / MANIFEST)["stages"]["b"]["outputs"][1]
    assert recorded["mtime_ns"] == 10**18


def test_a_linked_stage_notices_that_what_it_links_to_was_rerun(tmp_path, capsys):
    shared = tmp_path / "shared"
    (shared / "teacher").mkdir(parents=True)
    (shared / "teacher" / "w.bin").write_bytes(b"old")

    def runs(calls: list[str]) -> RunDir:
        run = RunDir(tmp_path / "r", CompressConfig(), "compress")

        def link(root: Path) -> dict[str, Any]:
            calls.append("teacher")
            if not (root / "teacher").is_symlink():
                (root / "teacher").symlink_to(os.path.relpath(shared / "teacher", root), target_is_directory=True)
            return {}

        run.stage("teacher", link, folder=False, outputs=("teacher",))
        run.stage("student", _writes(calls, "student", {"w.bin": b"s"}))
        return run

    runs([])
    (shared / "teacher" / "w.bin").write_bytes(b"new")  # the shared teacher was trained again
    calls: list[str] = []
    runs(calls)
    assert calls == ["teacher", "student"] and "teacher/w.bin has changed" in capsys.readouterr().err


def test_a_truncated_manifest_beside_minidiscs_config_is_a_damaged_run(tmp_path):
    _run_all(tmp_path / "r", [])
    manifest = tmp_path / "r" / MANIFEST
    for broken in (manifest.read_text()[:40], ""):
        manifest.write_text(broken)
        with pytest.raises(RunExistsError, match="damaged minidisc run: its manifest.json is empty or truncated.*--overwrite"):
            RunDir(tmp_path / "r", CompressConfig(), "compress")
    fresh = RunDir(tmp_path / "r", CompressConfig(), "compress", overwrite=True)
    assert fresh.manifest["stages"] == {} and sorted(p.name for p in (tmp_path / "r").iterdir()) == ["config.yaml", MANIFEST]


def test_a_broken_manifest_without_minidiscs_config_is_still_not_ours(tmp_path):
    foreign = tmp_path / "app"
    foreign.mkdir()
    (foreign / MANIFEST).write_text('{"name": "my-ap')
    (foreign / "config.yaml").write_text("name: my-app\n")
    with pytest.raises(RunExistsError, match="not a minidisc run directory"):
        RunDir(foreign, CompressConfig(), "compress", overwrite=True)
    assert sorted(p.name for p in foreign.iterdir()) == ["config.yaml", MANIFEST]


def test_a_killed_runs_staging_folders_are_removed_and_nothing_else(tmp_path):
    run_path = tmp_path / "r"
    _run_all(run_path, [])
    left = [run_path / ".sparsified.k2x9_q0z" / "out" / "model", run_path / ".iter1.partial" / "out",
            run_path / ".manifest.json.abcdefgh", tmp_path / ".r.q1w2e3r4" / "out"]
    for path in left:
        path.mkdir(parents=True)
    (left[0] / "w.bin").write_bytes(b"0" * 1000)
    kept = [run_path / ".cache.abcdefgh" / "mine.txt", run_path / ".notes", tmp_path / ".other.abcdefgh" / "out",
            run_path / "b" / ".iter1.partial" / "out"]  # not a staging folder, someone else's, or inside a stage
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if path.name == "out" else path.write_text("mine")
    calls: list[str] = []
    _run_all(run_path, calls)
    assert calls == [] and all(p.exists() for p in kept)
    assert not [p for p in (run_path / ".sparsified.k2x9_q0z", run_path / ".iter1.partial",
                            run_path / ".manifest.json.abcdefgh", tmp_path / ".r.q1w2e3r4") if p.exists()]


def test_a_folder_with_only_a_killed_runs_staging_folder_is_a_new_run(tmp_path):
    (tmp_path / "r" / ".manifest.json.abcdefgh" / "out").mkdir(parents=True)  # killed before its first save
    assert RunDir(tmp_path / "r", CompressConfig(), "compress").manifest["stages"] == {}
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["config.yaml", MANIFEST]
