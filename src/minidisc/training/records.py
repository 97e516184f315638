"""Typed records of distillation results, shared by the code that writes them and the
code that reads them.

Writers build a record and store its :meth:`to_dict` (a stage's manifest entry, or
``candidates.json``); readers (the reports, the cost accounting, the reuse of MiniDisc's
first iteration) rebuild it with :meth:`from_dict`, which ignores the keys the run adds
to every stage (``status``, ``finished``, ``wall_time_s``, ``outputs``, ``fingerprint``,
``reused_from``, ``linked_from``). The JSON is the one earlier versions wrote, so old run
folders resume and report as before.

Sparsities are fractions w.r.t. the teacher (levels, :mod:`minidisc.elastic.levels`);
metrics are fractions (the task's ``main`` dev metric unless said otherwise); ``compute``
is a :class:`~minidisc.compute.meter.ComputeTotals` dict, with ``teacher_cache``
statistics when a teacher cache served the stage.

Records:
    :class:`CandidateRecord`   one candidate sub-network of a run (best metric, tradeoff)
    :class:`EvaluationRecord`  one evaluation of all candidates of a run
    :class:`CandidatesRecord`  a whole candidate run (``candidates.json``)
    :class:`IterationRecord`   an ``iter<k>`` stage of MiniDisc
    :class:`Level`, :class:`HopRecord`  the student of one hop of the baseline schedules
    :class:`StudentRecord`     the exported student (the ``student`` stage)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from minidisc.compute.meter import ComputeTotals

_ITERATION = re.compile(r"iter(\d+)")


@dataclass(frozen=True)
class CandidateRecord:
    """One candidate sub-network after a candidate run.

    Attributes:
        sparsity: its level.
        best_metric: its best metric on the selection set (−inf when never evaluated).
        best_step: the optimiser step of that best (None: never improved).
        tradeoff: its λ-tradeoff ``score + λ·sparsity``
            (:func:`minidisc.training.selection.tradeoff`); None before any selection.
        score: its selection metric under the run's scoring rule
            (:func:`minidisc.training.selection.candidate_metric`); None in records
            written before the rule existed (the rule was then ``best``: ``best_metric``).
    """

    sparsity: float
    best_metric: float
    best_step: int | None = None
    tradeoff: float | None = None
    score: float | None = None

    @property
    def selection_metric(self) -> float:
        """The metric the λ-tradeoff used: ``score``, or ``best_metric`` in older records."""
        return self.best_metric if self.score is None else self.score

    def to_dict(self) -> dict[str, Any]:
        d = {"sparsity": self.sparsity, "best_metric": self.best_metric, "best_step": self.best_step,
             "tradeoff": self.tradeoff}
        return d | ({"score": self.score} if self.score is not None else {})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CandidateRecord:
        score = d.get("score")
        return cls(float(d["sparsity"]), float(d["best_metric"]), d.get("best_step"), d.get("tradeoff"),
                   float(score) if score is not None else None)


@dataclass(frozen=True)
class EvaluationRecord:
    """One evaluation of a candidate run.

    Attributes:
        step: the optimiser step.
        metrics: the dev metric of every candidate, by sparsity.
        selection: the sparsity selected after it (None: no selection).
    """

    step: int
    metrics: dict[float, float]
    selection: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "metrics": dict(self.metrics), "selection": self.selection}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvaluationRecord:
        """JSON keys are strings: the sparsities are read back as floats."""
        return cls(int(d["step"]), {float(k): float(v) for k, v in d["metrics"].items()}, d.get("selection"))


@dataclass(frozen=True)
class CandidatesRecord:
    """A candidate run as a whole (``iter<k>/candidates.json``).

    Attributes:
        candidates: every candidate, in the run's order.
        lam: λ of the tradeoff (``"lambda"`` in JSON).
        target: the target sparsity.
        selected: the selected sparsity (None: no evaluation).
        selected_score: its tradeoff.
        clipped_to_target: whether the unclipped choice lay beyond the target.
        history: every evaluation, in order.
        score_rule: the scoring rule (``best`` or ``last_mean``); None in older records (``best``).
        score_window: the evaluations ``last_mean`` averaged (None for ``best``).
        passed_over: the candidates at their constant-prediction score the selection
            skipped although their tradeoff was higher (absent in JSON when none).
    """

    candidates: tuple[CandidateRecord, ...]
    lam: float
    target: float
    selected: float | None
    selected_score: float | None
    clipped_to_target: bool | None
    history: tuple[EvaluationRecord, ...] = ()
    score_rule: str | None = None
    score_window: int | None = None
    passed_over: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": [c.to_dict() for c in self.candidates],
            "lambda": self.lam,
            "target": self.target,
            "selected": self.selected,
            "selected_score": self.selected_score,
            "clipped_to_target": self.clipped_to_target,
            "history": [h.to_dict() for h in self.history],
        } | {k: v for k, v in (("score_rule", self.score_rule), ("score_window", self.score_window)) if v is not None} | (
            {"passed_over": list(self.passed_over)} if self.passed_over else {})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CandidatesRecord:
        return cls(
            candidates=tuple(CandidateRecord.from_dict(c) for c in d["candidates"]),
            lam=float(d["lambda"]),
            target=float(d["target"]),
            selected=d.get("selected"),
            selected_score=d.get("selected_score"),
            clipped_to_target=d.get("clipped_to_target"),
            history=tuple(EvaluationRecord.from_dict(h) for h in d.get("history", ())),
            score_rule=d.get("score_rule"),
            score_window=d.get("score_window"),
            passed_over=tuple(d.get("passed_over", ())),
        )


@dataclass(frozen=True)
class IterationRecord:
    """The manifest entry of MiniDisc's stage ``iter<k>``: one candidate run, its selection.

    Attributes:
        iteration: k (from 1).
        final: the final iteration (the target trained alone).
        teacher_level: the sparsity of this iteration's teacher (0 for the first).
        selected: the selected sparsity (the assistant, or the target).
        selected_metric: its selection metric (:attr:`CandidateRecord.selection_metric`, on
            the set that selected: the selection slice or dev).
        candidates: every candidate trained.
        compute: the stage's compute totals.
        passed_over: candidates at their constant-prediction score that the selection
            skipped although their tradeoff was higher (absent in JSON when none).
    """

    iteration: int
    final: bool
    teacher_level: float
    selected: float
    selected_metric: float
    candidates: tuple[CandidateRecord, ...]
    compute: dict[str, Any] = field(default_factory=dict)
    passed_over: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "final": self.final,
            "teacher_level": self.teacher_level,
            "selected": self.selected,
            "selected_metric": self.selected_metric,
            "candidates": [c.to_dict() for c in self.candidates],
            "compute": self.compute,
        } | ({"passed_over": list(self.passed_over)} if self.passed_over else {})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IterationRecord:
        return cls(
            iteration=int(d["iteration"]),
            final=bool(d["final"]),
            teacher_level=float(d.get("teacher_level", 0.0)),
            selected=float(d["selected"]),
            selected_metric=float(d["selected_metric"]),
            candidates=tuple(CandidateRecord.from_dict(c) for c in d["candidates"]),
            compute=dict(d.get("compute") or {}),
            passed_over=tuple(d.get("passed_over", ())),
        )


def iteration_names(stages: Iterable[str]) -> list[str]:
    """The ``iter<k>`` stage names in iteration order (``iter2`` before ``iter10``)."""
    found = [(int(m.group(1)), name) for name in stages if (m := _ITERATION.fullmatch(name))]
    return [name for _, name in sorted(found)]


def iterations(stages: Mapping[str, Mapping[str, Any]]) -> list[IterationRecord]:
    """The iteration records among a manifest's stage entries, in iteration order."""
    return [IterationRecord.from_dict(stages[name]) for name in iteration_names(stages)]


@dataclass(frozen=True)
class Level:
    """A student's size w.r.t. the teacher: a sparsity level of the reordered teacher,
    or the teacher layers it keeps (0-based, ascending)."""

    sparsity: float | None = None
    layers: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        """``s0.5`` (a sparsity) or ``L0_1_2`` (kept layers): stage names use it."""
        if self.sparsity is not None:
            return f"s{self.sparsity:g}"
        return "L" + "_".join(str(i) for i in self.layers or ())

    def to_dict(self) -> dict[str, Any]:
        return {"sparsity": self.sparsity, "layers": list(self.layers) if self.layers is not None else None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Level:
        layers = d.get("layers")
        return cls(d.get("sparsity"), tuple(layers) if layers is not None else None)


@dataclass(frozen=True)
class HopRecord:
    """The manifest entry of a hop of the baseline schedules: one distilled student.

    Attributes:
        level: the student's size.
        spec: its per-layer sizes (:meth:`~minidisc.elastic.spec.SubnetSpec.to_dict`).
        dev_main: its best dev metric (the saved snapshot's).
        best_step: the optimiser step of that best (None: never improved).
        history: every evaluation: ``{"step", "main"}``.
        objective: the distillation objective's name.
        compute: the stage's compute totals.
        teacher: the stage whose model was the teacher (``sparsified`` or a hop).
    """

    level: Level
    spec: dict[str, Any]
    dev_main: float
    best_step: int | None
    history: tuple[dict[str, Any], ...]
    objective: str
    compute: dict[str, Any] = field(default_factory=dict)
    teacher: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "level": self.level.to_dict(),
            "spec": self.spec,
            "dev_main": self.dev_main,
            "best_step": self.best_step,
            "history": [dict(h) for h in self.history],
            "objective": self.objective,
            "compute": self.compute,
        }
        return d | ({"teacher": self.teacher} if self.teacher is not None else {})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HopRecord:
        return cls(
            level=Level.from_dict(d["level"]),
            spec=dict(d["spec"]),
            dev_main=float(d["dev_main"]),
            best_step=d.get("best_step"),
            history=tuple(d.get("history", ())),
            objective=d.get("objective", ""),
            compute=dict(d.get("compute") or {}),
            teacher=d.get("teacher"),
        )


@dataclass(frozen=True)
class StudentRecord:
    """The manifest entry of the ``student`` stage: the exported student, re-evaluated.

    Attributes:
        dev: the exported copy's dev metrics (``main`` included).
        plain_hf_loadable: whether plain ``transformers`` loads it (uniform layers).
        source: the stage the student comes from (baseline schedules: the best final
            hop; ``"from"`` in JSON); None for MiniDisc.
        test: the exported copy's metrics on the held-out test data (``--test-file``),
            None without them.
    """

    dev: dict[str, float]
    plain_hf_loadable: bool
    source: str | None = None
    test: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"dev": self.dev, "plain_hf_loadable": self.plain_hf_loadable}
        d |= {"from": self.source} if self.source is not None else {}
        return d | ({"test": self.test} if self.test is not None else {})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StudentRecord:
        test = d.get("test")
        return cls(dict(d["dev"]), bool(d["plain_hf_loadable"]), d.get("from"), dict(test) if test else None)


def distillation_compute(stages: dict[str, Any]) -> dict[str, float]:
    """Training FLOPs (student 3× forward + teacher forward), teacher FLOPs, tokens and
    wall time of a ``compress --task lm`` run's distillation stages (``iter1..K``).

    Nominal, as the GLUE comparison counts: teacher forwards served from a teacher-logit
    cache (``compute.teacher_cache.flops_saved``) are counted as computed, so an arm
    costs the same whether or not another arm built the cache before it."""
    names = iteration_names(stages)
    total = {"train_flops": 0.0, "teacher_forward_flops": 0.0, "tokens": 0.0, "wall_time_s": 0.0}
    for name in names:
        compute = ComputeTotals.nominal(stages[name].get("compute") or {})
        total["train_flops"] += compute.train_flops
        total["teacher_forward_flops"] += compute.teacher_forward_flops
        total["tokens"] += compute.tokens
        total["wall_time_s"] += float(stages[name].get("wall_time_s") or 0)
    return total
