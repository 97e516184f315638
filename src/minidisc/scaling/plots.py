"""Figures of the scaling laws (matplotlib, written straight to PNG files).

* :func:`plot_student_vs_teacher`: L_S against L_T for several student sizes (Eq. 8),
  showing the capacity gap (a better teacher can make a worse student).
* :func:`plot_isoflops`: at fixed total compute, the best student loss against teacher
  size (Eq. 9/10), one curve per budget, with the supervised baseline.
* :func:`plot_distillation_map`: L_S* − L_sup over student size × compute for one
  scenario (blue: distillation better), with the crossover contour.
* :func:`plot_crossover`: distilled vs supervised loss against compute for one student.
* :func:`plot_fit`: predicted against observed losses of fitted run records.

Figures use ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend) and
are sized to stay well under 200 KB as PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from minidisc.errors import ConfigError
from minidisc.fileio import atomic_path
from minidisc.scaling.compute import FlopsModel, get_scenario
from minidisc.scaling.laws import distillation_loss, supervised_loss
from minidisc.scaling.params import ScalingLawParams
from minidisc.scaling.plan import (
    Crossover,
    plan_distillation,
    student_loss_for_teacher,
    supervised_baseline,
)
from minidisc.scaling.records import RunRecord

__all__ = [
    "distillation_advantage_grid",
    "plot_crossover",
    "plot_distillation_map",
    "plot_fit",
    "plot_isoflops",
    "plot_student_vs_teacher",
]

_DPI = 110
_SIZE = (6.4, 4.4)


def _figure():
    from matplotlib.figure import Figure

    fig = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"plots are written as PNG; give a .png path, not {path.name}")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI)
    return path


def _fmt(n: float) -> str:
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


def plot_student_vs_teacher(
    path: str | os.PathLike[str],
    params: ScalingLawParams | None = None,
    student_sizes: Sequence[float] = (1.43e8, 5.46e8, 1.82e9, 7.75e9),
    tokens_per_param: float = 20.0,
    teacher_losses: Sequence[float] | None = None,
    highlight: tuple[float, float, float] | None = None,
) -> Path:
    """Student loss vs teacher loss (Eq. 8) for several students at D_S = k·N_S.

    Args:
        path: output PNG.
        student_sizes: N_S values, one curve each.
        tokens_per_param: k = D_S/N_S.
        teacher_losses: L_T values (nats); default 1.6–3.6 (above the law's E).
        highlight: optional (N_S, D_S, L_T) point to mark (e.g. a prediction).
    """
    p = params or ScalingLawParams()
    if teacher_losses is None:  # 1.6–3.6 nats, but only teachers the law allows (L_T > E)
        low = max(1.6, 1.001 * p.supervised.E)
        teacher_losses = np.linspace(low, max(3.6, low + 2.0), 400)
    lt = np.asarray(teacher_losses)
    fig, ax = _figure()
    for i, n in enumerate(student_sizes):
        color = f"C{i}"
        d = tokens_per_param * n
        ax.plot(lt, distillation_loss(n, d, lt, p), color=color,
                label=f"N_S={_fmt(n)}, D_S={_fmt(d)}")
        ax.axhline(supervised_loss(n, d, p.supervised), color=color, ls=":", lw=1)
    if highlight is not None:
        n, d, t = highlight
        ax.plot([t], [distillation_loss(n, d, t, p)], "k*", ms=12, label="prediction")
    ax.plot(lt, lt, color="0.5", ls="--", lw=1, label="L_S = L_T")
    ax.set_xlabel("teacher cross-entropy L_T (nats)")
    ax.set_ylabel("student cross-entropy L_S (nats)")
    ax.set_title("Distillation law (Eq. 8); dotted: supervised L(N_S, D_S)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_isoflops(
    path: str | os.PathLike[str],
    student_params: float,
    budgets: Sequence[float],
    scenario: str = "teacher-pretraining-inference",
    params: ScalingLawParams | None = None,
    flops_model: FlopsModel | None = None,
    teacher_sizes: Sequence[float] | None = None,
) -> Path:
    """IsoFLOP curves: best L_S vs teacher size N_T at fixed total compute.

    For each budget C and teacher size, the teacher's tokens and the student's tokens
    share C as the scenario dictates (Eq. 9), D_T chosen to minimise L_S. Dashed
    lines: the supervised student with the whole budget.
    """
    p = params or ScalingLawParams()
    s = get_scenario(scenario)
    sizes = np.asarray(teacher_sizes if teacher_sizes is not None else np.geomspace(1e7, 1e12, 60))
    fig, ax = _figure()
    for i, c in enumerate(budgets):
        losses = np.array([student_loss_for_teacher(student_params, n_t, c, s, p, flops_model,
                                                    n_grid=121)[0] for n_t in sizes])
        color = f"C{i}"
        ax.plot(sizes, losses, color=color, label=f"C={c:.0e} FLOPs")
        if np.isfinite(losses).any():
            j = int(np.nanargmin(losses))
            ax.plot([sizes[j]], [losses[j]], "o", color=color)
        ax.axhline(supervised_baseline(student_params, c, p, flops_model)[1], color=color,
                   ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("teacher parameters N_T")
    ax.set_ylabel("student cross-entropy L_S (nats)")
    ax.set_title(f"IsoFLOPs, N_S={_fmt(student_params)}, {s.name}; dashed: supervised",
                 fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def distillation_advantage_grid(
    student_sizes: Sequence[float],
    budgets: Sequence[float],
    scenario: str = "best-case",
    params: ScalingLawParams | None = None,
    flops_model: FlopsModel | None = None,
    max_starts: int | None = 6,
) -> np.ndarray:
    """L_S* − L_sup (nats) on a (len(budgets), len(student_sizes)) grid; NaN where the
    budget is infeasible for that student. Negative: distillation is better."""
    out = np.full((len(budgets), len(student_sizes)), np.nan)
    for i, c in enumerate(budgets):
        for j, n in enumerate(student_sizes):
            try:
                plan = plan_distillation(n, c, scenario, params, flops_model,
                                         max_starts=max_starts)
            except ConfigError:
                continue
            out[i, j] = plan.student_loss - plan.supervised_loss
    return out


def plot_distillation_map(
    path: str | os.PathLike[str],
    scenario: str = "best-case",
    params: ScalingLawParams | None = None,
    flops_model: FlopsModel | None = None,
    student_sizes: Sequence[float] | None = None,
    budgets: Sequence[float] | None = None,
    resolution: int = 16,
) -> Path:
    """Map of L_S* − L_sup over student size × compute (blue: distillation better).

    Args:
        resolution: grid points per axis when sizes/budgets are not given.
    """
    from matplotlib.colors import TwoSlopeNorm

    sizes = np.asarray(student_sizes if student_sizes is not None
                       else np.geomspace(1e8, 3e10, resolution))
    comp = np.asarray(budgets if budgets is not None else np.geomspace(1e18, 1e25, resolution))
    delta = distillation_advantage_grid(sizes, comp, scenario, params, flops_model)
    fig, ax = _figure()
    finite = delta[np.isfinite(delta)]
    # Clip the colour scale at the 75th percentile of |Δ|: the data-starved corner
    # (huge Δ) would otherwise wash out the sign everywhere else.
    span = float(np.quantile(np.abs(finite), 0.75)) if finite.size else 1.0
    span = max(span, 1e-3)
    norm = TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span)
    mesh = ax.pcolormesh(sizes, comp, np.ma.masked_invalid(delta), cmap="RdBu_r", norm=norm,
                         shading="nearest")
    if finite.size and finite.min() < 0 < finite.max():
        ax.contour(sizes, comp, np.nan_to_num(delta, nan=span), levels=[0.0], colors="k",
                   linewidths=1.2)
    fig.colorbar(mesh, ax=ax, label="L_S* − L_supervised (nats)", extend="both")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("student parameters N_S")
    ax.set_ylabel("compute C (FLOPs)")
    ax.set_title(f"{get_scenario(scenario).name}: blue = distillation better, "
                 "black = crossover", fontsize=10)
    return _save(fig, path)


def plot_crossover(path: str | os.PathLike[str], crossovers: Sequence[Crossover]) -> Path:
    """Distilled (solid) and supervised (dashed) loss vs compute for one student, one
    curve per scenario, every crossing marked (dotted)."""
    if not crossovers:
        raise ConfigError("nothing to plot: no crossover results")
    fig, ax = _figure()
    first = crossovers[0]
    ax.plot(first.compute_grid, first.supervised_loss, "k--", label="supervised (same N_S)")
    for i, cr in enumerate(crossovers):
        color = f"C{i}"
        ax.plot(cr.compute_grid, cr.distillation_loss, color=color, label=cr.scenario)
        for crossing in cr.crossings:
            ax.axvline(crossing.compute, color=color, ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("student cross-entropy (nats)")
    ax.set_title(f"Crossover, N_S={_fmt(first.student_params)} (dotted: crossings)", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_fit(
    path: str | os.PathLike[str], records: Sequence[RunRecord], params: ScalingLawParams
) -> Path:
    """Predicted vs observed loss of every record under ``params``."""
    fig, ax = _figure()
    lo, hi = np.inf, -np.inf
    for kind, marker in (("supervised", "o"), ("distillation", "^")):
        runs = [r for r in records if r.kind == kind]
        if not runs:
            continue
        n = np.array([r.student_params for r in runs])
        d = np.array([r.student_tokens for r in runs])
        obs = np.array([r.student_loss for r in runs])
        if kind == "supervised":
            pred = supervised_loss(n, d, params.supervised)
        else:
            pred = distillation_loss(n, d, np.array([r.teacher_loss for r in runs]), params)
        ax.scatter(obs, pred, s=12, marker=marker, alpha=0.7, label=f"{kind} ({len(runs)})")
        lo, hi = min(lo, obs.min(), np.min(pred)), max(hi, obs.max(), np.max(pred))
    if np.isfinite(lo):
        ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=1)
    ax.set_xlabel("observed cross-entropy (nats)")
    ax.set_ylabel("predicted cross-entropy (nats)")
    ax.set_title("Fitted laws: predicted vs observed", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)
