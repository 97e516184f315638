"""One notion of a sparsity level (rounding, equality, lookup, grid checks) for every
module, and MaxiDisc's default candidates = MiniDisc's."""

from __future__ import annotations

import pytest

from minidisc.config import CompressConfig
from minidisc.elastic.levels import (
    at_or_above,
    check_levels,
    find_level,
    level,
    level_key,
    same_level,
)
from minidisc.errors import ConfigError
from minidisc.schedules.config import MaxiDiscConfig


def test_level_lookup_tolerates_float_noise_only():
    levels = [0.5, 0.85, 0.9]
    assert find_level(levels, 0.1 + 0.75) == 0.85  # 0.8500000000000001
    assert level_key(levels, 0.9 + 1e-8) == 0.9
    assert find_level(levels, 0.86) is None
    assert same_level(0.3, 0.1 * 3) and not same_level(0.3, 0.31)
    with pytest.raises(ConfigError, match="0.86 is not among the levels"):
        level_key(levels, 0.86)


def test_levels_round_to_six_decimals_and_distinct_levels_stay_distinct():
    assert level(0.1 + 0.75) == 0.85 and level("0.9") == 0.9
    assert level(0.1234564) == 0.123456
    # one unit in the sixth decimal apart: two levels, whichever way the float error falls
    assert not same_level(0.100001, 0.1) and not same_level(0.500001, 0.5)
    assert find_level([0.1, 0.100001], 0.100001) == 0.100001
    assert at_or_above(0.5, 0.5 - 1e-12) and at_or_above(0.5, 0.5) and not at_or_above(0.4, 0.5)


def test_grid_check_sorts_deduplicates_and_refuses_out_of_range_levels():
    assert check_levels([0.9, 0.5, 0.1 + 0.75, 0.85, 0.0]) == (0.0, 0.5, 0.85, 0.9)
    with pytest.raises(ConfigError, match="empty"):
        check_levels([])
    for bad in (1.0, -0.1, 0.9999999, float("nan")):
        with pytest.raises(ConfigError, match=r"fractions in \[0, 1\)"):
            check_levels([0.5, bad])


@pytest.mark.parametrize(
    ("grid", "target", "truncation"),
    [
        ((0.0, 0.1, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95), 0.9, 0.5),
        ((0.0, 0.25, 0.5, 0.75), 0.75, 0.25),
        ((0.0, 0.5, 0.9), 0.8, 0.4),  # the target is not on the grid
        ((0.0, 0.5, 0.6, 0.9), 0.95, 0.6),
    ],
)
def test_maxidisc_default_candidates_are_minidiscs_first_iteration(grid, target, truncation):
    maxi = MaxiDiscConfig(grid=grid, target_sparsity=target, truncation=truncation)
    mini = CompressConfig(grid=grid, target_sparsity=target, truncation=truncation)
    below = [s for s in mini.candidate_levels() if s < target and not same_level(s, target)]
    assert maxi.assistant_levels() == below and below
    assert all(truncation <= s < target for s in maxi.assistant_levels())


def test_explicit_candidates_ignore_truncation_but_not_the_target():
    maxi = MaxiDiscConfig(target_sparsity=0.6, truncation=0.5, candidates=(0.2, 0.7, 0.4))
    assert maxi.assistant_levels() == [0.2, 0.4]
