"""What a finished stage wrote, and whether it is still there: the resume check of a run.

When a stage finishes, the run records every file it wrote (path relative to the run
folder, size in bytes, modification time in ns, SHA-256) in its manifest entry. When the
run is opened again, :func:`first_problem` checks those files before anything is skipped,
so a stage whose outputs were deleted or changed is run again instead of being trusted.

Hashing costs time (about 1 s per GB), so recording hashes every file once, and verifying
takes a fast path: a file whose size and modification time both equal the recorded ones
is trusted without being read; any other file is hashed and compared (a file rewritten
with the same bytes passes, and its new time is recorded). A change that keeps both the
size and the modification time (a deliberate ``touch -d``, silent disk corruption) is not
detected.

A symbolic link (a stage linked from another run, a stage reused from another run's
registry) is recorded as its link text *and* the files it leads to, so a dependent run
notices when the stage it links to was run again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def record_outputs(root: Path, paths: Iterable[str]) -> list[dict[str, Any]]:
    """Manifest records of the files at ``paths`` (relative to ``root``).

    A folder stands for every file below it; a symbolic link is recorded as a link and,
    when it leads to a folder, as the files there (links inside it are recorded as links
    only, never followed, so a cycle cannot loop). Paths that do not exist are skipped
    (an optional output, e.g. a plot that was not drawn).

    Returns:
        One record per file: ``{"path", "size", "mtime_ns", "sha256"}``, or per link
        ``{"path", "link"}``; paths are POSIX-style, relative to ``root``.
    """
    records: list[dict[str, Any]] = []
    for rel in paths:
        path = root / rel
        if path.is_symlink():
            records.append({"path": Path(rel).as_posix(), "link": os.readlink(path)})
            if path.is_dir():
                records += _folder_records(root, Path(rel))
        elif path.is_dir():
            records += _folder_records(root, Path(rel))
        elif path.is_file():
            records.append(_file_record(root, Path(rel)))
    return records


def first_problem(root: Path, records: list[dict[str, Any]]) -> str | None:
    """What is wrong with the recorded outputs under ``root``, or None when all are intact.

    Refreshes the recorded modification time of a file whose bytes still match, so the
    next check takes the fast path again (the caller saves the manifest).

    Returns:
        A phrase naming the first missing or changed file, e.g.
        ``"teacher/model.safetensors is missing"``.
    """
    for record in records:
        path = root / record["path"]
        if "link" in record:
            if not path.is_symlink() or os.readlink(path) != record["link"]:
                return f"{record['path']} is no longer the link to {record['link']}"
            if not path.exists():
                return f"{record['path']} links to {record['link']}, which is missing"
            continue
        if not path.is_file():
            return f"{record['path']} is missing"
        stat = path.stat()
        if stat.st_size != record["size"]:
            return f"{record['path']} has changed ({stat.st_size} bytes, {record['size']} recorded)"
        if stat.st_mtime_ns == record["mtime_ns"]:
            continue
        if sha256(path) != record["sha256"]:
            return f"{record['path']} has changed (its SHA-256 checksum differs from the recorded one)"
        record["mtime_ns"] = stat.st_mtime_ns
    return None


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_records(root: Path, rel: Path) -> list[dict[str, Any]]:
    """Records of every file below ``root / rel`` in a stable order; links inside are
    recorded as links (not followed)."""
    records = []
    for top, dirs, files in os.walk(root / rel):  # does not descend into linked folders
        dirs.sort()
        here = Path(top).relative_to(root)
        for name in sorted(files) + [d for d in dirs if (Path(top) / d).is_symlink()]:
            entry = here / name
            if (root / entry).is_symlink():
                records.append({"path": entry.as_posix(), "link": os.readlink(root / entry)})
            else:
                records.append(_file_record(root, entry))
    return records


def _file_record(root: Path, rel: Path) -> dict[str, Any]:
    stat = (root / rel).stat()
    return {"path": rel.as_posix(), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256(root / rel)}
