"""Held-out LM loss curves against training FLOPs and tokens (one arm or a study).

The curves are the ``curve`` lists of ``minidisc pretrain`` reports: points with
``flops``, ``tokens`` and ``loss`` (nats per masked token, or per next-token prediction
for a causal LM).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from minidisc.fileio import atomic_path

#: x axes of every loss plot: (curve key, axis label).
LOSS_AXES = (("flops", "training FLOPs"), ("tokens", "training tokens"))


def plot_loss_curves(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | Path,
    *,
    reference: float | None = None,
    reference_label: str = "teacher",
    title: str | None = None,
    loss_name: str = "MLM",
) -> None:
    """Write a PNG with two panels: held-out loss against training FLOPs and tokens.

    Args:
        curves: ``{legend label: curve points}``.
        path: the PNG (written atomically).
        reference: a horizontal line (e.g. the teacher's held-out loss), nats.
        reference_label: its legend label.
        title: figure title.
        loss_name: the loss in the y label (``"MLM"``, ``"causal-LM"``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (key, label) in zip(axes, LOSS_AXES):
        for name, curve in curves.items():
            ax.plot([p[key] for p in curve], [p["loss"] for p in curve], "o-", ms=3, label=name)
        if reference is not None:
            ax.axhline(reference, color="grey", linestyle=":", label=reference_label)
        ax.set_xlabel(label)
        ax.set_ylabel(f"held-out {loss_name} loss (nats)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
