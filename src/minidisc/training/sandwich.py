"""Which candidate sub-networks one sandwich step trains.

MiniDisc's reference code trains every candidate at every step (``samples=None``): a
step costs one teacher forward plus a forward and backward of each candidate, about
1.7 full-model training steps on the default grid at target 0.9. The *sandwich rule*
of slimmable networks (Yu & Huang 2019, "Universally Slimmable Networks and Improved
Training Techniques", §3.1) trains the largest and the smallest width every step and
``n`` widths drawn at random: the two extremes bound every width between them, and the
random ones are trained often enough to stay close. Here the widths are MiniDisc's
candidates: the least sparse and the most sparse one every step, and ``samples`` of the
others drawn uniformly without replacement.

The draw is a function of (seed, optimizer step) only, so a resumed run and every
process of a multi-process launch train the same candidates at the same step.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

__all__ = ["inclusion_probabilities", "step_candidates", "trains_every_candidate"]


def trains_every_candidate(n_candidates: int, samples: int | None) -> bool:
    """Whether every step trains all ``n_candidates``: no sampling asked, or too few
    candidates between the two extremes to leave any out."""
    return samples is None or n_candidates <= 2 + samples


def step_candidates(levels: Sequence[float], samples: int | None, seed: int, step: int) -> list[float]:
    """The candidates (sparsities, ascending) trained at optimizer step ``step``.

    Args:
        levels: every candidate's sparsity, ascending.
        samples: candidates drawn among the middle ones besides the least and the most
            sparse (the sandwich rule); None: every candidate (MiniDisc's reference code).
        seed: the stage's seed.
        step: the optimizer step (0-based; the same for every micro-batch of one step).

    Raises:
        ValueError: ``samples`` negative.
    """
    if samples is not None and samples < 0:
        raise ValueError(f"sandwich samples must be ≥ 0, got {samples}")
    if trains_every_candidate(len(levels), samples):
        return list(levels)
    middle = list(levels[1:-1])
    drawn = random.Random(f"minidisc-sandwich:{seed}:{step}").sample(middle, samples)  # str seed: stable across runs
    return sorted([levels[0], *drawn, levels[-1]])


def inclusion_probabilities(levels: Sequence[float], samples: int | None) -> dict[float, float]:
    """Each candidate's probability of being trained at a step: 1 for the extremes (and
    for all, with ``samples`` None), ``samples / (n - 2)`` for the middle ones. Their sum
    is the expected number of candidates a step trains (used to scale cost estimates)."""
    n = len(levels)
    if trains_every_candidate(n, samples):
        return dict.fromkeys(levels, 1.0)
    share = samples / (n - 2)
    return {s: 1.0 if i in (0, n - 1) else share for i, s in enumerate(levels)}
