"""Snapshots of candidate sub-networks, kept on disk rather than in memory.

A sandwich run keeps, for every candidate, a copy of its sub-network at the evaluation
its scoring rule keeps (:mod:`minidisc.training.tracker`). Held in memory those copies
are a large share of the run's peak: each is a whole model (embeddings included), so the
demo's seven candidates held ~0.3 GB of a 22 M-parameter teacher's sandwich, and a
decoder's three candidates several times that (issue 13, part 3). A
:class:`SnapshotStore` writes each copy to a safetensors file in the stage's folder the
moment it is taken and frees it; :meth:`Snapshot.load` rebuilds the sub-network's shape
(``rebuild``: a fresh extraction of the same spec) and loads the saved weights into it,
strictly. float32 and bfloat16 tensors round-trip exactly, so the saved student is
bit-identical to the in-memory path's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from minidisc.fileio import atomic_path

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["MemorySnapshot", "Snapshot", "SnapshotStore"]


@dataclass(frozen=True)
class Snapshot:
    """A sub-network's weights in ``path`` (safetensors, :func:`safetensors.torch.save_model`).

    ``rebuild`` returns a model of the snapshot's shape (its weights are replaced).
    """

    path: Path
    rebuild: Callable[[], PreTrainedModel]

    def load(self) -> PreTrainedModel:
        """The sub-network as it was when the snapshot was taken (on the CPU).

        Raises:
            RuntimeError: the file does not match the rebuilt shape (missing or unexpected
                tensors), e.g. a stale file from another run.
        """
        from safetensors.torch import load_model

        model = self.rebuild()
        load_model(model, self.path, strict=True)
        return model


@dataclass(frozen=True)
class MemorySnapshot:
    """A sub-network held in memory (no store given: tests, benchmarks)."""

    model: PreTrainedModel

    def load(self) -> PreTrainedModel:
        return self.model


class SnapshotStore:
    """Snapshots of one stage in ``folder`` (one file per candidate, replaced when the
    candidate's snapshot is retaken); :meth:`clear` removes them.

    Each process of a launch writes its own files (``rank`` in the name): they hold the
    same weights, but no process may read a file another is writing or removing.
    """

    def __init__(self, folder: Path, rank: int = 0) -> None:
        self.folder = Path(folder)
        self.rank = rank

    def save(self, name: str, model: PreTrainedModel, rebuild: Callable[[], PreTrainedModel]) -> Snapshot:
        """Write ``model``'s weights atomically as ``name`` and return its :class:`Snapshot`."""
        from safetensors.torch import save_model

        path = self.folder / f"{name}.rank{self.rank}.safetensors"
        with atomic_path(path) as tmp:  # makes the folder
            save_model(model, str(tmp))
        return Snapshot(path, rebuild)

    def clear(self) -> None:
        """Remove this process's files, and the folder once no process has any left there."""
        for path in self.folder.glob(f"*.rank{self.rank}.safetensors"):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # missing, or another process's files still there
            self.folder.rmdir()
