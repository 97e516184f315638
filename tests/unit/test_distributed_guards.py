"""Main-process guards of run outputs, with two processes simulated by two threads.

Each thread gets its own stand-in for accelerate's ``PartialState`` (thread 0 is the
main process) sharing one real barrier, so the code runs concurrently on one folder as
two launched processes would. A barrier reached by one "process" only breaks the
barrier (timeout) instead of hanging, so unmatched synchronisation fails the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from minidisc import fileio
from minidisc.config import CompressConfig
from minidisc.errors import ConfigError
from minidisc.fileio import read_json
from minidisc.runfolder import run as run_module
from minidisc.runfolder.run import MANIFEST, RunDir


class FakeState:
    """What minidisc uses of ``PartialState``, for simulated process ``index``."""

    def __init__(self, index: int, barrier: threading.Barrier) -> None:
        self.index = index
        self.barrier = barrier
        self.num_processes = barrier.parties
        self.waits = 0
        self.device = torch.device("cpu")  # minidisc.runtime reads the process's device

    @property
    def is_main_process(self) -> bool:
        return self.index == 0

    def wait_for_everyone(self) -> None:
        self.waits += 1
        self.barrier.wait()

    @contextmanager
    def main_process_first(self) -> Iterator[None]:
        if not self.is_main_process:
            self.wait_for_everyone()
        yield
        if self.is_main_process:
            self.wait_for_everyone()


@pytest.fixture()
def two_processes(monkeypatch) -> Callable[[Callable[[int], Any]], list[Any]]:
    """Run ``fn(index)`` as processes 0 and 1 at once; return both results (or raise)."""
    import accelerate

    local = threading.local()
    alone = FakeState(0, threading.Barrier(1))  # the test's own thread: one process
    monkeypatch.setattr(accelerate, "PartialState", lambda cpu=False, **kw: getattr(local, "state", alone))

    def run(fn: Callable[[int], Any], timeout: float = 120) -> list[Any]:
        barrier = threading.Barrier(2, timeout=timeout)
        states = [FakeState(i, barrier) for i in range(2)]

        def as_process(i: int) -> Any:
            local.state = states[i]
            return fn(i)

        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(as_process, i) for i in range(2)]
            errors = [f.exception(timeout=3 * timeout) for f in futures]
        # The cause first: a process that failed leaves the other one a broken barrier.
        for error in sorted((e for e in errors if e), key=lambda e: isinstance(e, threading.BrokenBarrierError)):
            raise error
        assert states[0].waits == states[1].waits  # every barrier is reached by both
        return [f.result() for f in futures]

    return run


@pytest.fixture()
def writers(monkeypatch) -> list[tuple[int, str]]:
    """(process, file name) of every atomic file write."""
    seen: list[tuple[int, str]] = []
    real = fileio.write_text

    def spy(target, text):
        seen.append((fileio.process_state().index, Path(target).name))
        real(target, text)

    monkeypatch.setattr(fileio, "write_text", spy)
    return seen


def test_run_dir_is_written_by_the_main_process_and_read_by_the_other(tmp_path, two_processes, writers):
    calls: list[int] = []

    def train(tmp: Path) -> dict[str, Any]:  # a training stage: every process works, main writes
        calls.append(fileio.process_state().index)
        assert tmp.is_dir() and tmp.name == "out"  # one staging folder, made before anyone uses it
        if fileio.is_main_process():
            (tmp / "weights.bin").write_bytes(b"w")
        return {"metric": 0.5}

    def report(root: Path) -> dict[str, Any]:  # no training: the main process alone
        calls.append(fileio.process_state().index)
        (root / "report.md").write_text("r")
        return {}

    def process(i: int) -> tuple[dict, dict, dict]:
        run = RunDir(tmp_path / "run", CompressConfig(), "compress")
        trained = run.stage("iter1", train)
        reported = run.stage("report", report, folder=False, main_only=True)
        run.finish()
        return trained, reported, run.manifest

    (t0, r0, m0), (t1, r1, m1) = two_processes(process)
    assert sorted(calls) == [0, 0, 1]  # training on both, the report on main only
    assert t1 == t0 and r1 == r0 and m1 == m0  # the other process holds main's entries
    assert m0 == read_json(tmp_path / "run" / MANIFEST) and m0["finished"]
    assert {i for i, _ in writers} == {0}  # manifest and config: main only
    assert (tmp_path / "run" / "iter1" / "weights.bin").read_bytes() == b"w"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", "iter1", MANIFEST, "report.md"]


def test_a_slow_reader_never_sees_the_next_stage_early(tmp_path, two_processes, monkeypatch):
    # The other process reads the manifest late: by then a quick main-only stage of the
    # main process must not have saved its entry yet, or the other process would skip that
    # stage's barrier and every later barrier would be unmatched (a deadlock).
    real = fileio.read_json

    def slow(path):
        if fileio.process_state().index == 1:
            time.sleep(0.3)
        return real(path)

    monkeypatch.setattr(run_module, "read_json", slow)

    def process(i: int) -> list[str]:
        run = RunDir(tmp_path / "run", CompressConfig(), "compress")
        for name in ("a", "b", "c"):
            run.stage(name, lambda root: {}, folder=False, main_only=True)
        run.finish()
        return list(run.manifest["stages"])

    assert two_processes(process, timeout=10) == [["a", "b", "c"]] * 2


def test_every_process_refuses_another_run_before_anything_is_written(tmp_path, two_processes):
    RunDir(tmp_path / "run", CompressConfig(), "compress").stage("a", lambda tmp: {})
    before = (tmp_path / "run" / MANIFEST).read_text()

    def process(i: int) -> str:
        try:
            RunDir(tmp_path / "run", CompressConfig(lam=0.5), "compress")
        except Exception as err:  # noqa: BLE001 - the test compares the errors
            return type(err).__name__
        return "opened"

    assert two_processes(process) == ["RunExistsError", "RunExistsError"]
    assert (tmp_path / "run" / MANIFEST).read_text() == before


def test_overwrite_is_cleared_once_and_both_processes_start_fresh(tmp_path, two_processes):
    RunDir(tmp_path / "run", CompressConfig(), "compress").stage("a", lambda tmp: {})

    def process(i: int) -> dict:
        return RunDir(tmp_path / "run", CompressConfig(lam=0.5), "compress", overwrite=True).manifest

    first, second = two_processes(process)
    assert first == second and first["stages"] == {} and first["config"]["lam"] == 0.5
    assert not (tmp_path / "run" / "a").exists()


def test_a_failed_collective_stage_leaves_no_staging_folder(tmp_path):
    run = RunDir(tmp_path / "run", CompressConfig(), "compress")

    def fail(tmp: Path) -> dict[str, Any]:
        (tmp / "half").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.stage("iter1", fail)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", MANIFEST]


def test_save_student_writes_once_and_returns_when_the_files_are_there(tmp_path, two_processes, monkeypatch):
    from minidisc.elastic.io import load_student, save_student
    from tests.elastic_helpers import tiny_bert

    model = tiny_bert("bert")
    saves: list[int] = []
    real = type(model).save_pretrained

    def slow_save(self, *args, **kwargs):  # the other process must wait for it, not race ahead
        saves.append(fileio.process_state().index)
        threading.Event().wait(0.5)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "save_pretrained", slow_save)

    def process(i: int) -> int:
        save_student(model, tmp_path / "student")
        return load_student(tmp_path / "student").config.num_hidden_layers  # readable at once

    assert two_processes(process) == [model.config.num_hidden_layers] * 2
    assert saves == [0]


def test_process_state_refuses_processes_that_all_think_they_are_main(monkeypatch):
    """A CPU-only launch without ACCELERATE_USE_CPU: torch has a group of 2, accelerate sees 1."""
    monkeypatch.setattr(fileio, "_process_group_size", lambda: 2)
    with pytest.raises(ConfigError, match="ACCELERATE_USE_CPU=1"):
        fileio.process_state()


def test_single_process_is_main_and_never_waits():
    state = fileio.process_state()
    assert state.num_processes == 1 and state.is_main_process and fileio.is_main_process()


@pytest.mark.parametrize("other, fails", [(None, False), (0.25, True)])
def test_sandwich_evaluation_stops_when_processes_disagree(monkeypatch, other, fails):
    """Every process must find the same per-candidate metrics (gathered predictions)."""
    from types import SimpleNamespace

    import accelerate.utils

    from minidisc.training.subnets import SubnetTrainer

    mine = {0.5: 0.75, 0.9: 0.5}
    theirs = mine if other is None else {0.5: 0.75, 0.9: other}
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objs: [mine, theirs])
    trainer = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2))
    if fails:
        with pytest.raises(RuntimeError, match="disagree"):
            SubnetTrainer._check_agreement(trainer, mine)
    else:
        SubnetTrainer._check_agreement(trainer, mine)
