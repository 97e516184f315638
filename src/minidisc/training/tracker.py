"""Per-candidate bookkeeping of a run over one or many sub-networks: running best dev
metric, a snapshot of each candidate at its best, and the λ-tradeoff selection
(:mod:`minidisc.training.selection`) after every evaluation.

Under DDP every process holds its own tracker; they stay identical because every
process feeds it the same metrics (gathered over all processes, checked equal by
:class:`~minidisc.training.subnets.SubnetTrainer`) and snapshots of the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from minidisc.training.records import CandidateRecord, CandidatesRecord, EvaluationRecord
from minidisc.training.selection import Selection, select_assistant


@dataclass
class CandidateTracker:
    """Track candidates (keyed by sparsity) across evaluations.

    Plain distillation into one sub-network is the one-candidate case
    (:meth:`single`): the selection is that candidate, its snapshot the best one.

    Args:
        levels: the candidates' sparsities (fractions).
        lam: λ of the tradeoff.
        target: the target sparsity (one of ``levels``).
        final: final iteration: the selection is the target itself.
        costs: the λ-tradeoff's cost term per candidate (``--cost latency``); ``None``:
            the sparsity (:func:`minidisc.training.selection.select_assistant`).
    """

    levels: Sequence[float]
    lam: float
    target: float
    final: bool = False
    costs: dict[float, float] | None = None
    best: dict[float, float] = field(default_factory=dict)
    best_step: dict[float, int] = field(default_factory=dict)
    snapshots: dict[float, Any] = field(default_factory=dict)
    history: list[EvaluationRecord] = field(default_factory=list)
    selection: Selection | None = None

    def __post_init__(self) -> None:
        self.best = {s: -math.inf for s in self.levels}

    @classmethod
    def single(cls, sparsity: float) -> CandidateTracker:
        """The tracker of plain distillation into the one sub-network at ``sparsity``."""
        return cls([sparsity], 0.0, sparsity, final=True)

    def update(self, step: int, metrics: dict[float, float], snapshot: Callable[[float], Any]) -> bool:
        """Record one evaluation; snapshot every candidate that reached a new best.

        Args:
            step: the optimiser step of this evaluation.
            metrics: this evaluation's ``main`` dev metric per candidate sparsity.
            snapshot: returns a copy of the sub-network at a sparsity (its weights now).

        Returns:
            True when the selection score improved (the patience counter resets).
        """
        for s, m in metrics.items():
            if m > self.best[s]:
                self.best[s], self.best_step[s] = m, step
                self.snapshots[s] = snapshot(s)
        previous = self.selection.score if self.selection else -math.inf
        self.selection = select_assistant(self.best, self.lam, self.target, final=self.final, costs=self.costs)
        self.history.append(EvaluationRecord(step, dict(metrics), self.selection.sparsity))
        return self.selection.score > previous

    def chosen(self) -> Any:
        """The snapshot of the selected candidate at its best evaluation."""
        if self.selection is None:
            raise RuntimeError("no evaluation has been recorded")
        return self.snapshots[self.selection.sparsity]

    def summary(self) -> CandidatesRecord:
        """The record of the run (``candidates.json``): bests, tradeoffs, the choice, the history."""
        sel = self.selection
        return CandidatesRecord(
            candidates=tuple(
                CandidateRecord(s, self.best[s], self.best_step.get(s), sel.tradeoffs.get(s) if sel else None)
                for s in self.levels
            ),
            lam=self.lam,
            target=self.target,
            selected=sel.sparsity if sel else None,
            selected_score=sel.score if sel else None,
            clipped_to_target=sel.clipped if sel else None,
            history=tuple(self.history),
        )
