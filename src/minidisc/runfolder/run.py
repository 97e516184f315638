"""A run directory: resolved config, a manifest of finished stages, stage outputs.

Every stage writes into a temporary folder that is renamed into place only when the
stage succeeds, then the manifest records it (status, wall time, peak memory
(:mod:`minidisc.compute.memory`), the device and precision
it computed in (``runtime``: :mod:`minidisc.runtime`), metrics, compute, and the files it
wrote with their checksums: :mod:`minidisc.runfolder.outputs`). Rerunning
the same command skips finished stages, so an interrupted run resumes after its last
finished stage; a finished stage whose files are missing or changed is run again, with
every stage recorded after it (they may depend on it), and a warning says so. Staging
folders that a killed run left behind are removed when the run is opened again.

One rule for every command's output folder (:func:`check_output`): only a minidisc run
is ever replaced (with ``overwrite=True``; a run of another configuration, or a finished
run, never without it); a folder that is not a minidisc run is never deleted, and a file
is never an output folder. A run whose ``manifest.json`` is empty or truncated beside
minidisc's own ``config.yaml`` is a damaged run: refused without ``overwrite``, replaced
with it.

Under a multi-process launch every process holds a ``RunDir`` of the same folder: all of
them check it, only the main process writes (config, manifest, stage folders) and checks
the recorded outputs, and the others wait for it and then read its manifest, so every
process sees the same stages.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from minidisc import __version__
from minidisc.compute.memory import peak_memory
from minidisc.config import save_yaml
from minidisc.errors import RunExistsError
from minidisc.fileio import (
    atomic_path,
    check_writable,
    collective_atomic_dir,
    leftovers,
    process_state,
    read_json,
    remove_leftovers,
    write_json,
)
from minidisc.runfolder.outputs import first_problem, record_outputs
from minidisc.runtime import current

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
#: What a report stage writes (checked on resume like a stage folder; plots are not).
REPORT_FILES = ("report.json", "report.md")
#: The first line of every run's config.yaml: how a damaged run is told from a foreign folder.
CONFIG_HEADER = "# minidisc run configuration: resolved, compared with the command's on resume"
#: Where the Python API saves a model given in memory, with the marker that says so.
INPUTS = "inputs"
INPUTS_MARKER = ".minidisc-inputs"

OutputState = Literal["new", "run", "damaged"]


def check_output(path: str | Path, overwrite: bool = False) -> OutputState:
    """Apply the output-folder rule of every command to ``path`` (reads only; commands
    call it before loading models, :class:`RunDir` again when it opens the run).

    Returns:
        ``"new"`` (missing, or a folder empty but for a killed run's staging folders),
        ``"run"`` (a minidisc run) or ``"damaged"`` (a damaged run that ``overwrite``
        will replace).

    Raises:
        RunExistsError: ``path`` is a file; a folder that is not a minidisc run (whatever
            ``overwrite`` says); a damaged run without ``overwrite``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunExistsError(f"{path} is a file, not a folder: choose another --output (a new folder or a minidisc run)")
    if not path.exists() or _is_empty_dir(path):
        return "new"
    if is_run_dir(path):
        return "run"
    if is_damaged_run(path):
        if overwrite:
            return "damaged"
        raise RunExistsError(
            f"{path} is a damaged minidisc run: its {MANIFEST} is empty or truncated (the machine stopped while "
            "saving it, or the disk was full), so it cannot be resumed; pass --overwrite to replace it, "
            "or choose another --output"
        )
    raise RunExistsError(
        f"{path} exists and is not a minidisc run directory (no minidisc {MANIFEST}); minidisc never deletes it, "
        "even with --overwrite: choose another --output, or move or empty that folder yourself"
    )


class RunDir:
    """One run's folder.

    Args:
        path: the run folder (created if missing).
        config: the resolved configuration; saved as ``config.yaml`` and compared
            with the saved one on resume.
        command: the command name recorded in the manifest.
        overwrite: delete an existing run at ``path`` first (only a minidisc run
            directory, or a damaged one, is ever deleted: :func:`check_output`).

    Raises:
        RunExistsError: ``path`` holds a run of another configuration or command, or a
            damaged run, and ``overwrite`` is False; or ``path`` is a file or a non-empty
            folder that is not a minidisc run (whatever ``overwrite`` says).
    """

    def __init__(self, path: str | Path, config: BaseModel, command: str, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.config = config
        self._state = process_state()
        self.manifest, replace = self._opened(config.model_dump(mode="json"), command, overwrite)
        check_writable(self.path)  # a read-only folder fails now, not after the first stage
        self._state.wait_for_everyone()  # nobody still reads the folder when it is cleared
        if self._state.is_main_process:
            self._prepare(replace)
        self._commit()

    def _opened(self, wanted: dict[str, Any], command: str, overwrite: bool) -> tuple[dict[str, Any], bool]:
        """The manifest to continue (the saved one, or a new one) and whether the folder
        is to be cleared first. Reads only, so every process reaches the same verdict
        before anything is written."""
        state = check_output(self.path, overwrite)
        if state == "run" and not overwrite:
            manifest = read_json(self.path / MANIFEST)
            if manifest.get("command") != command or manifest.get("config") != wanted:
                raise different_run(self.path, manifest)
            return manifest, False
        fresh = {
            "command": command,
            "minidisc_version": __version__,
            "created": _now(),
            "config": wanted,
            "stages": {},
            "finished": False,
        }
        return fresh, state != "new"

    def _prepare(self, replace: bool) -> None:
        """(Main process.) Clear a replaced run; or remove a killed run's staging folders
        and forget stages whose outputs are gone. Then save manifest and config."""
        if replace:
            _clear(self.path)
        else:
            remove_leftovers(self.path)
            self._forget_broken_stages()
        remove_leftovers(self.path.parent, self.path.name)  # e.g. an older version's .NAME.xxxxxxxx
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / MANIFEST, self.manifest)  # first: a config.yaml alone would not be a run
        save_yaml(self.path / CONFIG, self.config, header=CONFIG_HEADER)

    def _forget_broken_stages(self) -> None:
        """Drop the first finished stage whose recorded outputs are missing or changed,
        and every stage recorded after it (they may have read it), with a warning.
        Stages recorded without ``outputs`` (older versions) are trusted."""
        stages = self.manifest["stages"]
        names = list(stages)
        for i, name in enumerate(names):
            problem = first_problem(self.path, stages[name].get("outputs") or [])
            if problem is None:
                continue
            for stale in names[i:]:
                del stages[stale]
            self.manifest["finished"] = False
            self.manifest.pop("completed", None)
            also = f", and the stages after it ({', '.join(names[i + 1:])})" if names[i + 1:] else ""
            print(
                f"warning: stage '{name}' of {self.path} was recorded as finished, but {problem}; "
                f"running it again{also}",
                file=sys.stderr,
                flush=True,
            )
            return

    @property
    def finished(self) -> bool:
        return bool(self.manifest.get("finished"))

    def done(self, stage: str) -> bool:
        """Whether stage ``stage`` is finished (its outputs were checked when the run was
        opened: a stage whose files are missing or changed is not done)."""
        return self.manifest["stages"].get(stage, {}).get("status") == "done"

    def record(self, stage: str) -> dict[str, Any]:
        """The manifest entry of a finished stage."""
        return self.manifest["stages"][stage]

    def stage(
        self,
        name: str,
        work: Callable[[Path], dict[str, Any]],
        *,
        folder: bool = True,
        main_only: bool = False,
        outputs: Sequence[str] = (),
        at_root: bool = False,
    ) -> dict[str, Any]:
        """Run ``work`` unless stage ``name`` is finished; return its manifest entry.

        ``work(tmp)`` writes its outputs into the folder ``tmp`` (renamed to
        ``<run>/<name>`` on success, when ``folder``; else ``tmp`` is the run folder)
        and returns JSON-ready results. With ``at_root`` the entries ``work`` wrote
        into ``tmp`` are moved into the run folder itself instead (a command whose
        output folder *is* the model folder, e.g. ``minidisc finetune``).

        The entry records the files the stage wrote (checked when the run is opened
        again): its folder, the moved entries, or, without ``folder``, the ``outputs``
        named (paths relative to the run folder; none by default).

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
        if not main_only or self._state.is_main_process:
            with peak_memory() as memory:
                result, written = self._run(name, work, folder, at_root, collective=not main_only)
            self._enter(name, started, result | memory.to_dict(), written if folder else list(outputs))
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

    def _run(
        self, name: str, work: Callable[[Path], dict[str, Any]], folder: bool, at_root: bool, collective: bool
    ) -> tuple[dict[str, Any], list[str]]:
        """``work``'s result and the paths it wrote (relative to the run; main process).

        ``collective``: on every process, in one shared staging folder; else on this
        process only (the main one)."""
        if not folder:
            return work(self.path), []
        target = self.path / name
        if collective:
            with collective_atomic_dir(target) as tmp:
                result = work(tmp)
        else:
            with atomic_path(target) as tmp:
                tmp.mkdir()
                result = work(tmp)
        if not at_root:
            return result, [name]
        return result, _lift(target) if self._state.is_main_process else []

    def _enter(self, name: str, started: float, result: dict[str, Any], written: list[str]) -> None:
        entry = {"status": "done", "finished": _now(), "wall_time_s": time.perf_counter() - started,
                 "runtime": current().to_dict(), **result}  # a linked or reused entry keeps where it ran
        if self._state.is_main_process:  # the entry every process ends up with is the main one's
            entry["outputs"] = record_outputs(self.path, written)
        self.manifest["stages"][name] = entry

    def _commit(self) -> None:
        """Save the manifest (main process); the others wait, then read it, so every
        process holds the main process's entries (timestamps and wall times included).

        The second barrier keeps the main process from saving its next entry before the
        others have read this one: a slow reader would otherwise see a later stage as
        done, skip that stage's barrier and leave every later barrier unmatched."""
        if self._state.is_main_process:
            write_json(self.path / MANIFEST, self.manifest)
        self._state.wait_for_everyone()
        if not self._state.is_main_process:
            self.manifest = read_json(self.path / MANIFEST)
        self._state.wait_for_everyone()


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


def is_damaged_run(path: Path) -> bool:
    """True when ``path`` holds a ``manifest.json`` that is not readable JSON (empty,
    truncated) beside a ``config.yaml`` that minidisc wrote (its first line is
    :data:`CONFIG_HEADER`): a minidisc run that cannot be resumed."""
    manifest, config = path / MANIFEST, path / CONFIG
    if not manifest.is_file() or not config.is_file():
        return False
    try:
        read_json(manifest)
        return False  # readable: a run (is_run_dir) or some other tool's manifest
    except (OSError, ValueError):
        pass
    try:
        with open(config, encoding="utf-8") as f:
            return f.readline().rstrip("\n") == CONFIG_HEADER
    except (OSError, ValueError):
        return False


def different_run(path: Path, manifest: dict[str, Any]) -> RunExistsError:
    """The error for a run folder that holds another command's or configuration's run."""
    return RunExistsError(
        f"{path} holds a {manifest.get('command')} run with a different configuration; "
        "pass --overwrite to replace it, or choose another --output"
    )


def inputs_folder(path: Path) -> Path | None:
    """``path/inputs`` when it holds what the Python API saved for a run there (a model
    given in memory, :mod:`minidisc.runfolder.inputs`), else None."""
    folder = path / INPUTS
    return folder if (folder / INPUTS_MARKER).is_file() and not folder.is_symlink() else None


def _is_empty_dir(path: Path) -> bool:
    """A folder with nothing in it but a killed run's staging folders (and the inputs a
    run there is about to read)."""
    return path.is_dir() and set(path.iterdir()) <= {*leftovers(path), inputs_folder(path)}


def _lift(folder: Path) -> list[str]:
    """Move every entry of ``folder`` into its parent (replacing what is there), remove
    ``folder``, and return the names moved."""
    names = sorted(p.name for p in folder.iterdir())
    if {MANIFEST, CONFIG} & set(names):
        raise ValueError(f"a stage wrote {MANIFEST} or {CONFIG}, which are the run's own files")
    for name in names:
        dest = folder.parent / name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(folder / name, dest)
    folder.rmdir()
    return names


def _clear(path: Path) -> None:
    """Delete the folder's contents, keeping the folder (which may be a symlink) itself;
    linked stages are unlinked, never followed."""
    keep = inputs_folder(path)  # the replacing run's own inputs, saved just before it starts
    for child in path.iterdir():
        if child == keep:
            continue
        if child.is_symlink() or not child.is_dir():
            child.unlink()
        else:
            shutil.rmtree(child)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
