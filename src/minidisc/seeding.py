"""One seed for every random draw of a stage.

Every stage (and every command that trains outside a run directory) calls
:func:`seed_everything` with its configured seed before its first random draw: a new
task head, the objective's projections, dropout, the data order. Each stage is seeded at
its own start, never only once per process, so a resumed run — which skips the finished
stages and their draws — draws exactly the numbers an uninterrupted run draws. What may
still differ between machines is listed in docs/minidisc.md ("Reproducibility").

On a GPU, seeding is not enough: several CUDA kernels (atomic adds in backward passes,
cuBLAS's split workspaces) sum in a different order on every run. Setting the
environment variable ``MINIDISC_DETERMINISTIC=1`` selects torch's deterministic kernels
(slower), so two runs on the same GPU give the same numbers too.
"""

from __future__ import annotations

import os

DETERMINISTIC_ENV = "MINIDISC_DETERMINISTIC"


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every GPU) with ``seed``; with
    ``MINIDISC_DETERMINISTIC=1`` also select deterministic kernels (:func:`use_deterministic_kernels`).

    The seeding is :func:`transformers.set_seed`, the Trainer's own, so a stage's draws
    before its Trainer exists come from the same seed as the Trainer's.
    """
    from transformers import set_seed

    if deterministic_requested():
        use_deterministic_kernels()
    set_seed(int(seed))


def deterministic_requested() -> bool:
    """Whether ``MINIDISC_DETERMINISTIC`` asks for deterministic kernels (1, true, yes)."""
    return os.environ.get(DETERMINISTIC_ENV, "").strip().lower() in {"1", "true", "yes"}


def use_deterministic_kernels() -> None:
    """Make torch pick deterministic GPU kernels for the rest of the process.

    cuBLAS reads ``CUBLAS_WORKSPACE_CONFIG`` when it starts, so this must run before the
    first matrix product on the GPU (every stage calls it at its start, before it loads
    a model). An operation that has no deterministic kernel warns instead of failing
    (``warn_only``): the run goes on, and the warning says which operation may vary.
    """
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
