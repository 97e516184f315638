"""Fit the supervised (Eq. 1) and distillation (Eq. 8) laws to run records (App. F).

Busbridge et al., "Distillation Scaling Laws" (arXiv 2502.08606), App. F: minimise

    Σ_i Huber_δ(log L_pred,i − log L_obs,i),   δ = 1e-4,

with predictions computed in log space (log-sum-exp), by L-BFGS-B started from every
point of a coefficient grid, and 90 % confidence intervals from bootstrap resamples.

What this module does, and where it departs from the paper to stay cheap:

* The grid is *screened*: the objective is evaluated at every grid point at once
  (vectorised; the paper's 216,000-point distillation grid takes seconds) and L-BFGS-B
  runs from the ``n_starts`` best points only. ``n_starts=None`` runs it from every
  grid point as the paper does (slow: hours for the distillation grid on 2 cores).
* L-BFGS-B gets the analytic gradient of the log-space objective; the winning start is
  polished by trust-region least squares on the same Huber objective (SciPy's
  ``least_squares``, exact Jacobian, tolerances 1e-15), which reaches the optimum to
  the precision the problem's conditioning allows on any machine (see :func:`_polish`).
* Each bootstrap resample (records drawn with replacement) is refitted from the
  full-data optimum and the next-best distinct solutions (warm starts), not the grid;
  resamples run in parallel with joblib (``n_jobs``).
* The distillation fit takes L̃_S = L(N_S, D_S) from a supervised parameter set held
  fixed (its uncertainty is not propagated into the distillation intervals).

Coefficients are optimised as (log E, log A, log B, α, β, γ) and
(log A′, log B′, α′, β′, γ′, c0, log c1, f1, log d1): the paper's grid parameterisation,
except c1, which is optimised in log space (its optimum, ~500, sits two orders of
magnitude above the other coefficients and L-BFGS-B stalls on it otherwise; the
paper's c1 grid values start the search, with c1 = 0 replaced by 0.01).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import expit

from minidisc.errors import ConfigError, DataError
from minidisc.scaling.laws import log_distillation_kernel, log_supervised_kernel
from minidisc.scaling.params import DistillationParams, ScalingLawParams, SupervisedParams
from minidisc.scaling.records import RunRecord

__all__ = [
    "DISTILLATION_GRIDS",
    "SUPERVISED_GRIDS",
    "FitOptions",
    "FitResult",
    "RecordsFit",
    "fit_distillation",
    "fit_records",
    "fit_supervised",
    "huber",
]

Array = NDArray[np.float64]

SUP_NAMES = ("log_E", "log_A", "log_B", "alpha", "beta", "gamma")
DIST_NAMES = ("log_A", "log_B", "alpha", "beta", "gamma", "c0", "log_c1", "f1", "log_d1")

# App. F grids ("paper") and a coarse subset ("small") for quick fits and tests.
SUPERVISED_GRIDS: dict[str, dict[str, Sequence[float]]] = {
    "paper": {
        "log_E": (-1, -0.5, 0, 0.5, 1, 1.5),
        "log_A": (0, 5, 10, 15, 20),
        "log_B": (0, 5, 10, 15, 20),
        "alpha": (0, 0.5, 1, 1.5),
        "beta": (0, 0.5, 1, 1.5),
        "gamma": (0, 0.5, 1, 1.5),
    },
    "small": {
        "log_E": (-0.5, 0.5),
        "log_A": (0, 10, 20),
        "log_B": (0, 10, 20),
        "alpha": (0.5, 1),
        "beta": (0.5, 1),
        "gamma": (0.5, 1),
    },
}
DISTILLATION_GRIDS: dict[str, dict[str, Sequence[float]]] = {
    "paper": {
        "log_A": (0, 5, 10, 15, 20),
        "log_B": (0, 5, 10, 15, 20),
        "alpha": (0, 0.5, 1),
        "beta": (0, 0.5, 1),
        "gamma": (0, 0.5, 1),
        "c0": (0, 0.5, 1, 1.5),
        "c1": (0, 0.5, 1, 1.5),
        "f1": (0, 0.5, 1, 1.5),
        "log_d1": (-1, -0.5, 0, 0.5, 1),
    },
    "small": {
        "log_A": (0, 10, 20),
        "log_B": (0, 10, 20),
        "alpha": (0.5, 1),
        "beta": (0.5, 1),
        "gamma": (0.5, 1),
        "c0": (0.5, 1.5),
        "c1": (0.5, 1.5),
        "f1": (0.5, 1),
        "log_d1": (-0.5, 0, 0.5),
    },
}

# Box constraints for L-BFGS-B (grid points outside, e.g. f1 = 0, are clipped in).
_SUP_BOUNDS = ((-5.0, 5.0), (-10.0, 60.0), (-10.0, 60.0), (0.0, 4.0), (0.0, 4.0), (0.0, 4.0))
_C1_FLOOR = 1e-2  # c1 is optimised as log c1; a grid's c1 = 0 starts here
_DIST_BOUNDS = ((-10.0, 60.0), (-10.0, 60.0), (0.0, 4.0), (0.0, 4.0), (0.0, 4.0),
                (-20.0, 20.0), (math.log(_C1_FLOOR), math.log(1e4)), (1e-3, 10.0), (-3.0, 3.0))


@dataclass(frozen=True)
class FitOptions:
    """How hard to fit.

    Attributes:
        grid: ``"paper"`` (App. F grid) or ``"small"`` (coarse subset) of starting points.
        n_starts: L-BFGS-B runs from the best ``n_starts`` grid points after screening;
            ``None`` runs from every grid point (the paper's procedure; slow).
        n_bootstrap: bootstrap resamples for the confidence intervals (0 = none; the
            paper uses 4096).
        ci: central coverage of the intervals, a fraction (0.90 = 5th–95th percentile).
        huber_delta: δ of the Huber loss on log residuals (paper: 1e-4).
        n_jobs: parallel bootstrap workers (joblib); 1 = in process, -1 = all cores.
        seed: seed of the bootstrap resampling.
        maxiter: L-BFGS-B iteration limit per start.
    """

    grid: Literal["paper", "small"] = "paper"
    n_starts: int | None = 16
    n_bootstrap: int = 200
    ci: float = 0.90
    huber_delta: float = 1e-4
    n_jobs: int = 1
    seed: int = 0
    maxiter: int = 3000

    def __post_init__(self) -> None:
        if self.grid not in ("paper", "small"):
            raise ConfigError(f"grid must be 'paper' or 'small', got {self.grid!r}")
        if self.n_starts is not None and self.n_starts < 1:
            raise ConfigError(
                f"n_starts must be >= 1 (or None for every grid point), got {self.n_starts}"
            )
        if self.n_bootstrap < 0:
            raise ConfigError(f"n_bootstrap must be >= 0, got {self.n_bootstrap}")
        if not 0.0 < self.ci < 1.0:
            raise ConfigError(f"ci must be a fraction in (0, 1), got {self.ci}")
        if not self.huber_delta > 0:
            raise ConfigError(f"huber_delta must be > 0, got {self.huber_delta}")
        if self.n_jobs == 0:
            raise ConfigError("n_jobs must be >= 1 or negative (joblib convention), got 0")


@dataclass(frozen=True)
class FitResult:
    """A fitted law and how well it fits.

    Attributes:
        law: ``"supervised"`` or ``"distillation"``.
        params: the fitted coefficients.
        objective: Σ Huber_δ(log residual) at the optimum (unscaled).
        n_runs: number of records fitted.
        mean_abs_rel_error: mean |L_pred/L_obs − 1| (a fraction).
        max_abs_rel_error: max |L_pred/L_obs − 1| (a fraction).
        n_grid: grid points screened; n_starts: L-BFGS-B starts run.
        intervals: coefficient name → (low, high) bootstrap interval in natural units
            (E, A, … not their logs); empty without bootstrap.
        ci: coverage of ``intervals``; n_bootstrap: resamples that converged.
    """

    law: str
    params: SupervisedParams | DistillationParams
    objective: float
    n_runs: int
    mean_abs_rel_error: float
    max_abs_rel_error: float
    n_grid: int
    n_starts: int
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    ci: float = 0.90
    n_bootstrap: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "params": self.params.to_dict(),
            "objective": self.objective,
            "n_runs": self.n_runs,
            "mean_abs_rel_error": self.mean_abs_rel_error,
            "max_abs_rel_error": self.max_abs_rel_error,
            "n_grid": self.n_grid,
            "n_starts": self.n_starts,
            "ci": self.ci,
            "n_bootstrap": self.n_bootstrap,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
        }


def huber(r: ArrayLike, delta: float) -> Array:
    """Huber loss: r²/2 for |r| ≤ δ, δ(|r| − δ/2) beyond (App. F, on log residuals)."""
    r = np.asarray(r, dtype=float)
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


# ----------------------------------------------------------------------------- models
class _Model:
    """A law's log-space prediction, its Jacobian and coefficient bookkeeping."""

    names: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]

    def __init__(self, data: dict[str, Array]):
        self.data = data

    def predict(self, theta: Array, data: dict[str, Array] | None = None) -> Array:
        raise NotImplementedError

    def jacobian(self, theta: Array, data: dict[str, Array]) -> tuple[Array, Array]:
        raise NotImplementedError

    def to_params(self, theta: Array) -> SupervisedParams | DistillationParams:
        raise NotImplementedError


class _SupervisedModel(_Model):
    names = SUP_NAMES
    bounds = _SUP_BOUNDS

    def predict(self, theta: Array, data: dict[str, Array] | None = None) -> Array:
        d = self.data if data is None else data
        t = np.moveaxis(np.asarray(theta, dtype=float), -1, 0)[..., None]  # (P, ..., 1)
        return log_supervised_kernel(d["log_n"], d["log_d"], *t)

    def jacobian(self, theta: Array, data: dict[str, Array]) -> tuple[Array, Array]:
        log_e, log_a, log_b, alpha, beta, gamma = theta
        a1 = log_a - alpha * data["log_n"]
        a2 = log_b - beta * data["log_d"]
        u = np.logaddexp(a1, a2)
        s1, s2 = np.exp(a1 - u), np.exp(a2 - u)
        v = gamma * u
        pred = np.logaddexp(log_e, v)
        w_e, w_v = np.exp(log_e - pred), np.exp(v - pred)
        jac = np.stack([
            w_e,
            w_v * gamma * s1,
            w_v * gamma * s2,
            -w_v * gamma * s1 * data["log_n"],
            -w_v * gamma * s2 * data["log_d"],
            w_v * u,
        ], axis=-1)
        return pred, jac

    def to_params(self, theta: Array) -> SupervisedParams:
        log_e, log_a, log_b, alpha, beta, gamma = (float(x) for x in theta)
        return SupervisedParams(E=math.exp(log_e), A=math.exp(log_a), B=math.exp(log_b),
                                alpha=alpha, beta=beta, gamma=gamma)


class _DistillationModel(_Model):
    names = DIST_NAMES
    bounds = _DIST_BOUNDS

    def predict(self, theta: Array, data: dict[str, Array] | None = None) -> Array:
        d = self.data if data is None else data
        t = list(np.moveaxis(np.asarray(theta, dtype=float), -1, 0)[..., None])
        t[6] = np.exp(t[6])  # log c1 → c1
        return log_distillation_kernel(d["log_n"], d["log_d"], d["log_lt"], d["log_tilde"], *t)

    def jacobian(self, theta: Array, data: dict[str, Array]) -> tuple[Array, Array]:
        log_a, log_b, alpha, beta, gamma, c0, log_c1, f1, log_d1 = theta
        c1 = np.exp(log_c1)
        log_lt = data["log_lt"]
        z = (log_lt - data["log_tilde"] - log_d1) / f1
        softplus, sig = np.logaddexp(0.0, z), expit(z)
        a1 = log_a - alpha * data["log_n"]
        a2 = log_b - beta * data["log_d"]
        u = np.logaddexp(a1, a2)
        s1, s2 = np.exp(a1 - u), np.exp(a2 - u)
        g = -c0 * log_lt - c1 * f1 * softplus + gamma * u
        pred = np.logaddexp(log_lt, g)
        w = np.exp(g - pred)
        jac = np.stack([
            w * gamma * s1,
            w * gamma * s2,
            -w * gamma * s1 * data["log_n"],
            -w * gamma * s2 * data["log_d"],
            w * u,
            -w * log_lt,
            -w * c1 * f1 * softplus,
            -w * c1 * (softplus - sig * z),
            w * c1 * sig,
        ], axis=-1)
        return pred, jac

    def to_params(self, theta: Array) -> DistillationParams:
        log_a, log_b, alpha, beta, gamma, c0, log_c1, f1, log_d1 = (float(x) for x in theta)
        return DistillationParams(A=math.exp(log_a), B=math.exp(log_b), alpha=alpha, beta=beta,
                                  gamma=gamma, c0=c0, c1=math.exp(log_c1), f1=f1,
                                  d1=math.exp(log_d1))


def _natural(names: Sequence[str], theta: Array) -> dict[str, float]:
    """Coefficient dict in natural units (log_X → X)."""
    return {(n.removeprefix("log_")): (math.exp(v) if n.startswith("log_") else float(v))
            for n, v in zip(names, theta)}


# ----------------------------------------------------------------------------- engine
def _objective(model: _Model, data: dict[str, Array], delta: float):
    """Scaled objective Σ Huber_δ(r)/δ and its gradient (the 1/δ keeps L-BFGS-B's
    tolerances meaningful; the minimiser is unchanged)."""

    def fun(theta: Array) -> tuple[float, Array]:
        pred, jac = model.jacobian(theta, data)
        r = pred - data["log_l"]
        value = float(np.sum(huber(r, delta))) / delta
        # Elementwise, not `@`: a threaded BLAS gemv on these tiny arrays is ~20x slower
        # on a busy machine (thread contention).
        grad = np.sum((np.clip(r, -delta, delta) / delta)[:, None] * jac, axis=0)
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            return 1e30, np.zeros_like(theta)
        return value, grad

    return fun


def _local_fit(
    model: _Model, data: dict[str, Array], theta0: Array, options: FitOptions
) -> tuple[Array, float]:
    lo = np.array([b[0] for b in model.bounds])
    hi = np.array([b[1] for b in model.bounds])
    x0 = np.clip(np.asarray(theta0, dtype=float), lo, hi)
    res = minimize(
        _objective(model, data, options.huber_delta), x0, jac=True, method="L-BFGS-B",
        bounds=model.bounds,
        options={"maxiter": options.maxiter, "ftol": 1e-13, "gtol": 1e-10, "maxls": 50},
    )
    return np.asarray(res.x, dtype=float), float(res.fun)


def _polish(
    model: _Model, theta: Array, value: float, options: FitOptions
) -> tuple[Array, float]:
    """Refine the winning solution by trust-region least squares on the same objective.

    ``least_squares(loss="huber", f_scale=δ)`` minimises ½δ²·Σρ(r²/δ²) with ρ(z) = z
    (z ≤ 1) and 2√z − 1 beyond, which is exactly Σ Huber_δ(r): the minimiser is the
    one L-BFGS-B was looking for. L-BFGS-B alone stops in the flat A′–α′–γ′ valley of
    Eq. 8 wherever its quasi-Newton model runs out of curvature information — a point
    that depends on the machine's floating-point rounding (relative errors of 1e-2 on
    A′ were measured on two x86-64 CPUs). Trust-region Gauss–Newton uses the exact
    Jacobian, converges quadratically near a good fit, and stops only when a step no
    longer changes θ at ~1e-15, so the result is the optimum to what the conditioning
    of the problem allows (docs/scaling.md gives the numbers). Only the winner is
    polished; the polished point is kept only if its objective is not worse.
    """
    from scipy.optimize import least_squares

    lo = np.array([b[0] for b in model.bounds])
    hi = np.array([b[1] for b in model.bounds])
    data = model.data

    def residuals(t: Array) -> Array:
        return model.predict(t) - data["log_l"]

    def jacobian(t: Array) -> Array:
        return model.jacobian(t, data)[1]

    start = np.clip(np.asarray(theta, dtype=float), lo, hi)
    with np.errstate(all="ignore"):
        try:
            res = least_squares(
                residuals, start, jac=jacobian, bounds=(lo, hi), method="trf", loss="huber",
                f_scale=options.huber_delta, xtol=1e-15, ftol=1e-15, gtol=1e-15,
                max_nfev=options.maxiter,
            )
        except (ValueError, np.linalg.LinAlgError):  # non-finite model values at the start
            return theta, value
        polished = np.asarray(res.x, dtype=float)
        new_value = float(np.sum(huber(residuals(polished), options.huber_delta))) / options.huber_delta
    if np.isfinite(new_value) and new_value <= value:
        return polished, new_value
    return theta, value


def _grid(spec: dict[str, Sequence[float]], names: Sequence[str]) -> Array:
    """Cartesian product of the grid values, in the optimiser's coordinates."""
    axes = []
    for name in names:
        if name == "log_c1":  # the paper's grid is in c1; c1 = 0 starts at the floor
            axes.append([math.log(max(float(v), _C1_FLOOR)) for v in spec["c1"]])
        else:
            axes.append([float(v) for v in spec[name]])
    return np.array(list(itertools.product(*axes)), dtype=float)


def _screen(model: _Model, grid: Array, options: FitOptions, chunk: int = 2048) -> Array:
    """Objective at every grid point (vectorised, chunked)."""
    lo = np.array([b[0] for b in model.bounds])
    hi = np.array([b[1] for b in model.bounds])
    grid = np.clip(grid, lo, hi)
    out = np.empty(len(grid))
    with np.errstate(all="ignore"):
        for start in range(0, len(grid), chunk):
            pred = model.predict(grid[start:start + chunk])  # (G, n)
            r = pred - model.data["log_l"]
            vals = np.sum(huber(r, options.huber_delta), axis=-1)
            out[start:start + chunk] = np.where(np.isfinite(vals), vals, np.inf)
    return out


def _distinct(solutions: list[tuple[float, Array]], k: int) -> list[Array]:
    """Up to k best solutions that differ from each other (rounded coefficients)."""
    seen, picked = set(), []
    for _, theta in sorted(solutions, key=lambda s: s[0]):
        key = tuple(np.round(theta, 3))
        if key in seen:
            continue
        seen.add(key)
        picked.append(theta)
        if len(picked) == k:
            break
    return picked


def _single_threaded_blas():
    """Limit BLAS to one thread: L-BFGS-B's small matrix products run ~10x slower when
    OpenBLAS spreads them over threads on a busy machine."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _bootstrap_chunk(model: _Model, starts: list[Array], options: FitOptions,
                     seeds: list[np.random.SeedSequence]) -> list[Array]:
    """Refit one resample per seed (records drawn with replacement) from ``starts``,
    polished as the full-data fit is (so the intervals describe the same estimator)."""
    n = len(model.data["log_l"])
    out = []
    with _single_threaded_blas():
        for seed in seeds:
            idx = np.random.default_rng(seed).integers(0, n, size=n)
            sample = {k: v[idx] for k, v in model.data.items()}
            theta, value = min((_local_fit(model, sample, s, options) for s in starts),
                               key=lambda r: r[1])
            out.append(_polish(type(model)(sample), theta, value, options)[0])
    return out


def _starts_chunk(model: _Model, options: FitOptions, starts: list[Array]
                  ) -> list[tuple[Array, float]]:
    with _single_threaded_blas():
        return [_local_fit(model, model.data, s, options) for s in starts]


def _n_workers(options: FitOptions, tasks: int) -> int:
    n_jobs = options.n_jobs
    if n_jobs < 0:
        import os

        n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return max(1, min(n_jobs, tasks))


def _map_chunks(fn, items: list, n_workers: int, *args) -> list:
    """Apply ``fn(args..., chunk)`` to ``n_workers`` contiguous chunks of ``items``
    (in-process for one worker, joblib processes otherwise); concatenate in order."""
    bounds = np.linspace(0, len(items), n_workers + 1).astype(int)
    chunks = [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    if n_workers == 1:
        results = [fn(*args, chunk) for chunk in chunks]
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_workers)(delayed(fn)(*args, chunk) for chunk in chunks)
    return [x for part in results for x in part]


def _fit(
    model: _Model, law: str, grid_spec: dict[str, Sequence[float]], options: FitOptions
) -> FitResult:
    grid = _grid(grid_spec, model.names)
    if options.n_starts is None:
        starts = list(grid)
    else:
        scores = _screen(model, grid, options)
        order = np.argsort(scores, kind="stable")[: options.n_starts]
        starts = [grid[i] for i in order]
    # Process start-up costs ~1 s: parallelise only long lists of starts.
    workers = _n_workers(options, len(starts)) if len(starts) > 32 else 1
    solutions = [(value, theta) for theta, value in
                 _map_chunks(_starts_chunk, starts, workers, model, options)
                 if np.isfinite(value) and value < 1e29]
    if not solutions:
        raise DataError(f"the {law} fit failed from every start; check the runs' values")
    best_value, best = min(solutions, key=lambda s: s[0])
    with _single_threaded_blas():
        best, best_value = _polish(model, best, best_value, options)

    intervals: dict[str, tuple[float, float]] = {}
    n_boot = 0
    if options.n_bootstrap > 0:
        warm = _distinct(solutions, 3)
        thetas = _run_bootstrap(model, warm, options)
        n_boot = len(thetas)
        if thetas:
            nat = np.array([list(_natural(model.names, t).values()) for t in thetas])
            tail = 50.0 * (1.0 - options.ci)
            lo, hi = np.percentile(nat, [tail, 100.0 - tail], axis=0)
            keys = list(_natural(model.names, best).keys())
            intervals = {k: (float(a), float(b)) for k, a, b in zip(keys, lo, hi)}

    pred = model.predict(best)
    rel = np.abs(np.exp(pred - model.data["log_l"]) - 1.0)
    return FitResult(
        law=law,
        params=model.to_params(best),
        objective=best_value * options.huber_delta,
        n_runs=len(model.data["log_l"]),
        mean_abs_rel_error=float(np.mean(rel)),
        max_abs_rel_error=float(np.max(rel)),
        n_grid=len(grid),
        n_starts=len(starts),
        intervals=intervals,
        ci=options.ci,
        n_bootstrap=n_boot,
    )


def _run_bootstrap(model: _Model, warm: list[Array], options: FitOptions) -> list[Array]:
    # One seed per resample: the intervals do not depend on the number of workers.
    seeds = np.random.SeedSequence(options.seed).spawn(options.n_bootstrap)
    workers = _n_workers(options, options.n_bootstrap)
    thetas = _map_chunks(_bootstrap_chunk, seeds, workers, model, warm, options)
    return [t for t in thetas if np.all(np.isfinite(t))]


# ----------------------------------------------------------------------------- public API
def _logs(values: ArrayLike, what: str) -> Array:
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise DataError(f"no values for {what}")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise DataError(f"every {what} must be finite and > 0")
    return np.log(arr)


def _check_count(n: int, n_coef: int, law: str) -> None:
    if n < n_coef:
        raise DataError(
            f"the {law} law has {n_coef} coefficients but only {n} {law} run(s) were given; "
            f"record at least {n_coef} runs (spanning several sizes and token counts)"
        )


def fit_supervised(
    n: ArrayLike, d: ArrayLike, loss: ArrayLike, options: FitOptions | None = None
) -> FitResult:
    """Fit Eq. 1 to supervised runs (App. F).

    Args:
        n: (R,) non-embedding parameters per run.
        d: (R,) training tokens per run.
        loss: (R,) validation cross-entropy per run, nats.
        options: grid, starts, bootstrap, parallelism.

    Raises:
        DataError: on mismatched lengths, non-positive values or fewer than 6 runs.
    """
    options = options or FitOptions()
    data = {"log_n": _logs(n, "N"), "log_d": _logs(d, "D"), "log_l": _logs(loss, "loss")}
    if len({len(v) for v in data.values()}) != 1:
        raise DataError("N, D and loss must have one value per run (equal lengths)")
    _check_count(len(data["log_l"]), len(SUP_NAMES), "supervised")
    return _fit(_SupervisedModel(data), "supervised", SUPERVISED_GRIDS[options.grid], options)


def fit_distillation(
    student_params: ArrayLike,
    student_tokens: ArrayLike,
    teacher_loss: ArrayLike,
    student_loss: ArrayLike,
    supervised: SupervisedParams | None = None,
    options: FitOptions | None = None,
) -> FitResult:
    """Fit Eq. 8 to distillation runs (App. F), with L̃_S from ``supervised`` (held fixed).

    Args:
        student_params: (R,) N_S per run.
        student_tokens: (R,) D_S per run.
        teacher_loss: (R,) L_T per run, nats.
        student_loss: (R,) observed L_S per run, nats.
        supervised: supervised coefficients giving L̃_S = L(N_S, D_S); default Table 6.
        options: grid, starts, bootstrap, parallelism.

    Raises:
        DataError: on mismatched lengths, non-positive values or fewer than 9 runs.
    """
    options = options or FitOptions()
    sup = supervised or SupervisedParams()
    data = {
        "log_n": _logs(student_params, "N_S"),
        "log_d": _logs(student_tokens, "D_S"),
        "log_lt": _logs(teacher_loss, "L_T"),
        "log_l": _logs(student_loss, "L_S"),
    }
    if len({len(v) for v in data.values()}) != 1:
        raise DataError("N_S, D_S, L_T and L_S must have one value per run (equal lengths)")
    _check_count(len(data["log_l"]), len(DIST_NAMES), "distillation")
    data["log_tilde"] = log_supervised_kernel(
        data["log_n"], data["log_d"], math.log(sup.E), math.log(sup.A), math.log(sup.B),
        sup.alpha, sup.beta, sup.gamma,
    )
    return _fit(_DistillationModel(data), "distillation", DISTILLATION_GRIDS[options.grid], options)


@dataclass(frozen=True)
class RecordsFit:
    """Fits of both laws from one runs file.

    Attributes:
        params: fitted supervised/distillation coefficients where the file had runs of
            that kind, else the fallback (given or the paper's) for that law.
        supervised: the supervised fit, or None if the file had no supervised runs.
        distillation: the distillation fit, or None if it had no distillation runs.
        supervised_source: where L̃_S for the distillation fit came from
            (``"fit"``, ``"given"`` or ``"paper"``).
    """

    params: ScalingLawParams
    supervised: FitResult | None
    distillation: FitResult | None
    supervised_source: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; loadable by :func:`minidisc.scaling.params.load_params`."""
        out: dict[str, Any] = self.params.to_dict()
        out["fit"] = {
            "supervised": None if self.supervised is None else self.supervised.to_dict(),
            "distillation": None if self.distillation is None else self.distillation.to_dict(),
            "supervised_source": self.supervised_source,
        }
        return out


def fit_records(
    records: Sequence[RunRecord],
    options: FitOptions | None = None,
    supervised: SupervisedParams | None = None,
) -> RecordsFit:
    """Fit Eq. 1 to the supervised records and Eq. 8 to the distillation records.

    L̃_S for the distillation fit comes from the supervised fit of the same records
    when there are supervised records, else from ``supervised`` (else Table 6).

    Raises:
        DataError: if there are no records, or too few of a kind present to fit it.
    """
    if not records:
        raise DataError("no run records to fit")
    sup_runs = [r for r in records if r.kind == "supervised"]
    dist_runs = [r for r in records if r.kind == "distillation"]
    sup_fit = None
    if sup_runs:
        sup_fit = fit_supervised([r.student_params for r in sup_runs],
                                 [r.student_tokens for r in sup_runs],
                                 [r.student_loss for r in sup_runs], options)
        sup_params, source = sup_fit.params, "fit"
    elif supervised is not None:
        sup_params, source = supervised, "given"
    else:
        sup_params, source = SupervisedParams(), "paper"
    dist_fit = None
    dist_params = DistillationParams()
    if dist_runs:
        dist_fit = fit_distillation([r.student_params for r in dist_runs],
                                    [r.student_tokens for r in dist_runs],
                                    [r.teacher_loss for r in dist_runs],
                                    [r.student_loss for r in dist_runs], sup_params, options)
        dist_params = dist_fit.params
    assert isinstance(sup_params, SupervisedParams) and isinstance(dist_params, DistillationParams)
    return RecordsFit(ScalingLawParams(sup_params, dist_params), sup_fit, dist_fit, source)
