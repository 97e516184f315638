"""Synthetic run records drawn from known scaling laws, for trying and testing fits.

Each record's loss is the law's prediction times log-normal noise,
``L_obs = L_law · exp(ε)``, ε ~ N(0, noise²), so ``noise`` is (about) the relative
standard deviation of the observed losses.

The design mirrors a small version of the paper's study (Busbridge et al. 2025, §4):
supervised runs over a grid of sizes × tokens-per-parameter, and distillation runs where
students of several sizes and token budgets learn from teachers of several sizes
trained at several tokens-per-parameter (L_T from the supervised law, noise-free).
"""

from __future__ import annotations

import numpy as np

from minidisc.errors import ConfigError
from minidisc.scaling.laws import distillation_loss, supervised_loss
from minidisc.scaling.params import ScalingLawParams
from minidisc.scaling.records import RunRecord

__all__ = ["synthetic_records"]


def synthetic_records(
    params: ScalingLawParams | None = None,
    noise: float = 0.005,
    seed: int = 0,
    student_sizes: tuple[float, ...] = (1.43e8, 3.4e8, 8.23e8, 1.82e9, 4.82e9),
    student_tokens_per_param: tuple[float, ...] = (5, 20, 80, 320),
    teacher_sizes: tuple[float, ...] = (1.98e8, 5.46e8, 1.82e9, 7.75e9, 1.26e10),
    teacher_tokens_per_param: tuple[float, ...] = (20, 80, 320),
) -> list[RunRecord]:
    """Supervised and distillation records generated from ``params`` plus noise.

    Supervised runs: every student size × student tokens-per-parameter (20 by default).
    Distillation runs: every student size × student tokens-per-parameter × teacher
    size × teacher tokens-per-parameter (300 by default).

    Args:
        params: the "true" coefficients; default Table 6.
        noise: relative noise (standard deviation of log L), >= 0.
        seed: NumPy random seed.

    Raises:
        ConfigError: if ``noise`` is negative.
    """
    if noise < 0:
        raise ConfigError(f"noise must be >= 0, got {noise}")
    p = params or ScalingLawParams()
    rng = np.random.default_rng(seed)
    records = []
    for n in student_sizes:
        for k in student_tokens_per_param:
            d = k * n
            loss = float(supervised_loss(n, d, p.supervised)) * float(np.exp(rng.normal(0, noise)))
            records.append(RunRecord("supervised", n, d, loss, label=f"sup N={n:.3g} D={d:.3g}"))
    for n in student_sizes:
        for k in student_tokens_per_param:
            d = k * n
            for n_t in teacher_sizes:
                for k_t in teacher_tokens_per_param:
                    d_t = k_t * n_t
                    l_t = float(supervised_loss(n_t, d_t, p.supervised))
                    loss = float(distillation_loss(n, d, l_t, p)) * float(
                        np.exp(rng.normal(0, noise)))
                    records.append(RunRecord(
                        "distillation", n, d, loss, teacher_params=n_t, teacher_tokens=d_t,
                        teacher_loss=l_t, label=f"kd N={n:.3g} D={d:.3g} NT={n_t:.3g} DT={d_t:.3g}",
                    ))
    return records
