"""λ-tradeoff selection, including the clip-to-target case and the reference's defects."""

import math

import pytest

from minidisc.errors import ConfigError
from minidisc.training.selection import select_assistant, tradeoff
from minidisc.training.tracker import CandidateTracker


def test_tradeoff_is_metric_plus_lambda_times_sparsity():
    assert tradeoff(0.8, 0.5, 0.2) == pytest.approx(0.9)


def test_selects_argmax_of_tradeoff():
    # t(.5)=.90+.10=1.00, t(.7)=.87+.14=1.01, t(.9)=.80+.18=0.98
    sel = select_assistant({0.5: 0.90, 0.7: 0.87, 0.9: 0.80}, lam=0.2, target=0.9)
    assert sel.sparsity == 0.7 and not sel.clipped
    assert sel.score == pytest.approx(1.01)


def test_fractional_lambda_changes_the_choice():
    # λ is a real number (the reference parsed it as int, so only the default worked)
    best = {0.5: 0.90, 0.7: 0.87, 0.9: 0.80}
    assert select_assistant(best, lam=0.0, target=0.9).sparsity == 0.5
    assert select_assistant(best, lam=0.75, target=0.9).sparsity == 0.9


def test_choice_beyond_target_is_clipped_and_keeps_its_lambda_bonus():
    # t(.95)=.85+.19=1.04 wins but lies beyond the target .9 → target, scored m+λ·target
    sel = select_assistant({0.5: 0.80, 0.9: 0.84, 0.95: 0.85}, lam=0.2, target=0.9)
    assert sel.sparsity == 0.9 and sel.clipped
    assert sel.score == pytest.approx(0.84 + 0.2 * 0.9)


def test_sparsities_compare_as_numbers_not_strings():
    # as strings "0.85" < "0.9" but also "0.1" < "0.05" would break; check numerically
    sel = select_assistant({0.05: 0.5, 0.1: 0.5}, lam=1.0, target=0.1)
    assert sel.sparsity == 0.1


def test_final_iteration_selects_target():
    sel = select_assistant({0.5: 0.99, 0.9: 0.10}, lam=0.2, target=0.9, final=True)
    assert sel.sparsity == 0.9


@pytest.mark.parametrize("lam", [-0.1, math.inf, math.nan])
def test_invalid_lambda(lam):
    with pytest.raises(ConfigError, match="λ"):
        select_assistant({0.9: 0.5}, lam=lam, target=0.9)


def test_missing_target():
    with pytest.raises(ConfigError, match="target"):
        select_assistant({0.5: 0.5}, lam=0.2, target=0.9)


def test_tracker_keeps_running_best_and_snapshots_at_best():
    tracker = CandidateTracker([0.5, 0.9], lam=0.2, target=0.9)
    taken = []
    snap = lambda s: taken.append(s) or f"weights@{s}"
    assert tracker.update(10, {0.5: 0.80, 0.9: 0.70}, snap)  # first evaluation improves
    assert not tracker.update(20, {0.5: 0.70, 0.9: 0.60}, snap)  # worse: no new best
    assert tracker.best == {0.5: 0.80, 0.9: 0.70}
    assert taken == [0.5, 0.9]
    assert tracker.update(30, {0.5: 0.79, 0.9: 0.75}, snap)  # .9 improves: .75+.18 > .80+.10
    assert tracker.selection.sparsity == 0.9
    assert tracker.chosen() == "weights@0.9" and tracker.best_step[0.9] == 30
    summary = tracker.summary()
    assert summary.selected == 0.9 and len(summary.history) == 3
