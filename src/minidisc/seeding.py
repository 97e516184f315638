"""One seed for every random draw of a stage.

Every stage (and every command that trains outside a run directory) calls
:func:`seed_everything` with its configured seed before its first random draw: a new
task head, the objective's projections, dropout, the data order. Each stage is seeded at
its own start, never only once per process, so a resumed run — which skips the finished
stages and their draws — draws exactly the numbers an uninterrupted run draws. What may
still differ between machines is listed in docs/minidisc.md ("Reproducibility").
"""

from __future__ import annotations


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU) with ``seed``.

    This is :func:`transformers.set_seed`, the Trainer's own seeding, so a stage's draws
    before its Trainer exists come from the same seed as the Trainer's.
    """
    from transformers import set_seed

    set_seed(int(seed))
