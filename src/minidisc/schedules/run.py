"""A run directory: resolved config, a manifest of finished stages, stage outputs.

Every stage writes into a temporary folder that is renamed into place only when the
stage succeeds, then the manifest records it (status, wall time, metrics, compute).
Rerunning the same command skips finished stages, so an interrupted run resumes after
its last finished stage. A run started with another configuration, or a finished run,
is never overwritten without ``overwrite=True``.

Under a multi-process launch every process holds a ``RunDir`` of the same folder: all of
them check it, only the main process writes (config, manifest, stage folders), and the
others wait for it and then read its manifest, so every process sees the same stages.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from minidisc import __version__
from minidisc.config import save_yaml
from minidisc.errors import RunExistsError
from minidisc.fileio import (
    atomic_path,
    check_writable,
    collective_atomic_dir,
    process_state,
    read_json,
    write_json,
)

MANIFEST = "manifest.json"


class RunDir:
    """One run's folder.

    Args:
        path: the run folder (created if missing).
        config: the resolved configuration; saved as ``config.yaml`` and compared
            with the saved one on resume.
        command: the command name recorded in the manifest.
        overwrite: delete an existing run at ``path`` first (only a minidisc run
            directory, i.e. one with a ``manifest.json``, is ever deleted).

    Raises:
        RunExistsError: ``path`` holds a run of another configuration or command and
            ``overwrite`` is False; or ``path`` is a file or a non-empty folder that is
            not a minidisc run (whatever ``overwrite`` says).
    """

    def __init__(self, path: str | Path, config: BaseModel, command: str, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.config = config
        self._state = process_state()
        self.manifest = self._opened(config.model_dump(mode="json"), command, overwrite)
        check_writable(self.path)  # a read-only folder fails now, not after the first stage
        self._state.wait_for_everyone()  # nobody still reads the folder when it is cleared
        if self._state.is_main_process:
            if overwrite and is_run_dir(self.path):
                _clear(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            save_yaml(self.path / "config.yaml", config)
        self._commit()

    def _opened(self, wanted: dict[str, Any], command: str, overwrite: bool) -> dict[str, Any]:
        """The manifest to continue: the saved one, or a new one. Reads only, so every
        process reaches the same verdict before anything is written."""
        if self.path.exists() and not _is_empty_dir(self.path) and not is_run_dir(self.path):
            raise RunExistsError(
                f"{self.path} exists and is not a minidisc run directory (no {MANIFEST}); minidisc never deletes "
                "it, even with --overwrite: choose another --output, or move or empty that folder yourself"
            )
        if (self.path / MANIFEST).is_file() and not (overwrite and is_run_dir(self.path)):
            manifest = read_json(self.path / MANIFEST)
            if manifest.get("command") != command or manifest.get("config") != wanted:
                raise RunExistsError(
                    f"{self.path} holds a {manifest.get('command')} run with a different configuration; "
                    "pass --overwrite to replace it, or choose another --output"
                )
            return manifest
        return {
            "command": command,
            "minidisc_version": __version__,
            "created": _now(),
            "config": wanted,
            "stages": {},
            "finished": False,
        }

    @property
    def finished(self) -> bool:
        return bool(self.manifest.get("finished"))

    def done(self, stage: str) -> bool:
        return self.manifest["stages"].get(stage, {}).get("status") == "done"

    def record(self, stage: str) -> dict[str, Any]:
        """The manifest entry of a finished stage."""
        return self.manifest["stages"][stage]

    def stage(
        self, name: str, work: Callable[[Path], dict[str, Any]], *, folder: bool = True, main_only: bool = False
    ) -> dict[str, Any]:
        """Run ``work`` unless stage ``name`` is finished; return its manifest entry.

        ``work(tmp)`` writes its outputs into the folder ``tmp`` (renamed to
        ``<run>/<name>`` on success, when ``folder``; else ``tmp`` is the run folder)
        and returns JSON-ready results.

        Under a multi-process launch ``work`` runs on every process (training needs
        every rank), all in one shared ``tmp``, and must write files from the main
        process only (:func:`~minidisc.fileio.is_main_process`); with ``main_only`` (a
        stage that does not train) it runs on the main process while the others wait.
        Either way the main process alone renames the folder and saves the manifest,
        and every process returns the entry the main process saved.
        """
        if self.done(name):
            return self.record(name)
        started = time.perf_counter()
        if not main_only:
            self._enter(name, started, self._together(name, work, folder))
        elif self._state.is_main_process:
            self._enter(name, started, self._alone(name, work, folder))
        self._commit()
        return self.record(name)

    def set(self, key: str, value: Any) -> None:
        """Store a run-level record (e.g. the schedule's ``cost``) in the manifest."""
        self.manifest[key] = value
        self._commit()

    def finish(self) -> None:
        self.manifest["finished"] = True
        self.manifest["completed"] = _now()
        self._commit()

    def _together(self, name: str, work: Callable[[Path], dict[str, Any]], folder: bool) -> dict[str, Any]:
        """``work`` on every process, in one shared staging folder."""
        if not folder:
            return work(self.path)
        with collective_atomic_dir(self.path / name) as tmp:
            return work(tmp)

    def _alone(self, name: str, work: Callable[[Path], dict[str, Any]], folder: bool) -> dict[str, Any]:
        """``work`` on this process only (the main one)."""
        if not folder:
            return work(self.path)
        with atomic_path(self.path / name) as tmp:
            tmp.mkdir()
            return work(tmp)

    def _enter(self, name: str, started: float, result: dict[str, Any]) -> None:
        entry = {"status": "done", "finished": _now(), "wall_time_s": time.perf_counter() - started, **result}
        self.manifest["stages"][name] = entry

    def _commit(self) -> None:
        """Save the manifest (main process); the others wait, then read it, so every
        process holds the main process's entries (timestamps and wall times included)."""
        if self._state.is_main_process:
            write_json(self.path / MANIFEST, self.manifest)
        self._state.wait_for_everyone()
        if not self._state.is_main_process:
            self.manifest = read_json(self.path / MANIFEST)


def is_run_dir(path: Path) -> bool:
    """True when the folder ``path`` holds a minidisc ``manifest.json``."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return False
    try:
        content = read_json(manifest)
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and "command" in content and "stages" in content


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def _clear(path: Path) -> None:
    """Delete the folder's contents, keeping the folder (which may be a symlink) itself;
    linked stages are unlinked, never followed."""
    for child in path.iterdir():
        if child.is_symlink() or not child.is_dir():
            child.unlink()
        else:
            shutil.rmtree(child)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
