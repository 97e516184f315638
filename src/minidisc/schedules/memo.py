"""Reuse of finished stages between runs that share one teacher (memoisation).

Two schedules distilling the same sparsified teacher often need an identical stage:
TAKD's hop teacher → 50 % is MaxiDisc's first hop through the 50 % assistant; MaxiDisc's
first hops are the same for every target; direct KD to 90 % is MaxiDisc's first hop
through a 90 % assistant when the target is 95 %. A stage is identified by a
*fingerprint* of everything that determines its result (the root teacher run, the
chain of levels from the teacher, objective, training and data settings); the run that
holds the shared teacher keeps a registry ``stage-registry.json`` fingerprint → finished
stage folder and manifest entry.

A reused stage appears in the new run as a relative symlink to the original folder and
a copy of its manifest entry with ``reused_from``. Its compute still counts in the
schedule's *cost* (the schedule needs that stage), but not in what the run *spent*.
One process at a time writes a registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minidisc.fileio import read_json, write_json
from minidisc.runfolder.outputs import first_problem
from minidisc.runtime import current
from minidisc.schedules.stages import root_run

if TYPE_CHECKING:
    from minidisc.runfolder.run import RunDir

REGISTRY = "stage-registry.json"


def fingerprint(payload: dict[str, Any]) -> str:
    """A stable hex digest of a JSON-ready description of a stage."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def stage_key(run: RunDir, payload: dict[str, Any]) -> str:
    """The fingerprint of a stage of ``run``: ``payload`` (what else determines its result:
    levels, training and data settings) with the root run that holds the teacher, when
    its ``sparsified`` stage finished (a teacher sparsified again is another teacher) and
    the precision it trains in (:mod:`minidisc.runtime`; fp32, as before it existed, is
    left out, so earlier registries still match)."""
    root = {"root": str(root_run(run.path)), "root_finished": run.record("sparsified").get("finished")}
    precision = current().precision
    return fingerprint(payload | root | ({"precision": precision} if precision != "fp32" else {}))


class StageMemo:
    """The registry of finished stages kept in the root run ``root``.

    Args:
        root: the run directory that physically holds the shared teacher.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / REGISTRY

    def find(self, key: str) -> tuple[Path, dict[str, Any]] | None:
        """The folder and manifest entry of a finished stage, if it still holds every file
        it was recorded with, unchanged (a stage whose weights were deleted or edited
        since is trained again, with a warning, not reused)."""
        if not self.path.is_file():
            return None
        hit = read_json(self.path).get(key)
        if hit is None or not Path(hit["folder"]).is_dir():
            return None
        folder, entry = Path(hit["folder"]), hit["entry"]
        problem = first_problem(folder.parent, entry.get("outputs", []))  # recorded relative to its run
        if problem is not None:
            print(f"warning: not reusing the finished stage {folder}: {problem}; training it again",
                  file=sys.stderr, flush=True)
            return None
        return folder, entry

    def remember(self, key: str, folder: Path, entry: dict[str, Any]) -> None:
        registry = read_json(self.path) if self.path.is_file() else {}
        registry[key] = {"folder": str(folder.resolve()), "entry": entry}
        write_json(self.path, registry)


def memo_stage(
    run: RunDir,
    name: str,
    key: str,
    memo: StageMemo | None,
    work: Callable[[Path], dict[str, Any]],
    reuse: Callable[[Path, dict[str, Any], Path], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run stage ``name`` of ``run`` unless finished, or reuse an identical finished stage.

    Args:
        key: the stage's fingerprint (:func:`stage_key`).
        memo: the registry to look in and add to (None: never reuse).
        work: the stage's work, as for :meth:`RunDir.stage`.
        reuse: how to reuse a finished stage: ``reuse(folder, entry, tmp)`` fills the
            stage's folder ``tmp`` from the finished stage's ``folder`` and manifest
            ``entry`` and returns this run's entry; None: link the folder and copy the
            entry (with ``reused_from``).

    Returns:
        The stage's manifest entry (with ``fingerprint``; ``reused_from`` when reused).
    """
    if run.done(name):
        return run.record(name)
    hit = memo.find(key) if memo is not None else None
    target = run.path / name
    if hit is not None and hit[0] != target.resolve():
        folder, entry = hit
        if reuse is not None:
            return run.stage(name, lambda tmp: reuse(folder, entry, tmp), main_only=True)
        if target.is_symlink():
            target.unlink()
        os.symlink(os.path.relpath(folder, run.path.resolve()), target, target_is_directory=True)
        copied = {k: v for k, v in entry.items() if k not in ("status", "finished")}
        copied["reused_from"] = str(folder)
        return run.stage(name, lambda _root: copied, folder=False, outputs=(name,))
    entry = run.stage(name, lambda tmp: {**work(tmp), "fingerprint": key})
    if memo is not None:
        memo.remember(key, target, entry)
    return entry
