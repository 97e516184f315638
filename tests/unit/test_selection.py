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


# --- candidates at their constant-prediction score (a collapse floor) ---------------------

# Seed 776 of the MRPC sandwich-rule check (docs/results.md): 80 % and sparser sat at the
# constant "paraphrase" score 74.80; λ = 0.2 made the collapsed target win (92.80 > 92.11).
MRPC_776 = {0.5: 0.7955, 0.6: 0.7971, 0.7: 0.7811, 0.8: 0.7532, 0.85: 0.7566, 0.9: 0.7480, 0.95: 0.7480}
MRPC_FLOOR = 0.7480 + 0.01  # constant + one point (5 % of the teacher's 79.09 margin is less)


def test_collapsed_candidates_are_passed_over_when_a_floor_is_given():
    from minidisc.evaluation.constant import collapse_floor

    assert collapse_floor(0.7480, 0.7909) == pytest.approx(MRPC_FLOOR)
    assert select_assistant(MRPC_776, lam=0.2, target=0.9).sparsity == 0.9  # the paper's argmax
    sel = select_assistant(MRPC_776, lam=0.2, target=0.9, floor=MRPC_FLOOR)
    assert sel.sparsity == 0.7 and not sel.clipped
    assert sel.score == pytest.approx(0.7811 + 0.2 * 0.7)
    # those that would have won; the 80 % candidate (91.32 < 92.11) would not have
    assert sel.passed_over == (0.85, 0.9, 0.95)
    assert sel.tradeoffs[0.9] == pytest.approx(0.748 + 0.18)  # every tradeoff still reported


def test_a_floor_below_every_candidate_changes_nothing():
    plain = select_assistant(MRPC_776, lam=0.2, target=0.9)
    assert select_assistant(MRPC_776, lam=0.2, target=0.9, floor=0.5) == plain


def test_when_every_candidate_sits_at_the_floor_the_plain_argmax_stands():
    collapsed = {0.5: 0.748, 0.7: 0.748, 0.9: 0.748}
    sel = select_assistant(collapsed, lam=0.2, target=0.9, floor=MRPC_FLOOR)
    assert sel.sparsity == 0.9 and sel.passed_over == ()


def test_the_final_iteration_ignores_the_floor():
    assert select_assistant(MRPC_776, lam=0.2, target=0.9, final=True, floor=MRPC_FLOOR).sparsity == 0.9


def test_tracker_passes_over_collapsed_candidates_and_records_them():
    from minidisc.training.records import CandidatesRecord

    tracker = CandidateTracker(sorted(MRPC_776), lam=0.2, target=0.9, floor=MRPC_FLOOR)
    tracker.update(10, MRPC_776, lambda s: f"weights@{s}")
    assert tracker.selection.sparsity == 0.7 and tracker.chosen() == "weights@0.7"
    record = tracker.summary()
    assert record.selected == 0.7 and record.passed_over == (0.85, 0.9, 0.95)
    assert CandidatesRecord.from_dict(record.to_dict()) == record
    plain = CandidateTracker(sorted(MRPC_776), lam=0.2, target=0.9)
    plain.update(10, MRPC_776, lambda s: s)
    assert "passed_over" not in plain.summary().to_dict()  # older records keep their form
