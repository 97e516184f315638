"""The supervised (Eq. 1) and distillation (Eq. 8) laws: values, limits, stability."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from minidisc.errors import ConfigError
from minidisc.scaling.laws import (
    capacity_gap_factor,
    distillation_loss,
    supervised_loss,
    supervised_loss_infinite_data,
)
from minidisc.scaling.params import DistillationParams, ScalingLawParams, SupervisedParams

# Table 6 of Busbridge et al. (2025), typed in independently of the package defaults.
E, A, B, ALPHA, BETA, GAMMA = 1.220, 3355, 18186, 0.408, 0.431, 0.452
A2, B2, ALPHA2, BETA2, GAMMA2 = 2243, 24181, 0.321, 0.637, 0.764
C0, C1, F1, D1 = 2.549, 522.6, 0.090, 1.315


def naive_supervised(n, d):
    return E + (A / n**ALPHA + B / d**BETA) ** GAMMA


def naive_distillation(n, d, lt):
    lt_tilde = naive_supervised(n, d)
    brk = (1 + (lt / (lt_tilde * D1)) ** (1 / F1)) ** (-C1 * F1)
    return lt + lt ** (-C0) * brk * (A2 / n**ALPHA2 + B2 / d**BETA2) ** GAMMA2


def test_supervised_law_matches_direct_formula():
    for n, d in [(1e8, 2e9), (1e9, 2e10), (7.75e9, 5.12e11)]:
        assert supervised_loss(n, d) == pytest.approx(naive_supervised(n, d), rel=1e-12)
    assert supervised_loss_infinite_data(1e9) == pytest.approx(E + (A * 1e9**-ALPHA) ** GAMMA)


def test_distillation_law_matches_direct_formula_where_it_is_safe():
    for n, d, lt in [(1e8, 2e9, 2.6), (1e9, 2e10, 2.0), (1e9, 2e10, 2.3), (3e9, 1e11, 2.1)]:
        assert distillation_loss(n, d, lt) == pytest.approx(naive_distillation(n, d, lt), rel=1e-10)


def test_table_7_case():
    # 546M student distilled from a 1.82B teacher, both at 20 tokens/param: CE 2.42.
    n_s, n_t = 545_914_880, 1_820_786_688  # the paper's 546M and 1.82B architectures
    l_t = supervised_loss(n_t, 20 * n_t)
    assert distillation_loss(n_s, 20 * n_s, l_t) == pytest.approx(2.42, abs=0.01)


def test_student_approaches_teacher_with_unlimited_student_resources():
    l_t = 2.0
    gaps = [distillation_loss(n, n * 20, l_t) - l_t for n in (1e8, 1e9, 1e10, 1e12, 1e15)]
    assert gaps[0] > 0.1
    assert all(g >= 0 for g in gaps)
    assert all(a > b or b == 0 for a, b in itertools.pairwise(gaps))  # shrinks to zero
    assert gaps[-1] < 1e-9
    # The same with the data alone growing: only the N_S term of the power law is left.
    n = 1e9
    p = DistillationParams()
    lt_tilde = supervised_loss_infinite_data(n)
    floor = l_t ** (-C0) * (1 + (l_t / (lt_tilde * D1)) ** (1 / F1)) ** (-C1 * F1) * (
        A2 / n**ALPHA2) ** GAMMA2
    assert distillation_loss(n, 1e30, l_t, ScalingLawParams(distillation=p)) - l_t == (
        pytest.approx(floor, rel=1e-6))


def test_student_follows_a_weak_teacher():
    # L_T → ∞ (far beyond the capacity gap): L_S/L_T → 1.
    n, d = 1e9, 2e10
    for l_t in (10.0, 100.0, 1e6):
        assert distillation_loss(n, d, l_t) / l_t == pytest.approx(1.0, abs=1e-9)


def test_no_overflow_for_extreme_teacher_loss():
    # Naively (L_T/(L̃_S d1))^(1/f1) overflows a float here; the log-space form must not.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = distillation_loss(np.array([1e9, 1e9]), 2e10, np.array([1e40, E * (1 + 1e-12)]))
    assert np.all(np.isfinite(out))
    assert out[0] == pytest.approx(1e40, rel=1e-12)


@pytest.mark.parametrize("teacher_loss", [0.5, E, np.array([2.0, 1.0])])
def test_teacher_loss_at_or_below_the_irreducible_loss_is_refused(teacher_loss):
    # No model reaches L <= E under Eq. 1; Eq. 8 would "predict" 13.7 nats for L_T = 0.5.
    with pytest.raises(ConfigError, match=r"irreducible loss E = 1\.22 nats"):
        distillation_loss(1e9, 2e10, teacher_loss)
    # The bound is the E of the parameters in use (e.g. a fitted law), not the paper's.
    low_e = ScalingLawParams(SupervisedParams(E=0.2))
    assert np.all(np.isfinite(distillation_loss(1e9, 2e10, teacher_loss, low_e)))


def test_candidate_teachers_below_the_irreducible_loss_are_refused_by_name():
    from minidisc.scaling.plan import CandidateTeacher, find_crossover, plan_with_teachers

    teachers = [CandidateTeacher(7.75e9, 1.95, "7.75B"), CandidateTeacher(1e10, 0.3, "T")]
    with pytest.raises(ConfigError, match=r"teacher T = 0\.3 nats .* E = 1\.22"):
        plan_with_teachers(1e9, 1e21, teachers)
    with pytest.raises(ConfigError, match=r"E = 1\.22"):
        find_crossover(1e9, teacher=teachers[1])


def test_capacity_gap_transition_sits_at_d1():
    p = DistillationParams()
    lt_tilde = 2.5
    # At L_T/L̃_S = d1 the break factor is exactly 2^(−c1·f1) ...
    assert capacity_gap_factor(D1 * lt_tilde, lt_tilde, p) == pytest.approx(2 ** (-C1 * F1))
    # ... and its log-log slope is −c1/2: halfway between 0 (strong teachers, factor ≈ 1)
    # and −c1 (weak teachers, factor ∝ (L_T/L̃_S)^(−c1)).
    def slope(ratio, h=1e-6):
        lo = math.log(capacity_gap_factor(ratio * math.exp(-h) * lt_tilde, lt_tilde, p))
        hi = math.log(capacity_gap_factor(ratio * math.exp(h) * lt_tilde, lt_tilde, p))
        return (hi - lo) / (2 * h)

    assert slope(D1) == pytest.approx(-C1 / 2, rel=1e-5)
    assert slope(0.3 * D1) == pytest.approx(0.0, abs=1e-2)
    assert slope(2.0 * D1) == pytest.approx(-C1, rel=1e-3)


def test_capacity_gap_makes_better_teachers_worse_for_small_students():
    # L_S(L_T) is U-shaped: a small student learns worse from a much stronger teacher
    # (L_T = 0.45·L̃_S = 1.30 nats, just above E) than from a moderately stronger one
    # (0.65·L̃_S), and worse again from a teacher weaker than itself.
    n, d = 1.43e8, 20 * 1.43e8
    lt_tilde = supervised_loss(n, d)
    strong, moderate, weak = distillation_loss(n, d, np.array([0.45, 0.65, 1.2]) * lt_tilde)
    assert moderate < lt_tilde
    assert strong > moderate and weak > moderate


def test_custom_params_and_given_student_supervised_loss():
    p = ScalingLawParams(SupervisedParams(E=1.0), DistillationParams(c0=0.0))
    assert supervised_loss(1e9, 1e10, p.supervised) < supervised_loss(1e9, 1e10)
    lt_tilde = 2.4
    out = distillation_loss(1e9, 1e10, 2.0, p, student_supervised_loss=lt_tilde)
    brk = (1 + (2.0 / (lt_tilde * D1)) ** (1 / F1)) ** (-C1 * F1)
    expected = 2.0 + brk * (A2 / 1e9**ALPHA2 + B2 / 1e10**BETA2) ** GAMMA2
    assert out == pytest.approx(expected, rel=1e-10)


def test_broadcasting_and_scalars():
    out = supervised_loss(np.array([[1e8], [1e9]]), np.array([1e9, 1e10, 1e11]))
    assert out.shape == (2, 3)
    assert isinstance(supervised_loss(1e9, 1e10), float)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_invalid_inputs_raise(bad):
    with pytest.raises(ConfigError):
        supervised_loss(bad, 1e9)
    with pytest.raises(ConfigError):
        distillation_loss(1e9, 1e10, bad)
