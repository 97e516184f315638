"""Atomic file writes: a crash never leaves a half-written output behind.

Everything is written to a temporary file in the destination folder and renamed over
the target (``os.replace`` is atomic on POSIX and Windows for same-volume paths).
A full disk met inside such a write (or anywhere in the block, e.g. a Trainer
checkpoint of a stage) becomes a one-sentence :class:`~minidisc.errors.DiskFullError`,
a read-only destination a :class:`~minidisc.errors.ConfigError`; commands call
:func:`check_writable` on their output before any work, so a read-only folder is found
at once rather than after training.

Under a multi-process launch (``accelerate launch``, ``torchrun``) every process runs the
same code on one shared run folder, so outputs are written by the main process only:
:func:`process_state` is accelerate's view of this process, and
:func:`collective_atomic_dir` is :func:`atomic_path` for a folder that every process
works in together (e.g. a Trainer's ``output_dir``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.errors import ConfigError, DiskFullError, MinidiscError

if TYPE_CHECKING:
    from accelerate import PartialState


#: minidisc's own staging folders: ``.<target>.<8 random characters>`` (:func:`atomic_path`,
#: ``tempfile.mkdtemp``'s alphabet) and ``.<target>.partial`` (:func:`collective_atomic_dir`).
_STAGING = re.compile(r"\.(?P<target>.+)\.(?:[a-z0-9_]{8}|partial)")
_STAGED = "out"  # the one entry a staging folder holds


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    Works for files and directories: whatever the caller creates at the yielded path
    replaces ``target`` (an existing directory is removed first). On an exception the
    temporary path is deleted and ``target`` is left untouched; a killed process leaves
    it behind, for :func:`remove_leftovers` to find.
    """
    target = Path(target)
    with write_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent)) / _STAGED
        try:
            yield tmp
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp.parent, ignore_errors=True)


@contextmanager
def collective_atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """:func:`atomic_path` for a directory that every process of a launch fills together.

    Every process must enter and leave the block (it synchronises them). All get the
    same, existing, empty staging folder, so a Trainer's ``output_dir`` inside it is
    shared as the Trainer expects; files in it must be written by the main process
    only. The main process creates it and, once every process has left the block,
    renames it onto ``target``; when the block ends ``target`` is in place for all. With
    one process this is :func:`atomic_path` with the folder already made.
    """
    state = process_state()
    target = Path(target)
    root = target.parent / f".{target.name}.partial"  # one name: every process finds it
    staging = root / _STAGED
    with write_errors(target):
        if state.is_main_process:
            shutil.rmtree(root, ignore_errors=True)  # left by an interrupted attempt
            staging.mkdir(parents=True)
        state.wait_for_everyone()
        try:
            yield staging
            state.wait_for_everyone()  # nobody still writes or reads the staging folder
            if state.is_main_process:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(staging, target)
        finally:
            if state.is_main_process:
                shutil.rmtree(root, ignore_errors=True)
    state.wait_for_everyone()  # the others may read target from here on


def leftovers(folder: str | os.PathLike[str], target: str | None = None) -> list[Path]:
    """Staging folders of :func:`atomic_path` / :func:`collective_atomic_dir` in ``folder``
    that an interrupted (killed) write left behind.

    Only minidisc's own: a folder (not a link) named ``.<target>.<8 characters>`` or
    ``.<target>.partial`` that holds nothing but its ``out`` entry; never anything else.

    Args:
        folder: where to look (not recursive).
        target: only the leftovers of writes to this name (None: of any name).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _STAGING.fullmatch(entry.name)
        if match is None or (target is not None and match["target"] != target):
            continue
        if entry.is_dir() and not entry.is_symlink() and {p.name for p in entry.iterdir()} <= {_STAGED}:
            found.append(entry)
    return sorted(found)


def remove_leftovers(folder: str | os.PathLike[str], target: str | None = None) -> list[Path]:
    """Delete :func:`leftovers` of ``folder`` (a killed run's staging folders); return them.

    Call it only where no other process is writing (e.g. when a run starts, before it
    writes): a staging folder in use looks the same as a leftover one.
    """
    found = leftovers(folder, target)
    for path in found:
        shutil.rmtree(path, ignore_errors=True)
    return found


_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


@contextmanager
def write_errors(target: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a failed write of ``target`` (or of anything under it) into one sentence.

    A full disk (``ENOSPC``/``EDQUOT``, whichever file it hit) raises
    :class:`~minidisc.errors.DiskFullError`; a permission or read-only error on a path
    at or under ``target``'s folder raises :class:`~minidisc.errors.ConfigError`. Other
    errors pass unchanged.
    """
    target = Path(target)
    try:
        yield
    except OSError as err:
        converted = _write_error(err, target)
        if converted is None:
            raise
        raise converted from err


def disk_error(err: OSError) -> MinidiscError | None:
    """The one-sentence error for an OSError that can only come from writing: a full
    disk or a read-only file system (None for any other error)."""
    where = err.filename or "an output file"
    if err.errno in _NO_SPACE:
        return DiskFullError(
            f"no space left on the disk while writing {where}: free some space there (or choose "
            "another --output on a disk with room) and rerun the command; the unfinished output was removed"
        )
    if err.errno == errno.EROFS:
        return ConfigError(f"cannot write {where}: the file system is read-only; choose another --output")
    return None


def _write_error(err: OSError, target: Path) -> MinidiscError | None:
    inside = err.filename is None or Path(os.path.abspath(err.filename)).is_relative_to(
        Path(os.path.abspath(target)).parent
    )
    if err.errno in _NOT_WRITABLE and inside:
        return disk_error(err) or ConfigError(
            f"cannot write {err.filename or target} ({err.strerror}): choose another --output, or make "
            "that folder writable"
        )
    return disk_error(err)


def check_writable(folder: str | os.PathLike[str], what: str = "--output") -> None:
    """Check, before any work, that outputs can be written into ``folder``.

    Creates and removes a probe file in ``folder`` if it exists, else in its nearest
    existing ancestor (where it would be created); nothing else is created.

    Raises:
        ConfigError: ``folder`` (or an ancestor) is a file, or the probe cannot be
            written (read-only folder or file system, no permission).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {folder} is a file, not a folder: choose a folder path")
    probe_dir = folder
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise ConfigError(f"{what} {folder} cannot be created: {probe_dir} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".minidisc-write-probe.", dir=probe_dir)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        reason = "no space left on the disk" if err.errno in _NO_SPACE else err.strerror
        raise ConfigError(
            f"cannot write into {probe_dir} ({reason}): choose another {what}, or make that folder writable"
        ) from None


def process_state() -> PartialState:
    """accelerate's view of this process: ``is_main_process``, ``wait_for_everyone()``,
    ``main_process_first()`` (a single process, always main, when not launched).

    Built as ``TrainingArguments`` builds it (``cpu=True`` when the launcher asked for
    CPU through ``ACCELERATE_USE_CPU``), so a state made before the first Trainer
    agrees with the Trainer's.

    Raises:
        ConfigError: several processes share a process group but accelerate counts one
            (a CPU-only machine launched without ``ACCELERATE_USE_CPU=1``): every process
            would take itself for the main one and they would overwrite each other.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
    world = _process_group_size()
    if world is not None and world != state.num_processes:
        raise ConfigError(
            f"{world} processes were launched but accelerate sees {state.num_processes}: on a machine "
            "without GPUs launch with ACCELERATE_USE_CPU=1 (e.g. ACCELERATE_USE_CPU=1 accelerate launch "
            "--multi_gpu --num_processes N -m minidisc.cli ...)"
        )
    return state


def is_main_process() -> bool:
    """Whether this process writes run outputs (True when not launched)."""
    return process_state().is_main_process


def _process_group_size() -> int | None:
    """The size of torch's default process group, None when there is none."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else None


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
