"""Plots of a MiniDisc run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from minidisc.elastic.levels import same_level
from minidisc.fileio import atomic_path
from minidisc.training.records import IterationRecord


def plot_tradeoff(
    iterations: list[dict[str, Any]], lam: float, target: float, path: str | Path, teacher_metric: float | None = None
) -> None:
    """Dev metric and λ-tradeoff of every candidate against sparsity, one panel per
    sandwich iteration, the chosen assistant marked.

    Args:
        iterations: manifest entries of the iteration stages
            (:class:`~minidisc.training.records.IterationRecord`).
        teacher_metric: the teacher's dev metric (a fraction), drawn as a reference line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [IterationRecord.from_dict(it) for it in iterations]
    shown = [it for it in records if len(it.candidates) > 1] or records
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4), squeeze=False)
    for ax, it in zip(axes[0], shown):
        cands = sorted(it.candidates, key=lambda c: c.sparsity)
        xs = [100 * c.sparsity for c in cands]
        ax.plot(xs, [100 * c.selection_metric for c in cands], "o-", label="selection metric")
        ax.plot(xs, [100 * c.tradeoff for c in cands], "s--", label=f"λ-tradeoff (λ={lam:g})")  # type: ignore[operator]
        chosen = next(c for c in cands if same_level(c.sparsity, it.selected))
        ax.axvline(100 * chosen.sparsity, color="tab:red", alpha=0.4)
        ax.scatter([100 * chosen.sparsity], [100 * chosen.tradeoff], s=160, facecolors="none",  # type: ignore[operator]
                   edgecolors="tab:red", linewidths=2, label=f"chosen: {100 * chosen.sparsity:g} %", zorder=5)
        ax.axvline(100 * target, color="grey", linestyle=":", label=f"target {100 * target:g} %")
        if teacher_metric is not None:
            ax.axhline(100 * teacher_metric, color="tab:green", linestyle="-.", alpha=0.7, label="teacher dev metric")
        ax.set_xlabel("sparsity w.r.t. the teacher (%)")
        ax.set_ylabel("percent")
        ax.set_title(f"iteration {it.iteration}" + (" (final)" if it.final else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
