"""A resumed ``compress`` run does not trust its manifest alone: a finished stage whose
files were deleted or changed runs again with every stage after it, and the run finishes
with a whole report; a truncated manifest is a damaged run that --overwrite replaces."""

from __future__ import annotations

import shutil

import pytest

from minidisc.config import CompressConfig, TrainConfig
from minidisc.errors import RunExistsError
from minidisc.fileio import read_json
from tests.helpers import tiny_sst2_data, write_tiny_bert

STAGE = TrainConfig(epochs=1, batch_size=8, eval_batch_size=16, eval_steps=3, patience=None, seed=1)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny compress run (copied by each test before it damages it)."""
    from minidisc.schedules.minidisc import run_compress

    root = tmp_path_factory.mktemp("resume-checks")
    cfg = CompressConfig(
        teacher=str(write_tiny_bert(root / "teacher")), data=tiny_sst2_data(root / "glue"),
        target_sparsity=0.75, truncation=0.25, grid=(0.0, 0.25, 0.5, 0.75),
        finetune=STAGE, sandwich=STAGE, final=STAGE,
    )
    run_compress(cfg, root / "run")
    return cfg, root / "run"


@pytest.fixture()
def counted(monkeypatch):
    """Calls of each stage's work during the test."""
    import minidisc.schedules.minidisc as md
    from minidisc.schedules import stages

    calls: list[str] = []
    for module, name, stage in ((stages, "teacher", "teacher_stage"), (stages, "sparsified", "sparsify_stage"),
                                (md, "iteration", "_iteration_stage"), (md, "student", "_export_stage")):
        real = getattr(module, stage)

        def counting(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, stage, counting)
    return calls


def _copy(run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out, symlinks=True)
    return out


def _assert_whole(out):
    manifest = read_json(out / "manifest.json")
    assert manifest["finished"] and {"teacher", "sparsified", "iter1", "student", "report"} <= set(manifest["stages"])
    report = read_json(out / "report.json")
    assert 0.0 <= report["student"]["dev"]["main"] <= 1.0
    assert "| student (exported) | 75.00 |" in (out / "report.md").read_text()


def test_a_deleted_teacher_is_trained_again_with_every_later_stage(finished, counted, tmp_path, capsys):
    from minidisc.schedules.minidisc import run_compress

    cfg, run = finished
    out = _copy(run, tmp_path)
    shutil.rmtree(out / "teacher")
    run_compress(cfg, out)
    assert counted[:2] == ["teacher", "sparsified"] and "iteration" in counted and counted[-1] == "student"
    assert "stage 'teacher'" in capsys.readouterr().err
    _assert_whole(out)

    counted.clear()
    run_compress(cfg, out)  # whole again: a plain resume
    assert counted == []


def test_a_corrupted_stage_file_is_rerun_from_that_stage_on(finished, counted, tmp_path, capsys):
    from minidisc.schedules.minidisc import run_compress

    cfg, run = finished
    out = _copy(run, tmp_path)
    weights = out / "iter1" / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)  # same size, other bytes: only the checksum can tell
    weights.write_bytes(bytes(data))
    run_compress(cfg, out)
    assert "teacher" not in counted and "sparsified" not in counted
    assert counted[0] == "iteration" and counted[-1] == "student"
    assert "iter1/model/model.safetensors has changed" in capsys.readouterr().err
    _assert_whole(out)


def test_a_truncated_manifest_is_a_damaged_run_that_overwrite_replaces(finished, tmp_path):
    from minidisc.schedules.minidisc import run_compress

    cfg, run = finished
    out = _copy(run, tmp_path)
    manifest = out / "manifest.json"
    manifest.write_text(manifest.read_text()[:100])
    with pytest.raises(RunExistsError, match="damaged minidisc run.*pass --overwrite"):
        run_compress(cfg, out)
    run_compress(cfg, out, overwrite=True)
    _assert_whole(out)
