"""Per-candidate bookkeeping of a run over one or many sub-networks: every evaluation of
each candidate, its running best, its selection metric under the run's scoring rule
(:func:`~minidisc.training.selection.candidate_metric`), the snapshot of each candidate
that rule keeps, and the λ-tradeoff selection (:mod:`minidisc.training.selection`) after
every evaluation.

The snapshot follows the rule, so the metric that selects a candidate estimates the
weights that are kept: ``best`` keeps each candidate at its best evaluation (the paper's
rule), ``last_mean`` at its latest one (the end of training, whose quality the mean of
the last evaluations estimates).

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
from minidisc.training.selection import (
    BEST,
    DEFAULT_SCORE_WINDOW,
    LAST_MEAN,
    ScoreRule,
    Selection,
    candidate_metric,
    select_assistant,
)


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
        score: the scoring rule (``best``: running maximum, snapshot at the best;
            ``last_mean``: mean of the last ``window`` evaluations, snapshot at the latest).
        window: evaluations ``last_mean`` averages.
        floor: the collapse floor: candidates whose selection metric is at or below it
            (at the task's constant-prediction score) are passed over by the selection;
            ``None``: none is (:func:`minidisc.training.selection.select_assistant`).

    Raises:
        ConfigError: an unknown rule or a window below 1.
    """

    levels: Sequence[float]
    lam: float
    target: float
    final: bool = False
    costs: dict[float, float] | None = None
    score: ScoreRule = BEST
    window: int = DEFAULT_SCORE_WINDOW
    floor: float | None = None
    best: dict[float, float] = field(default_factory=dict)
    best_step: dict[float, int] = field(default_factory=dict)
    evaluations: dict[float, list[float]] = field(default_factory=dict)
    snapshots: dict[float, Any] = field(default_factory=dict)
    history: list[EvaluationRecord] = field(default_factory=list)
    selection: Selection | None = None
    top_score: float = -math.inf  # the best selection score so far: patience counts from it

    def __post_init__(self) -> None:
        candidate_metric([], self.score, self.window)  # an unknown rule or window fails here
        self.best = {s: -math.inf for s in self.levels}
        self.evaluations = {s: [] for s in self.levels}

    def metrics(self) -> dict[float, float]:
        """Every candidate's selection metric under the rule (−inf before any evaluation)."""
        return {s: candidate_metric(v, self.score, self.window) for s, v in self.evaluations.items()}

    @classmethod
    def single(cls, sparsity: float) -> CandidateTracker:
        """The tracker of plain distillation into the one sub-network at ``sparsity``."""
        return cls([sparsity], 0.0, sparsity, final=True)

    def update(self, step: int, metrics: dict[float, float], snapshot: Callable[[float], Any]) -> bool:
        """Record one evaluation; snapshot every candidate the rule keeps now (``best``:
        those that reached a new best; ``last_mean``: all of them).

        Args:
            step: the optimiser step of this evaluation.
            metrics: this evaluation's ``main`` dev metric per candidate sparsity.
            snapshot: returns a copy of the sub-network at a sparsity (its weights now).

        Returns:
            True when the selection score beat its best so far (the patience counter resets).
        """
        for s, m in metrics.items():
            self.evaluations[s].append(m)
            improved = m > self.best[s]
            if improved:
                self.best[s], self.best_step[s] = m, step
            if improved or self.score == LAST_MEAN:
                self.snapshots[s] = snapshot(s)
        self.selection = select_assistant(self.metrics(), self.lam, self.target, final=self.final, costs=self.costs,
                                         floor=self.floor)
        self.history.append(EvaluationRecord(step, dict(metrics), self.selection.sparsity))
        # against the best so far: a mean of recent evaluations may fall and come back
        improved, self.top_score = self.selection.score > self.top_score, max(self.top_score, self.selection.score)
        return improved

    def chosen(self) -> Any:
        """The snapshot of the selected candidate the rule keeps (at its best, or latest, evaluation)."""
        if self.selection is None:
            raise RuntimeError("no evaluation has been recorded")
        return self.snapshots[self.selection.sparsity]

    def summary(self) -> CandidatesRecord:
        """The record of the run (``candidates.json``): bests, selection metrics, tradeoffs,
        the choice, the scoring rule, the history."""
        sel, scores = self.selection, self.metrics()
        return CandidatesRecord(
            candidates=tuple(
                CandidateRecord(s, self.best[s], self.best_step.get(s), sel.tradeoffs.get(s) if sel else None,
                                score=scores[s] if self.evaluations[s] else None)
                for s in self.levels
            ),
            score_rule=self.score,
            score_window=self.window if self.score == LAST_MEAN else None,
            lam=self.lam,
            target=self.target,
            selected=sel.sparsity if sel else None,
            selected_score=sel.score if sel else None,
            clipped_to_target=sel.clipped if sel else None,
            passed_over=sel.passed_over if sel else (),
            history=tuple(self.history),
        )
