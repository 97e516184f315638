"""Compute-optimal planning (Eq. 10), fixed teachers (Eq. 27) and the crossover."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from minidisc.errors import ConfigError
from minidisc.scaling.compute import SCENARIOS, forward_flops_per_token
from minidisc.scaling.laws import distillation_loss, supervised_loss
from minidisc.scaling.plan import (
    CandidateTeacher,
    compute_optimal_teacher,
    crossover_status,
    find_crossover,
    locate_crossings,
    plan_distillation,
    plan_with_teachers,
    supervised_baseline,
)


def dense_grid_optimum(n_s, c, scenario, k=300):
    """Independent brute force: every (N_T, D_T) on a k×k log grid in [1e6, 1e17],
    D_S from the budget equation (Eq. 9), keep feasible points."""
    s = SCENARIOS[scenario]
    n_t, d_t = np.meshgrid(np.geomspace(1e6, 1e17, k), np.geomspace(1e6, 1e17, k))
    n_t, d_t = n_t.ravel(), d_t.ravel()
    fs, ft = forward_flops_per_token(n_s), forward_flops_per_token(n_t)
    d_s = (c - s.delta_pretrain * 3 * ft * d_t) / (3 * fs + s.delta_logits * ft)
    ok = (d_s >= 1e6) & (d_s <= 1e17)
    l_s = distillation_loss(n_s, d_s[ok], supervised_loss(n_t[ok], d_t[ok]))
    return float(l_s.min())


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("n_s,c", [(1e8, 1e19), (1e9, 1e21), (7e9, 1e23)])
def test_planner_at_least_as_good_as_dense_grid(scenario, n_s, c):
    plan = plan_distillation(n_s, c, scenario)
    assert plan.student_loss <= dense_grid_optimum(n_s, c, scenario) * (1 + 1e-9)
    # The plan spends the budget and its numbers are self-consistent.
    assert plan.flops["total"] == pytest.approx(c, rel=1e-6)
    assert plan.teacher_loss == pytest.approx(
        supervised_loss(plan.teacher_params, plan.teacher_tokens), rel=1e-6)
    assert plan.student_loss == pytest.approx(
        distillation_loss(n_s, plan.student_tokens, plan.teacher_loss), rel=1e-9)


def test_supervised_baseline_uses_whole_budget():
    tokens, loss = supervised_baseline(1e9, 1e21)
    assert tokens == pytest.approx(1e21 / (3 * forward_flops_per_token(1e9)))
    assert loss == pytest.approx(supervised_loss(1e9, tokens))


def test_best_case_teacher_is_the_cheapest_reaching_its_loss():
    target = 2.1
    n, d = compute_optimal_teacher(target)
    assert supervised_loss(n, d) == pytest.approx(target, rel=1e-9)
    cost = forward_flops_per_token(n) * d
    for other_n in (0.8 * n, 1.25 * n):  # neighbours on the same level set cost more
        rest = (target - 1.22) ** (1 / 0.452) - 3355 / other_n**0.408
        other_d = (18186 / rest) ** (1 / 0.431)
        assert supervised_loss(other_n, other_d) == pytest.approx(target, rel=1e-9)
        assert forward_flops_per_token(other_n) * other_d > cost
    plan = plan_distillation(1e9, 1e21, "best-case")
    assert not plan.teacher_determined and plan.note


def test_fixed_teachers_eq_27():
    teachers = [CandidateTeacher(7.75e9, 1.95, "big"), CandidateTeacher(1.82e9, 2.2, "mid"),
                CandidateTeacher(5.46e8, 2.45, "small")]
    c = 1e21
    choice = plan_with_teachers(1e9, c, teachers, include_inference=True)
    fs = forward_flops_per_token(1e9)
    for t, opt in zip(teachers, choice.options):
        assert opt.student_tokens == pytest.approx(c / (3 * fs + forward_flops_per_token(t.params)))
        assert opt.student_loss == pytest.approx(distillation_loss(1e9, opt.student_tokens, t.loss))
    assert choice.best == int(np.argmin([o.student_loss for o in choice.options]))
    free = plan_with_teachers(1e9, c, teachers, include_inference=False)
    assert all(o.student_tokens == pytest.approx(c / (3 * fs)) for o in free.options)
    assert free.options[0].student_loss < choice.options[0].student_loss


def test_candidate_teacher_parsing():
    assert CandidateTeacher.parse("7b=7.75e9:1.95") == CandidateTeacher(7.75e9, 1.95, "7b")
    assert CandidateTeacher.parse("1e9:2.3").params == 1e9
    for bad in ("7.75e9", "a:b", "1e9:2:3", "1e9:-2"):
        with pytest.raises(ConfigError):
            CandidateTeacher.parse(bad)


def test_crossover_separates_distillation_and_supervised():
    cr = find_crossover(1e9, "best-case", n_points=9)
    assert cr.status == "crossover"
    (crossing,) = cr.crossings
    assert crossing.direction == "to-supervised" and crossing.compute == cr.compute
    assert [w for _, _, w in cr.segments()] == ["distillation", "supervised"]
    below = plan_distillation(1e9, cr.compute / 1.5, "best-case")
    above = plan_distillation(1e9, cr.compute * 1.5, "best-case")
    assert below.student_loss < below.supervised_loss
    assert above.student_loss >= above.supervised_loss
    at = plan_distillation(1e9, cr.compute, "best-case")
    assert at.student_loss == pytest.approx(at.supervised_loss, rel=1e-4)


def test_crossover_grows_with_student_size():
    # The paper: distillation wins up to a compute level that grows with student size.
    small = find_crossover(1e9, "best-case", n_points=7).compute
    large = find_crossover(3e9, "best-case", n_points=7).compute
    assert small is not None and large is not None and large > small


def test_crossover_with_fixed_teacher_and_statuses():
    teacher = CandidateTeacher(7.75e9, 1.95)
    cr = find_crossover(1e9, teacher=teacher, n_points=9, include_inference=False)
    assert cr.scenario == "fixed-teacher" and cr.status == "crossover"
    tokens = cr.compute / (3 * forward_flops_per_token(1e9))
    assert distillation_loss(1e9, tokens, 1.95) == pytest.approx(supervised_loss(1e9, tokens),
                                                                 rel=1e-4)
    # A teacher worse than anything the student could reach never helps.
    hopeless = find_crossover(1e9, teacher=CandidateTeacher(1e8, 4.0), n_points=5)
    assert hopeless.status == "supervised-always-better" and hopeless.compute is None


def test_invalid_budgets():
    with pytest.raises(ConfigError, match="too small"):
        plan_distillation(1e9, 1e10)
    with pytest.raises(ConfigError, match="unknown scenario"):
        plan_distillation(1e9, 1e21, "free-lunch")
    with pytest.raises(ConfigError):
        find_crossover(1e9, min_compute=1e22, max_compute=1e20)


# --- crossings of constructed gap functions: gap(C) has the sign of L_S* - L_sup -------
GRID = list(np.geomspace(1e18, 1e22, 9))


def _scan(gap):
    gaps = [gap(c) for c in GRID]
    crossings = locate_crossings(GRID, gaps, gap)
    return crossover_status(gaps, crossings), crossings


def test_single_crossover_to_supervised():
    status, crossings = _scan(lambda c: math.log(c / 3e19))
    assert status == "crossover"
    assert [x.direction for x in crossings] == ["to-supervised"]
    assert crossings[0].compute == pytest.approx(3e19, rel=1e-3)


def test_distillation_winning_only_at_the_top_is_a_reverse_crossover():
    # The audit's case: supervised better at low compute, distillation at the top.
    status, crossings = _scan(lambda c: math.log(2e21 / c))
    assert status == "reverse-crossover"
    assert [x.direction for x in crossings] == ["to-distillation"]
    assert crossings[0].compute == pytest.approx(2e21, rel=1e-3)


def test_every_sign_change_is_reported_with_its_direction():
    # distillation better below 1e19, supervised in between, distillation again above 1e21.
    roots = (1e19, 1e21)
    status, crossings = _scan(lambda c: -math.log(c / roots[0]) * math.log(c / roots[1]))
    assert status == "multiple-crossovers"
    assert [x.direction for x in crossings] == ["to-supervised", "to-distillation"]
    assert [x.compute for x in crossings] == pytest.approx(list(roots), rel=1e-3)
    # Three changes, ending on supervised, are not called a plain crossover either.
    three = (3e18, 1e20, 2e21)
    status, crossings = _scan(lambda c: math.prod(math.log(c / r) for r in three))
    assert status == "multiple-crossovers"
    assert [x.direction for x in crossings] == ["to-supervised", "to-distillation",
                                                "to-supervised"]
    # 1e20 is a scan point (a tie there): located all the same.
    assert [x.compute for x in crossings] == pytest.approx(list(three), rel=1e-3)


def test_no_sign_change():
    assert _scan(lambda c: -0.1) == ("distillation-always-better", [])
    assert _scan(lambda c: 0.1) == ("supervised-always-better", [])
    assert _scan(lambda c: 0.0)[0] == "supervised-always-better"  # a tie is not a win


def test_find_crossover_reports_all_crossings(monkeypatch):
    # Constructed losses through the real scan: distil, supervised, distil again.
    roots = (1e19, 1e21)

    def fake(n_s, c, teachers, include_inference, params, flops_model):
        gap = -math.log(c / roots[0]) * math.log(c / roots[1])
        option = SimpleNamespace(student_loss=3.0 * math.exp(0.01 * gap))
        return SimpleNamespace(options=[option], supervised_loss=3.0)

    monkeypatch.setattr("minidisc.scaling.plan.plan_with_teachers", fake)
    cr = find_crossover(1e9, teacher=CandidateTeacher(1e10, 2.0), min_compute=1e18,
                        max_compute=1e22, n_points=9)
    assert cr.status == "multiple-crossovers" and cr.compute is None
    assert [x.compute for x in cr.crossings] == pytest.approx(list(roots), rel=1e-3)
    segments = cr.to_dict()["segments"]
    assert [s["better"] for s in segments] == ["distillation", "supervised", "distillation"]
    assert segments[0]["from"] == pytest.approx(1e18) and segments[-1]["to"] == pytest.approx(1e22)
    assert segments[1]["from"] == pytest.approx(roots[0], rel=1e-3)


def test_locate_crossings_checks_its_inputs():
    with pytest.raises(ConfigError):
        locate_crossings([1e20, 1e19], [-1.0, 1.0], lambda c: 0.0)
    with pytest.raises(ConfigError):
        locate_crossings([1e19, 1e20], [-1.0], lambda c: 0.0)
