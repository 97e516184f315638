"""The registry of finished stages shared by the runs on one teacher (schedules/memo.py)."""

from pydantic import BaseModel

from minidisc.runfolder.run import RunDir
from minidisc.schedules.memo import StageMemo


class _Cfg(BaseModel):
    name: str = "memo"


def test_a_registered_stage_whose_files_changed_is_not_reused(tmp_path, capsys):
    run = RunDir(tmp_path / "root", _Cfg(), "compress")

    def work(tmp):
        (tmp / "model.safetensors").write_bytes(b"weights")
        return {"metric": 1.0}

    entry = run.stage("iter1", work)
    memo = StageMemo(run.path)
    memo.remember("key", run.path / "iter1", entry)
    assert memo.find("key") == ((run.path / "iter1").resolve(), entry)
    assert memo.find("other key") is None

    (run.path / "iter1" / "model.safetensors").unlink()  # e.g. weights deleted to free disk
    assert memo.find("key") is None
    assert "not reusing the finished stage" in capsys.readouterr().err
    (run.path / "iter1" / "model.safetensors").write_bytes(b"other")
    assert memo.find("key") is None  # changed bytes: not the stage that was recorded
