"""Global sparsity map: counts, nesting, monotonicity, multiples of 8, GQA groups."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from minidisc.elastic import Importance
from minidisc.elastic.sparsity_map import DEFAULT_GRID, sparsity_map
from minidisc.errors import ConfigError


def _imp(layers=12, heads=12, units=3072, seed=0) -> Importance:
    gen = torch.Generator().manual_seed(seed)
    return Importance(
        torch.rand(layers, heads, generator=gen), torch.rand(layers, units, generator=gen)
    ).normalize()


def _assert_nested(specs: dict) -> None:
    levels = sorted(specs)
    for lo, hi in itertools.pairwise(levels):
        assert specs[hi].fits_in(specs[lo]), (lo, hi)
        assert specs[hi].total_heads() <= specs[lo].total_heads()
        assert specs[hi].total_neurons() <= specs[lo].total_neurons()


def test_default_grid_is_the_reference_levels():
    assert sorted(DEFAULT_GRID) == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]


def test_default_grid_counts_nesting_and_multiples_of_8():
    imp = _imp()
    specs = sparsity_map(imp)
    assert list(specs) == sorted(DEFAULT_GRID)
    _assert_nested(specs)
    assert specs[0.0].heads == (12,) * 12 and specs[0.0].neurons == (3072,) * 12
    for s, spec in specs.items():
        assert spec.sparsity == s
        # heads: exactly round(s·144) pruned (hand: 0.95·144 = 136.8 → 137 pruned, 7 kept)
        assert spec.total_heads() == 144 - int(s * 144 + 0.5)
        assert all(n % 8 == 0 for n in spec.neurons)
        # units: round(s·36864) pruned, then each layer rounded down to a multiple of 8
        target = 36864 - int(s * 36864 + 0.5)
        assert target - 7 * 12 <= spec.total_neurons() <= target
    assert specs[0.95].total_heads() == 7


def test_layer_counts_follow_the_global_ranking():
    # Layer 0 heads all beat layer 1 heads: pruning 50 % removes layer 1 entirely.
    heads = torch.tensor([[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.05]])
    neurons = torch.cat([torch.linspace(1, 2, 16)[None], torch.linspace(0, 0.5, 16)[None]])
    specs = sparsity_map(Importance(heads, neurons), [0.25, 0.5, 0.75])
    assert specs[0.25].heads == (4, 2)  # round(0.25·8) = 2 lowest: 0.05, 0.1
    assert specs[0.5].heads == (4, 0)
    assert specs[0.75].heads == (2, 0)
    # neurons: 8, 16, 24 lowest are all in layer 1 first; 16 kept → 16, 0 …
    assert specs[0.25].neurons == (16, 8)
    assert specs[0.5].neurons == (16, 0)
    assert specs[0.75].neurons == (8, 0)


def test_layer_with_fewer_than_8_units_is_skipped():
    neurons = torch.cat([torch.full((1, 16), 1.0), torch.tensor([[0.9] * 5 + [0.0] * 11])])
    heads = torch.ones(2, 2)
    spec = sparsity_map(Importance(heads, neurons), [0.35])[0.35]  # prune round(11.2) = 11
    assert spec.neurons == (16, 0)  # layer 1 keeps 5 < 8 units → 0


@pytest.mark.parametrize("seed", range(5))
def test_random_grids_are_nested_and_monotone(seed):
    rng = random.Random(seed)
    grid = [round(rng.random() * 0.99, 3) for _ in range(rng.randint(1, 15))]
    layers, heads, units = rng.randint(1, 6), rng.choice([2, 4, 6]), rng.choice([8, 24, 64, 100])
    imp = _imp(layers, heads, units, seed)
    specs = sparsity_map(imp, grid)
    assert list(specs) == sorted(set(grid))
    _assert_nested(specs)
    for s, spec in specs.items():
        assert spec.total_heads() == layers * heads - int(s * layers * heads + 0.5)


def test_gqa_prunes_whole_groups():
    # 2 layers × 4 query heads, groups of 2. Group sums: L0 (1.0, 0.2), L1 (0.6, 0.9).
    heads = torch.tensor([[0.5, 0.5, 0.1, 0.1], [0.3, 0.3, 0.4, 0.5]])
    imp = Importance(heads, torch.rand(2, 16))
    specs = sparsity_map(imp, [0.25, 0.5, 0.75], group_size=2)
    assert specs[0.25].heads == (2, 4)  # round(0.25·4) = 1 group: L0's 0.2 group
    assert specs[0.5].heads == (2, 2)  # + L1's 0.6 group
    assert specs[0.75].heads == (2, 0)  # + L1's 0.9 group (L0's 1.0 group is the best)
    assert all(h % 2 == 0 for s in specs.values() for h in s.heads)


def test_bad_levels_raise():
    with pytest.raises(ConfigError):
        sparsity_map(_imp(2, 2, 16), [0.5, 1.0])
    with pytest.raises(ConfigError):
        sparsity_map(_imp(2, 2, 16), [90])
