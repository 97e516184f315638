"""Compute-optimal distillation: plan a budget, pick a teacher, find the crossover.

Busbridge et al., "Distillation Scaling Laws" (arXiv 2502.08606):

* :func:`plan_distillation` (Eq. 10): for a student size N_S and a budget C, minimise
  L_S(N_S, D_S, L_T) over (D_S, N_T, D_T) with L_T = L(N_T, D_T) subject to
  FLOPs(N_S, D_S, N_T, D_T; scenario) = C (Eq. 9). As in the paper: SciPy SLSQP,
  N_T, D_S, D_T bounded to [1e6, 1e17]; here the variables are their logarithms and
  SLSQP runs from several feasible starts (teacher sizes × budget splits).
* :func:`plan_with_teachers` (Eq. 27): with existing candidate teachers,
  D_S = C / (3F(N_S) + δ_lgt·F(N_T)); the teacher with the lowest L_S wins.
* :func:`find_crossover`: the compute C* where distillation stops beating supervised
  training. **Definition used**: the supervised baseline is the student itself
  (same N_S) trained on the data alone with the whole budget,
  ``L_sup(C) = L(N_S, C / (3F(N_S)))``; distillation uses the compute-optimal plan of
  the scenario at the same C (or a fixed teacher via Eq. 27). Every sign change of
  Δ(C) = L_S*(C) − L_sup(C) on a log-spaced scan is refined by Brent's method in log C
  and reported with its direction; C* is the compute at which Δ turns from negative
  to ≥ 0 when that is the only change in the scanned range (status ``"crossover"``).

Units: parameters, tokens, FLOPs; losses in nats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize, minimize_scalar

from minidisc.errors import ConfigError
from minidisc.scaling.compute import (
    FlopsModel,
    Scenario,
    forward_flops_per_token,
    get_scenario,
)
from minidisc.scaling.laws import check_teacher_loss, distillation_log_loss, supervised_loss
from minidisc.scaling.params import ScalingLawParams

__all__ = [
    "BOUNDS",
    "CandidateTeacher",
    "Crossing",
    "Crossover",
    "DistillationPlan",
    "TeacherChoice",
    "TeacherOption",
    "compute_optimal_teacher",
    "crossover_status",
    "find_crossover",
    "locate_crossings",
    "plan_distillation",
    "plan_with_teachers",
    "student_loss_for_teacher",
    "supervised_baseline",
]

BOUNDS = (1e6, 1e17)  # the paper's bounds on N_T, D_S, D_T
_INFEASIBLE = 1e6  # objective value of infeasible points in 1-D searches (logs are ~1-100)


def _check_positive(value: float, what: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{what} must be finite and > 0, got {value!r}")
    return value


def supervised_baseline(
    student_params: float,
    compute: float,
    params: ScalingLawParams | None = None,
    flops_model: FlopsModel | None = None,
) -> tuple[float, float]:
    """The student trained without a teacher on the whole budget.

    Returns:
        (tokens, loss): D = C / (3F(N_S)) tokens and L(N_S, D) in nats.
    """
    p = params or ScalingLawParams()
    n = _check_positive(student_params, "student parameters")
    c = _check_positive(compute, "compute (FLOPs)")
    tokens = c / (3.0 * float(forward_flops_per_token(n, flops_model)))
    return tokens, float(supervised_loss(n, tokens, p.supervised))


@dataclass(frozen=True)
class DistillationPlan:
    """The compute-optimal distillation of one student under one scenario.

    Attributes:
        scenario: Table 2 scenario name.
        student_params: N_S; compute: the budget C in FLOPs.
        student_tokens: D_S, distillation tokens.
        teacher_params, teacher_tokens: N_T, D_T of the teacher.
        teacher_loss: L_T = L(N_T, D_T), nats.
        student_loss: predicted L_S, nats.
        supervised_tokens, supervised_loss: the baseline L(N_S, C/(3F(N_S))).
        flops: FLOPs by item (``student``, ``teacher_inference``, ``teacher_pretraining``,
            ``total``).
        teacher_determined: False where the budget does not pin the teacher down
            (best case: only L_T matters; the reported teacher is the cheapest one to
            train reaching L_T — see :func:`compute_optimal_teacher`).
        note: remarks (e.g. a variable at its bound).
    """

    scenario: str
    student_params: float
    compute: float
    student_tokens: float
    teacher_params: float
    teacher_tokens: float
    teacher_loss: float
    student_loss: float
    supervised_tokens: float
    supervised_loss: float
    flops: dict[str, float]
    teacher_determined: bool = True
    note: str = ""

    @property
    def distillation_better(self) -> bool:
        """True if the distilled student beats the supervised baseline."""
        return self.student_loss < self.supervised_loss

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["distillation_better"] = self.distillation_better
        return out


def _lae(a: float, b: float) -> float:
    """log(e^a + e^b) for floats, without overflow."""
    m = max(b, a)
    return m + math.log1p(math.exp(-abs(a - b)))


class _FastLaws:
    """Scalar, math-module versions of Eq. 1, Eq. 8 and F(N) for the optimiser's inner
    loop (the public NumPy functions validate and broadcast, which costs ~50x more)."""

    def __init__(self, params: ScalingLawParams, flops_model: FlopsModel | None):
        s, d = params.supervised, params.distillation
        self.s = (math.log(s.E), math.log(s.A), math.log(s.B), s.alpha, s.beta, s.gamma)
        self.d = (math.log(d.A), math.log(d.B), d.alpha, d.beta, d.gamma, d.c0, d.c1, d.f1,
                  math.log(d.d1))
        self.fm = flops_model or FlopsModel()

    def log_supervised(self, log_n: float, log_d: float) -> float:
        le, la, lb, a, b, g = self.s
        return _lae(le, g * _lae(la - a * log_n, lb - b * log_d))

    def log_distillation(self, log_ns: float, log_ds: float, log_lt: float) -> float:
        la, lb, a, b, g, c0, c1, f1, ld1 = self.d
        log_tilde = self.log_supervised(log_ns, log_ds)
        log_break = -c1 * f1 * _lae(0.0, (log_lt - log_tilde - ld1) / f1)
        gap = -c0 * log_lt + log_break + g * _lae(la - a * log_ns, lb - b * log_ds)
        return _lae(log_lt, gap)

    def flops(self, n: float) -> float:
        m = self.fm
        r = n ** (1.0 / 3.0)
        return 2.0 * n * (1.0 + m.sigma1 * m.n_ctx / r + m.sigma2 * m.n_vocab / (r * r))


def _costs(n_s: float, d_s: float, n_t: float, d_t: float, s: Scenario,
           fm: FlopsModel | None) -> dict[str, float]:
    fs = float(forward_flops_per_token(n_s, fm))
    ft = float(forward_flops_per_token(n_t, fm))
    out = {
        "student": 3.0 * fs * d_s,
        "teacher_inference": s.delta_logits * ft * d_s,
        "teacher_pretraining": s.delta_pretrain * 3.0 * ft * d_t,
    }
    out["total"] = sum(out.values())
    return out


def compute_optimal_teacher(
    teacher_loss: float,
    params: ScalingLawParams | None = None,
    flops_model: FlopsModel | None = None,
    bounds: tuple[float, float] = BOUNDS,
) -> tuple[float, float]:
    """The cheapest-to-train (N_T, D_T) with L(N_T, D_T) = ``teacher_loss``.

    Minimises 3F(N)·D along the supervised law's level set (D solved in closed form
    from Eq. 1 for each N), N and D within ``bounds``.

    Raises:
        ConfigError: if no model within the bounds reaches ``teacher_loss``.
    """
    s = (params or ScalingLawParams()).supervised
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    # (L − E)^(1/γ) = A/N^α + B/D^β  →  D(N) = (B / ((L − E)^(1/γ) − A/N^α))^(1/β)
    gap = teacher_loss - s.E
    if gap <= 0 or float(supervised_loss(bounds[1], bounds[1], s)) > teacher_loss:
        raise ConfigError(
            f"no teacher within N, D in [{bounds[0]:.0e}, {bounds[1]:.0e}] reaches loss "
            f"{teacher_loss:.4f} under the supervised law"
        )
    total = gap ** (1.0 / s.gamma)

    def log_d(log_n: float) -> float:
        rest = total - s.A * math.exp(-s.alpha * log_n)
        return math.inf if rest <= 0 else (math.log(s.B) - math.log(rest)) / s.beta

    def cost(log_n: float) -> float:
        ld = log_d(log_n)
        if not math.isfinite(ld) or ld > hi or ld < lo:
            return _INFEASIBLE  # finite, so Brent's parabolic steps stay well defined
        return math.log(float(forward_flops_per_token(math.exp(log_n), flops_model))) + ld

    grid = np.linspace(lo, hi, 400)
    costs = np.array([cost(x) for x in grid])
    if not (costs < _INFEASIBLE).any():
        raise ConfigError(f"no teacher within the bounds reaches loss {teacher_loss:.4f}")
    i = int(np.argmin(costs))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = minimize_scalar(cost, bounds=(a, b), method="bounded", options={"xatol": 1e-9})
    log_n = float(res.x) if res.fun <= costs[i] else float(grid[i])
    return math.exp(log_n), math.exp(log_d(log_n))


def _starts(n_s: float, c: float, s: Scenario, fm: FlopsModel | None,
            bounds: tuple[float, float]) -> list[np.ndarray]:
    """Feasible log-space starting points (ln D_S, ln N_T, ln D_T)."""
    fs = float(forward_flops_per_token(n_s, fm))
    lo, hi = bounds
    out = []
    for ratio in (0.3, 1.0, 3.0, 10.0, 30.0):
        n_t = min(max(n_s * ratio, lo), hi)
        ft = float(forward_flops_per_token(n_t, fm))
        if s.delta_pretrain:
            splits = [(phi, phi * c / (3.0 * ft)) for phi in (0.1, 0.3, 0.6, 0.9)]
        else:
            splits = [(0.0, min(max(n_t * k, lo), hi)) for k in (20.0, 1e3, 1e5)]
        for phi, d_t in splits:
            d_s = (1.0 - phi) * c / (3.0 * fs + s.delta_logits * ft)
            if lo <= d_s <= hi and lo <= d_t <= hi:
                out.append(np.log([d_s, n_t, d_t]))
    return out


def plan_distillation(
    student_params: float,
    compute: float,
    scenario: str | Scenario = "best-case",
    params: ScalingLawParams | None = None,
    flops_model: FlopsModel | None = None,
    bounds: tuple[float, float] = BOUNDS,
    max_starts: int | None = None,
) -> DistillationPlan:
    """Compute-optimal D_S, N_T, D_T for a student of size N_S and a budget C (Eq. 10).

    Args:
        student_params: N_S, student non-embedding parameters.
        compute: C, total FLOPs available (counted per the scenario, Eq. 9).
        scenario: Table 2 scenario (or its name).
        params: law coefficients; default Table 6.
        flops_model: F(N) constants.
        bounds: bounds on N_T, D_S and D_T.
        max_starts: cap on SLSQP starts (default: all ~20).

    Returns:
        The best plan found (lowest L_S meeting the budget to 1e-6 relative).

    Raises:
        ConfigError: on invalid inputs or a budget too small/large for the bounds.
    """
    p = params or ScalingLawParams()
    s = get_scenario(scenario)
    n_s = _check_positive(student_params, "student parameters")
    c = _check_positive(compute, "compute (FLOPs)")
    fs = float(forward_flops_per_token(n_s, flops_model))
    lo, hi = bounds
    if c < 3.0 * fs * lo * 1.0001:
        raise ConfigError(
            f"compute {c:.3g} FLOPs is too small for a {n_s:.3g}-parameter student: it buys "
            f"fewer than {lo:.0e} tokens (3·F(N_S)·1e6 = {3 * fs * lo:.3g}); raise the budget"
        )
    if s.delta_logits == 0 and s.delta_pretrain == 0 and c > 3.0 * fs * hi:
        raise ConfigError(
            f"compute {c:.3g} FLOPs buys more than {hi:.0e} student tokens; lower the budget"
        )
    log_c = math.log(c)
    fast = _FastLaws(p, flops_model)

    def objective(y: np.ndarray) -> float:
        return fast.log_distillation(log_ns, y[0], fast.log_supervised(y[1], y[2]))

    def budget(y: np.ndarray) -> float:
        d_s, n_t, d_t = math.exp(y[0]), math.exp(y[1]), math.exp(y[2])
        ft = fast.flops(n_t)
        total = 3.0 * fs * d_s + ft * (s.delta_logits * d_s + s.delta_pretrain * 3.0 * d_t)
        return math.log(total) - log_c

    log_ns = math.log(n_s)
    starts = _starts(n_s, c, s, flops_model, bounds)
    if max_starts is not None and len(starts) > max_starts:
        # An evenly spread subset keeps both small and large teachers among the starts.
        keep = np.unique(np.linspace(0, len(starts) - 1, max(1, max_starts)).round().astype(int))
        starts = [starts[i] for i in keep]
    if not starts:
        raise ConfigError(f"no feasible allocation of {c:.3g} FLOPs within bounds {bounds}")
    log_bounds = [(math.log(lo), math.log(hi))] * 3
    best_y, best_val = None, math.inf
    for y0 in starts:
        res = minimize(objective, y0, method="SLSQP", bounds=log_bounds,
                       constraints=[{"type": "eq", "fun": budget}],
                       options={"maxiter": 300, "ftol": 1e-12})
        y = np.clip(res.x, [b[0] for b in log_bounds], [b[1] for b in log_bounds])
        if abs(budget(y)) > 1e-6:
            continue
        val = objective(y)
        if val < best_val:
            best_y, best_val = y, val
    if best_y is None:
        raise ConfigError(f"the planner found no allocation meeting the {c:.3g}-FLOP budget")

    d_s, n_t, d_t = (float(v) for v in np.exp(best_y))
    l_t = float(supervised_loss(n_t, d_t, p.supervised))
    determined, note = True, ""
    if s.delta_logits == 0 and s.delta_pretrain == 0:
        # Only L_T matters: report the cheapest-to-train teacher reaching it.
        n_t, d_t = compute_optimal_teacher(l_t, p, flops_model, bounds)
        determined = False
        note = ("best case: only the teacher's loss matters; the teacher shown is the "
                "compute-optimal model reaching it")
    elif s.delta_pretrain == 0 and d_t >= hi * 0.999:
        note = (f"teacher tokens at the {hi:.0e} bound: teacher pretraining is not paid here, "
                "so the smallest teacher reaching L_T (trained on as many tokens as the bound "
                "allows) minimises the teacher-inference cost")
    sup_tokens, sup_loss = supervised_baseline(n_s, c, p, flops_model)
    return DistillationPlan(
        scenario=s.name, student_params=n_s, compute=c, student_tokens=d_s,
        teacher_params=n_t, teacher_tokens=d_t, teacher_loss=l_t,
        student_loss=float(math.exp(best_val)),
        supervised_tokens=sup_tokens, supervised_loss=sup_loss,
        flops=_costs(n_s, d_s, n_t, d_t, s, flops_model),
        teacher_determined=determined, note=note,
    )


def student_loss_for_teacher(
    student_params: float,
    teacher_params: float,
    compute: float,
    scenario: str | Scenario = "teacher-pretraining-inference",
    params: ScalingLawParams | None = None,
    flops_model: FlopsModel | None = None,
    bounds: tuple[float, float] = BOUNDS,
    n_grid: int = 241,
) -> tuple[float, float, float]:
    """Best L_S for a *given* teacher size at budget C (one point of an isoFLOP curve).

    D_T is chosen on a dense log grid (refined by bounded search); D_S takes the rest
    of the budget (Eq. 9).

    Returns:
        (student_loss, student_tokens, teacher_tokens); ``(nan, nan, nan)`` if no
        allocation is feasible.
    """
    p = params or ScalingLawParams()
    s = get_scenario(scenario)
    fs = float(forward_flops_per_token(student_params, flops_model))
    ft = float(forward_flops_per_token(teacher_params, flops_model))
    lo, hi = bounds
    log_dt_hi = math.log(hi)
    if s.delta_pretrain:
        log_dt_hi = min(log_dt_hi, math.log(compute / (3.0 * ft)))
    if log_dt_hi <= math.log(lo):
        return math.nan, math.nan, math.nan

    def value(log_dt: np.ndarray | float) -> np.ndarray:
        d_t = np.exp(log_dt)
        d_s = (compute - s.delta_pretrain * 3.0 * ft * d_t) / (3.0 * fs + s.delta_logits * ft)
        ok = (d_s >= lo) & (d_s <= hi)
        l_t = supervised_loss(teacher_params, d_t, p.supervised)
        out = np.where(ok, distillation_log_loss(student_params, np.where(ok, d_s, lo), l_t, p),
                       _INFEASIBLE)
        return out

    grid = np.linspace(math.log(lo), log_dt_hi, n_grid)
    vals = np.asarray(value(grid))
    if not (vals < _INFEASIBLE).any():
        return math.nan, math.nan, math.nan
    i = int(np.argmin(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, n_grid - 1)]
    res = minimize_scalar(lambda x: float(value(x)), bounds=(a, b), method="bounded",
                          options={"xatol": 1e-10})
    log_dt = float(res.x) if res.fun <= vals[i] else float(grid[i])
    d_t = math.exp(log_dt)
    d_s = (compute - s.delta_pretrain * 3.0 * ft * d_t) / (3.0 * fs + s.delta_logits * ft)
    return float(math.exp(min(res.fun, vals[i]))), d_s, d_t


@dataclass(frozen=True)
class CandidateTeacher:
    """An existing teacher: size and loss (its training cost is sunk).

    Attributes:
        params: N_T, non-embedding parameters.
        loss: L_T, validation cross-entropy in nats.
        name: label for reports.
    """

    params: float
    loss: float
    name: str = ""

    def __post_init__(self) -> None:
        _check_positive(self.params, "teacher parameters")
        _check_positive(self.loss, "teacher loss")

    @classmethod
    def parse(cls, text: str) -> CandidateTeacher:
        """Parse ``"N_T:L_T"`` or ``"NAME=N_T:L_T"`` (e.g. ``"7b=7.75e9:1.95"``).

        Raises:
            ConfigError: on any other shape.
        """
        name, _, spec = text.rpartition("=")
        parts = spec.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            n_t, l_t = float(parts[0]), float(parts[1])
        except ValueError:
            raise ConfigError(
                f"cannot read teacher {text!r}; write PARAMS:LOSS or NAME=PARAMS:LOSS, "
                "e.g. 7.75e9:1.95"
            ) from None
        return cls(n_t, l_t, name or f"{n_t:.3g}")


@dataclass(frozen=True)
class TeacherOption:
    """One candidate teacher under Eq. 27."""

    name: str
    teacher_params: float
    teacher_loss: float
    student_tokens: float
    student_loss: float


@dataclass(frozen=True)
class TeacherChoice:
    """Candidate teachers ranked for one student and budget (Eq. 27).

    Attributes:
        options: one entry per candidate, in the given order.
        best: index into ``options`` of the lowest L_S.
        supervised_tokens, supervised_loss: the no-teacher baseline at the same budget.
        include_inference: whether teacher logits were paid (δ_lgt = 1).
    """

    student_params: float
    compute: float
    options: list[TeacherOption]
    best: int
    supervised_tokens: float
    supervised_loss: float
    include_inference: bool

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["best_teacher"] = self.options[self.best].name
        out["distillation_better"] = self.options[self.best].student_loss < self.supervised_loss
        return out


def plan_with_teachers(
    student_params: float,
    compute: float,
    teachers: Sequence[CandidateTeacher],
    include_inference: bool = True,
    params: ScalingLawParams | None = None,
    flops_model: FlopsModel | None = None,
) -> TeacherChoice:
    """Pick among existing teachers (Eq. 27): D_S = C / (3F(N_S) + δ_lgt F(N_T)).

    Args:
        student_params: N_S.
        compute: C in FLOPs (student training, plus teacher logits if
            ``include_inference``; teacher pretraining is sunk).
        teachers: the candidates.
        include_inference: δ_lgt = 1 (teacher forward passes paid) or 0 (cached logits).

    Raises:
        ConfigError: on an empty candidate list or invalid numbers, or a teacher loss at
            or below the supervised law's irreducible loss E.
    """
    if not teachers:
        raise ConfigError("give at least one candidate teacher (PARAMS:LOSS)")
    p = params or ScalingLawParams()
    for t in teachers:  # checked up front, so the message names the teacher
        check_teacher_loss(t.loss, p.supervised, f"the loss of teacher {t.name or f'{t.params:.3g}'}")
    n_s = _check_positive(student_params, "student parameters")
    c = _check_positive(compute, "compute (FLOPs)")
    fs = float(forward_flops_per_token(n_s, flops_model))
    options = []
    for t in teachers:
        ft = float(forward_flops_per_token(t.params, flops_model))
        d_s = c / (3.0 * fs + (1.0 if include_inference else 0.0) * ft)
        l_s = float(math.exp(distillation_log_loss(n_s, d_s, t.loss, p)))
        options.append(TeacherOption(t.name or f"{t.params:.3g}", t.params, t.loss, d_s, l_s))
    best = min(range(len(options)), key=lambda i: options[i].student_loss)
    sup_tokens, sup_loss = supervised_baseline(n_s, c, p, flops_model)
    return TeacherChoice(n_s, c, options, best, sup_tokens, sup_loss, include_inference)


TO_SUPERVISED = "to-supervised"
TO_DISTILLATION = "to-distillation"


@dataclass(frozen=True)
class Crossing:
    """One sign change of Δ(C) = L_S*(C) − L_sup(C) within the scanned range.

    Attributes:
        compute: C where Δ = 0, in FLOPs (refined to ~1e-4 in log C).
        direction: ``"to-supervised"`` (distillation better just below, supervised from
            here on) or ``"to-distillation"`` (supervised better just below,
            distillation from here on).
    """

    compute: float
    direction: str


def locate_crossings(
    compute_grid: Sequence[float],
    gaps: Sequence[float],
    gap: Callable[[float], float],
    xtol: float = 1e-4,
) -> list[Crossing]:
    """Every sign change of Δ between consecutive scan points, refined in log C.

    Args:
        compute_grid: increasing budgets C_i in FLOPs.
        gaps: a value with the sign of Δ(C_i) at each C_i (< 0: distillation better).
        gap: C ↦ the same quantity at any C in the range (used by Brent's method).
        xtol: absolute tolerance on log C.

    Returns:
        The crossings in increasing C. Two changes between the same pair of scan points
        cancel and are not seen: the scan's resolution is the method's.

    Raises:
        ConfigError: if the grid and values differ in length or the grid is not increasing.
    """
    grid = [float(c) for c in compute_grid]
    if len(grid) != len(gaps) or any(b <= a for a, b in pairwise(grid)):
        raise ConfigError("compute_grid must be increasing and as long as gaps")
    better = [g < 0 for g in gaps]
    out = []
    for i in range(len(grid) - 1):
        if better[i] == better[i + 1]:
            continue
        log_c = _root(lambda x: gap(math.exp(x)), math.log(grid[i]), math.log(grid[i + 1]), xtol)
        out.append(Crossing(float(math.exp(log_c)),
                            TO_SUPERVISED if better[i] else TO_DISTILLATION))
    return out


def _root(f: Callable[[float], float], a: float, b: float, xtol: float) -> float:
    """Brent's root of f in [a, b]; a tie at a scan point (f ≈ 0 there, its sign lost
    to rounding of exp(log C)) is the root itself."""
    fa, fb = f(a), f(b)
    if fa * fb >= 0:
        return a if abs(fa) <= abs(fb) else b
    return float(brentq(f, a, b, xtol=xtol))


def crossover_status(gaps: Sequence[float], crossings: Sequence[Crossing]) -> str:
    """Name what the scan shows (the ``Crossover.status`` values).

    ``"distillation-always-better"`` / ``"supervised-always-better"`` without a sign
    change; ``"crossover"`` for one change from distillation to supervised (the paper's
    case: distil below C*); ``"reverse-crossover"`` for one change the other way
    (distillation better only above C*); ``"multiple-crossovers"`` otherwise.
    """
    if not crossings:
        return ("distillation-always-better" if all(g < 0 for g in gaps)
                else "supervised-always-better")
    if len(crossings) > 1:
        return "multiple-crossovers"
    return "crossover" if crossings[0].direction == TO_SUPERVISED else "reverse-crossover"


@dataclass(frozen=True)
class Crossover:
    """Where distillation and supervised training of the same student swap places.

    Attributes:
        student_params: N_S.
        scenario: scenario name, or ``"fixed-teacher"`` with ``teacher`` set.
        compute: C* in FLOPs if ``status == "crossover"`` (distillation better just
            below C*, supervised from C* to the top of the range), else None.
        status: see :func:`crossover_status`.
        crossings: every sign change in the range, in increasing C, with its direction.
        compute_grid, distillation_loss, supervised_loss: the scan (FLOPs, nats).
    """

    student_params: float
    scenario: str
    compute: float | None
    status: str
    crossings: list[Crossing] = field(default_factory=list)
    compute_grid: list[float] = field(default_factory=list)
    distillation_loss: list[float] = field(default_factory=list)
    supervised_loss: list[float] = field(default_factory=list)
    teacher: CandidateTeacher | None = None

    def segments(self) -> list[tuple[float, float, str]]:
        """The scanned range cut at the crossings: (from C, to C, winner) with winner
        ``"distillation"`` or ``"supervised"``."""
        if not self.compute_grid:
            return []
        first = self.distillation_loss[0] < self.supervised_loss[0]
        winner = "distillation" if first else "supervised"
        edges = [self.compute_grid[0], *(c.compute for c in self.crossings),
                 self.compute_grid[-1]]
        out = []
        for lo, hi in pairwise(edges):
            out.append((lo, hi, winner))
            winner = "supervised" if winner == "distillation" else "distillation"
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["segments"] = [{"from": a, "to": b, "better": w} for a, b, w in self.segments()]
        return out


def find_crossover(
    student_params: float,
    scenario: str | Scenario = "best-case",
    params: ScalingLawParams | None = None,
    flops_model: FlopsModel | None = None,
    min_compute: float | None = None,
    max_compute: float | None = None,
    n_points: int = 31,
    teacher: CandidateTeacher | None = None,
    include_inference: bool = True,
    bounds: tuple[float, float] = BOUNDS,
) -> Crossover:
    """Scan budgets for where distillation stops (or starts) beating supervised training
    of the same student (definition in the module docstring).

    Args:
        student_params: N_S.
        scenario: planner scenario (ignored when ``teacher`` is given).
        params: law coefficients; default Table 6.
        flops_model: F(N) constants (Eq. 69); default the paper's.
        min_compute, max_compute: scan range in FLOPs; default the budgets buying
            1 to 1e4 student tokens per parameter (clipped to the token bounds). Below
            one token per parameter the laws are far outside the data they were fitted on.
        n_points: log-spaced scan points.
        teacher: a fixed existing teacher (Eq. 27) instead of the planner's optimum.
        include_inference: with ``teacher``: pay its logits (δ_lgt = 1).
        bounds: the planner's bounds on N_T, D_S, D_T (paper: 1e6, 1e17); lower them
            for laws fitted on small models.

    Returns:
        The scan, every crossing with its direction, and a status
        (:func:`crossover_status`); ``compute`` is C* only for a single
        distillation-to-supervised crossing.

    Raises:
        ConfigError: on an empty or infeasible range.
    """
    p = params or ScalingLawParams()
    n_s = _check_positive(student_params, "student parameters")
    fs3 = 3.0 * float(forward_flops_per_token(n_s, flops_model))
    lo = min_compute if min_compute is not None else fs3 * max(n_s, bounds[0] * 1.01)
    hi = max_compute if max_compute is not None else fs3 * min(1e4 * n_s, bounds[1] * 0.99)
    lo, hi = _check_positive(lo, "min compute"), _check_positive(hi, "max compute")
    if not hi > lo:
        raise ConfigError(f"max compute ({hi:.3g}) must exceed min compute ({lo:.3g})")
    if n_points < 3:
        raise ConfigError(f"n_points must be >= 3, got {n_points}")
    name = "fixed-teacher" if teacher is not None else get_scenario(scenario).name

    def losses(c: float) -> tuple[float, float]:
        if teacher is not None:
            choice = plan_with_teachers(n_s, c, [teacher], include_inference, p, flops_model)
            return choice.options[0].student_loss, choice.supervised_loss
        plan = plan_distillation(n_s, c, scenario, p, flops_model, bounds)
        return plan.student_loss, plan.supervised_loss

    def gap(c: float) -> float:  # log-ratio: the sign of Δ, better scaled for Brent
        a, b = losses(c)
        return math.log(a) - math.log(b)

    grid = [float(c) for c in np.geomspace(lo, hi, n_points)]
    pairs = [losses(c) for c in grid]
    gaps = [math.log(a) - math.log(b) for a, b in pairs]
    crossings = locate_crossings(grid, gaps, gap)
    status = crossover_status(gaps, crossings)
    return Crossover(
        n_s, name, crossings[0].compute if status == "crossover" else None, status,
        crossings=crossings, compute_grid=grid,
        distillation_loss=[a for a, _ in pairs], supervised_loss=[b for _, b in pairs],
        teacher=teacher,
    )
