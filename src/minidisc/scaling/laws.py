"""The supervised (Eq. 1) and distillation (Eq. 8) scaling laws, evaluated in log space.

Busbridge et al., "Distillation Scaling Laws" (arXiv 2502.08606):

* supervised: ``L(N, D) = E + (A/N^α + B/D^β)^γ``;
* distillation::

      L_S = L_T + L_T^(−c0) · (1 + (L_T/(L̃_S·d1))^(1/f1))^(−c1·f1) · (A′/N_S^α′ + B′/D_S^β′)^γ′

  with L̃_S = L(N_S, D_S) the supervised loss the student would reach on its own.

Every sum of positive terms is a log-sum-exp of log terms, so nothing overflows: the
capacity-gap factor is ``exp(−c1·f1·softplus(log x / f1))`` with ``x = L_T/(L̃_S·d1)``
and ``1/f1 ≈ 11``, which would overflow a float as ``x^(1/f1)`` for large x.

Units everywhere: N in non-embedding parameters, D in tokens, losses in nats.
Inputs broadcast like NumPy arrays; a scalar input gives a Python float.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from minidisc.errors import ConfigError
from minidisc.scaling.params import DistillationParams, ScalingLawParams, SupervisedParams

__all__ = [
    "capacity_gap_factor",
    "check_teacher_loss",
    "distillation_log_loss",
    "distillation_loss",
    "log_distillation_kernel",
    "log_supervised_kernel",
    "supervised_log_loss",
    "supervised_loss",
    "supervised_loss_infinite_data",
]

FloatOrArray = float | NDArray[np.float64]


def _positive_log(x: ArrayLike, what: str) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ConfigError(f"{what} must be finite and > 0, got {x!r}")
    return np.log(arr)


def check_teacher_loss(
    teacher_loss: ArrayLike, supervised: SupervisedParams, what: str = "teacher loss L_T"
) -> None:
    """Refuse a teacher loss at or below the supervised law's irreducible loss E.

    No model reaches L ≤ E under Eq. 1, and Eq. 8 is meaningless there (its prefactor
    L_T^(−c0) blows up: L_T = 0.5 would "predict" a 13.7-nat student). E is the
    fitted (or the paper's, 1.22 nats) value of the parameters in use.

    Args:
        teacher_loss: L_T in nats, any shape.
        supervised: the coefficients whose E bounds L_T.
        what: how the message names the value.

    Raises:
        ConfigError: some L_T ≤ E (the message gives the bound).
    """
    arr = np.asarray(teacher_loss, dtype=float)
    if np.any(arr <= supervised.E):
        worst = float(np.min(arr))
        raise ConfigError(
            f"{what} = {worst:.6g} nats is not above the irreducible loss E = {supervised.E:.6g} nats "
            "of the supervised law, so no teacher can have it; give a teacher loss > "
            f"{supervised.E:.6g} nats (measured on the data the law describes), or --params with a law "
            "fitted to your own runs"
        )


def _out(x: NDArray[np.float64]) -> FloatOrArray:
    return float(x) if np.ndim(x) == 0 else x


def log_supervised_kernel(
    log_n: ArrayLike,
    log_d: ArrayLike,
    log_e: ArrayLike,
    log_a: ArrayLike,
    log_b: ArrayLike,
    alpha: ArrayLike,
    beta: ArrayLike,
    gamma: ArrayLike,
) -> NDArray[np.float64]:
    """log L(N, D) of Eq. 1 from logs of the inputs and coefficients (all broadcast).

    ``log L = logaddexp(log E, γ·logaddexp(log A − α log N, log B − β log D))``. Used by
    the fitter with coefficient arrays of shape (G, 1) against data of shape (n,).
    """
    power = np.logaddexp(np.subtract(log_a, np.multiply(alpha, log_n)),
                         np.subtract(log_b, np.multiply(beta, log_d)))
    return np.logaddexp(log_e, np.multiply(gamma, power))


def log_distillation_kernel(
    log_ns: ArrayLike,
    log_ds: ArrayLike,
    log_lt: ArrayLike,
    log_ls_tilde: ArrayLike,
    log_a: ArrayLike,
    log_b: ArrayLike,
    alpha: ArrayLike,
    beta: ArrayLike,
    gamma: ArrayLike,
    c0: ArrayLike,
    c1: ArrayLike,
    f1: ArrayLike,
    log_d1: ArrayLike,
) -> NDArray[np.float64]:
    """log L_S of Eq. 8 from logs of the inputs and the coefficients (all broadcast).

    ``log_ls_tilde`` is log L̃_S = log L(N_S, D_S) from the supervised law.
    """
    log_x = np.subtract(np.subtract(log_lt, log_ls_tilde), log_d1)
    # (1 + x^(1/f1))^(−c1 f1) = exp(−c1 f1 · softplus(log x / f1)); softplus via logaddexp.
    log_break = -np.multiply(np.multiply(c1, f1), np.logaddexp(0.0, np.divide(log_x, f1)))
    power = np.logaddexp(np.subtract(log_a, np.multiply(alpha, log_ns)),
                         np.subtract(log_b, np.multiply(beta, log_ds)))
    log_gap = -np.multiply(c0, log_lt) + log_break + np.multiply(gamma, power)
    return np.logaddexp(log_lt, log_gap)


def supervised_log_loss(
    n: ArrayLike, d: ArrayLike, params: SupervisedParams | None = None
) -> FloatOrArray:
    """log L(N, D) of the supervised law (Eq. 1), in log-nats.

    Args:
        n: non-embedding parameters (> 0), any shape broadcasting with ``d``.
        d: training tokens (> 0).
        params: coefficients; default Table 6.

    Raises:
        ConfigError: if N or D is not finite and positive.
    """
    p = params or SupervisedParams()
    out = log_supervised_kernel(
        _positive_log(n, "N (parameters)"), _positive_log(d, "D (tokens)"),
        np.log(p.E), np.log(p.A), np.log(p.B), p.alpha, p.beta, p.gamma,
    )
    return _out(out)


def supervised_loss(
    n: ArrayLike, d: ArrayLike, params: SupervisedParams | None = None
) -> FloatOrArray:
    """L(N, D) = E + (A/N^α + B/D^β)^γ (Eq. 1): cross-entropy in nats of a model with
    N non-embedding parameters trained on D tokens. See :func:`supervised_log_loss`."""
    return _out(np.exp(supervised_log_loss(n, d, params)))


def supervised_loss_infinite_data(
    n: ArrayLike, params: SupervisedParams | None = None
) -> FloatOrArray:
    """L(N) = E + (A·N^−α)^γ (Eq. 35): the D → ∞ limit of Eq. 1, in nats."""
    p = params or SupervisedParams()
    log_n = _positive_log(n, "N (parameters)")
    return _out(np.exp(np.logaddexp(np.log(p.E), p.gamma * (np.log(p.A) - p.alpha * log_n))))


def capacity_gap_factor(
    teacher_loss: ArrayLike,
    student_supervised_loss: ArrayLike,
    params: DistillationParams | None = None,
) -> FloatOrArray:
    """The break factor (1 + (L_T/(L̃_S·d1))^(1/f1))^(−c1·f1) of Eq. 8, in (0, 1].

    ≈ 1 while the teacher is much stronger than the student's own capacity
    (L_T < d1·L̃_S) and falls as (L_T/(L̃_S d1))^(−c1) beyond the transition at
    L_T/L̃_S = d1.
    """
    p = params or DistillationParams()
    log_x = (_positive_log(teacher_loss, "teacher loss") - _positive_log(
        student_supervised_loss, "student supervised loss") - np.log(p.d1))
    return _out(np.exp(-p.c1 * p.f1 * np.logaddexp(0.0, log_x / p.f1)))


def distillation_log_loss(
    student_params: ArrayLike,
    student_tokens: ArrayLike,
    teacher_loss: ArrayLike,
    params: ScalingLawParams | None = None,
    student_supervised_loss: ArrayLike | None = None,
) -> FloatOrArray:
    """log L_S of the distillation law (Eq. 8), in log-nats.

    Args:
        student_params: N_S, student non-embedding parameters (> 0).
        student_tokens: D_S, distillation tokens (> 0).
        teacher_loss: L_T, the teacher's validation cross-entropy in nats (> 0); the
            teacher's size and tokens matter only through it.
        params: both laws' coefficients; default Table 6.
        student_supervised_loss: L̃_S in nats; default L(N_S, D_S) from the supervised law.

    Raises:
        ConfigError: on a non-finite or non-positive input, or a teacher loss at or
            below the supervised law's irreducible loss E (:func:`check_teacher_loss`).
    """
    p = params or ScalingLawParams()
    log_ns = _positive_log(student_params, "N_S (student parameters)")
    log_ds = _positive_log(student_tokens, "D_S (student tokens)")
    log_lt = _positive_log(teacher_loss, "L_T (teacher loss)")
    check_teacher_loss(teacher_loss, p.supervised)
    if student_supervised_loss is None:
        s = p.supervised
        log_tilde = log_supervised_kernel(
            log_ns, log_ds, np.log(s.E), np.log(s.A), np.log(s.B), s.alpha, s.beta, s.gamma
        )
    else:
        log_tilde = _positive_log(student_supervised_loss, "student supervised loss")
    q = p.distillation
    out = log_distillation_kernel(
        log_ns, log_ds, log_lt, log_tilde,
        np.log(q.A), np.log(q.B), q.alpha, q.beta, q.gamma, q.c0, q.c1, q.f1, np.log(q.d1),
    )
    return _out(out)


def distillation_loss(
    student_params: ArrayLike,
    student_tokens: ArrayLike,
    teacher_loss: ArrayLike,
    params: ScalingLawParams | None = None,
    student_supervised_loss: ArrayLike | None = None,
) -> FloatOrArray:
    """L_S(N_S, D_S, L_T) of Eq. 8: the distilled student's cross-entropy in nats
    (measured against the data). Arguments as :func:`distillation_log_loss`."""
    return _out(np.exp(distillation_log_loss(
        student_params, student_tokens, teacher_loss, params, student_supervised_loss
    )))
