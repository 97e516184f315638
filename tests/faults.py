"""Fault injection: run a tiny ``minidisc compress`` in a fresh process and SIGKILL it
inside a chosen stage, as a power cut or the OOM killer would.

A stage is *running* once its staging folder (``.<stage>.*`` beside its final folder)
exists; the report stage, which has none, once every stage before it is recorded done
in the run's ``manifest.json``. The killer polls for that, waits a seeded random delay,
and sends SIGKILL. Which stage the kill
really landed in is read back from the manifest afterwards (the first stage not done),
so a test can check that every stage was hit rather than trusting the timing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from hashlib import sha256
from pathlib import Path

COMPRESS_STAGES = ("teacher", "sparsified", "iter1", "iter2", "student", "report")
# Stage timings vary with the machine's load, so a wait longer than this is a hang.
_TIMEOUT_S = 240.0


def compress_command(config: Path, output: Path) -> list[str]:
    """The CLI command of a tiny compress run from a YAML config file."""
    return [sys.executable, "-m", "minidisc.cli", "compress", "--config", str(config), "--output", str(output)]


def run_to_end(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in a fresh process; fail loudly with its output if it fails."""
    done = subprocess.run(cmd, check=False, cwd=cwd, capture_output=True, text=True, timeout=_TIMEOUT_S, env=_env())
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def kill_in_stage(cmd: list[str], run_dir: Path, stage: str, max_delay_s: float, rng: random.Random, cwd: Path) -> str:
    """Start ``cmd``, SIGKILL it a random delay in ``[0, max_delay_s]`` after ``stage``
    began, and return the stage the kill landed in (``"finished"`` if the process ended
    first).

    A kill that overshoots (the stage ended before the signal arrived: a busy machine)
    is undone, by restoring the run folder as it was before the launch, and tried
    again with half the delay, up to four times.
    """
    backup = run_dir.parent / f"{run_dir.name}.before-kill"
    for _ in range(4):
        _copy(run_dir, backup)
        landed = _kill_once(cmd, run_dir, stage, rng.uniform(0.0, max_delay_s), cwd)
        if landed == stage:
            break
        _copy(backup, run_dir)
        max_delay_s /= 2
    shutil.rmtree(backup, ignore_errors=True)
    return landed


def _kill_once(cmd: list[str], run_dir: Path, stage: str, delay: float, cwd: Path) -> str:
    before = COMPRESS_STAGES[: COMPRESS_STAGES.index(stage)]
    stale = _staging(run_dir, stage)  # left by an earlier kill: not this process's stage
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + _TIMEOUT_S
    try:
        while not _begun(run_dir, stage, before, stale):
            if proc.poll() is not None:
                break
            assert time.monotonic() < deadline, f"stage {stage} never began"
            time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, -signal.SIGKILL), f"the run failed before the kill:\n{err.decode()}"
    return landed_in(run_dir)


def _copy(source: Path, target: Path) -> None:
    """Make ``target`` a copy of the folder ``source`` (absent if ``source`` is)."""
    shutil.rmtree(target, ignore_errors=True)
    if source.exists():
        shutil.copytree(source, target, symlinks=True)


def landed_in(run_dir: Path) -> str:
    """The first stage of a compress run not recorded done (``"finished"`` if none)."""
    manifest = _manifest(run_dir)
    stages = manifest.get("stages", {})
    for name in COMPRESS_STAGES:
        if name == "iter2" and _single_iteration(manifest):
            continue
        if stages.get(name, {}).get("status") != "done":
            return name
    return "finished"


def fingerprint(run_dir: Path) -> dict[str, object]:
    """What two runs of one command must share bit for bit: the sha256 of every weight
    file, and the report and manifest without wall-clock times and dates."""
    return {
        "weights": weight_digests(run_dir),
        "report": timeless(json.loads((run_dir / "report.json").read_text())),
        "manifest": timeless(_manifest(run_dir)),
    }


def weight_digests(run_dir: Path) -> dict[str, str]:
    """SHA-256 of every safetensors file of a run, by path inside the run."""
    return {
        str(p.relative_to(run_dir)): sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.rglob("*.safetensors"))
    }


def _staging(run_dir: Path, stage: str) -> set[tuple[str, int, int]]:
    """The staging folders of ``stage`` now, by name, inode and modification time."""
    found = set()
    for p in run_dir.glob(f".{stage}.*"):
        try:
            st = p.stat()
        except OSError:
            continue  # removed while we looked
        found.add((p.name, st.st_ino, st.st_mtime_ns))
    return found


def _begun(run_dir: Path, stage: str, before: tuple[str, ...], stale: set[tuple[str, int, int]]) -> bool:
    if stage != "report":
        return bool(_staging(run_dir, stage) - stale)
    manifest = _manifest(run_dir)
    stages = manifest.get("stages", {})
    return all(stages.get(s, {}).get("status") == "done" or (s == "iter2" and _single_iteration(manifest)) for s in before)


def _single_iteration(manifest: dict) -> bool:
    """Iteration 1 selected the target itself, so no ``iter2`` stage follows it."""
    first = manifest.get("stages", {}).get("iter1", {})
    target = manifest.get("config", {}).get("target_sparsity")
    return first.get("status") == "done" and abs(first.get("selected", -1.0) - target) < 1e-9


def _manifest(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}  # not written yet, or being replaced right now


# Keys whose values are clocks, not results; and the manifest's records of the files a
# stage wrote (modification times, and checksums of logs and model cards that hold
# times and paths): the weights are compared on their own.
_CLOCKS = {"created", "finished", "completed", "wall_time_s", "seconds", "wall_s", "time_s", "duration_s", "outputs"}


# Measured inference times and their ratios (the speed stage) and peak memory: measurements of the machine.
_TIMINGS = {"ms", "speedup", "peak_rss_mb"}


def timeless(obj: object) -> object:
    """``obj`` (a report's or manifest's JSON) without clocks, measured times and peak
    memory: the only things two runs of one command may differ in."""
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items()
                if k not in _CLOCKS | _TIMINGS and not k.endswith(("_time_s", "_seconds", "_ms"))}
    if isinstance(obj, list):
        return [timeless(v) for v in obj]
    return obj


def _env() -> dict[str, str]:
    # One thread: the same float summation order in every process, and no thrashing of
    # a small CI machine.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
