"""A run directory: resolved config, a manifest of finished stages, stage outputs.

Every stage writes into a temporary folder that is renamed into place only when the
stage succeeds, then the manifest records it (status, wall time, metrics, compute).
Rerunning the same command skips finished stages, so an interrupted run resumes after
its last finished stage. A run started with another configuration, or a finished run,
is never overwritten without ``overwrite=True``.
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
from minidisc.fileio import atomic_path, read_json, write_json

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
        wanted = config.model_dump(mode="json")
        if self.path.exists() and not _is_empty_dir(self.path) and not is_run_dir(self.path):
            raise RunExistsError(
                f"{self.path} exists and is not a minidisc run directory (no {MANIFEST}); minidisc never deletes "
                "it, even with --overwrite: choose another --output, or move or empty that folder yourself"
            )
        if overwrite and is_run_dir(self.path):
            _clear(self.path)
        if (self.path / MANIFEST).is_file():
            self.manifest = read_json(self.path / MANIFEST)
            if self.manifest.get("command") != command or self.manifest.get("config") != wanted:
                raise RunExistsError(
                    f"{self.path} holds a {self.manifest.get('command')} run with a different configuration; "
                    "pass --overwrite to replace it, or choose another --output"
                )
        else:
            self.manifest = {
                "command": command,
                "minidisc_version": __version__,
                "created": _now(),
                "config": wanted,
                "stages": {},
                "finished": False,
            }
        self.path.mkdir(parents=True, exist_ok=True)
        save_yaml(self.path / "config.yaml", config)
        self._save()

    @property
    def finished(self) -> bool:
        return bool(self.manifest.get("finished"))

    def done(self, stage: str) -> bool:
        return self.manifest["stages"].get(stage, {}).get("status") == "done"

    def record(self, stage: str) -> dict[str, Any]:
        """The manifest entry of a finished stage."""
        return self.manifest["stages"][stage]

    def stage(self, name: str, work: Callable[[Path], dict[str, Any]], *, folder: bool = True) -> dict[str, Any]:
        """Run ``work`` unless stage ``name`` is finished; return its manifest entry.

        ``work(tmp)`` writes its outputs into the folder ``tmp`` (renamed to
        ``<run>/<name>`` on success, when ``folder``) and returns JSON-ready results.
        """
        if self.done(name):
            return self.record(name)
        started = time.perf_counter()
        if folder:
            with atomic_path(self.path / name) as tmp:
                tmp.mkdir()
                result = work(tmp)
        else:
            result = work(self.path)
        entry = {"status": "done", "finished": _now(), "wall_time_s": time.perf_counter() - started, **result}
        self.manifest["stages"][name] = entry
        self._save()
        return entry

    def set(self, key: str, value: Any) -> None:
        """Store a run-level record (e.g. the schedule's ``cost``) in the manifest."""
        self.manifest[key] = value
        self._save()

    def finish(self) -> None:
        self.manifest["finished"] = True
        self.manifest["completed"] = _now()
        self._save()

    def _save(self) -> None:
        write_json(self.path / MANIFEST, self.manifest)


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
