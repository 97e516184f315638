"""Depth layer shapes: every sparsity level reached by removing whole layers only.

``layer_shapes="depth"`` (:mod:`minidisc.elastic.sparsity_map`) makes every candidate a
*shallower* copy of the teacher at full width: level ``s`` of an ``L``-layer model removes
``n = ⌈s·L⌉`` layers, the fewest whose share of the layers is at least ``s``, taking them
in order of least block importance (:meth:`Importance.weakest_layers`: the cosine
distance between a layer's input and output; ShortGPT, Men et al. 2024, arXiv
2403.03853). The kept layers keep every head, FFN unit and hidden channel.

Why a map of its own: ``--drop-layers N`` cuts one fixed depth and lets the width
shrink for the rest (Minitron's depth pruning, a single student). Here depth *is* the
candidate axis, so the sandwich trains every depth of the grid at once and the
λ-tradeoff picks the teacher assistant among them: MiniDisc on the depth axis. On
SmolLM2-135M, after a CPU-sized recovery, the depth-pruned 50 % student beat every
width-pruned one by about 2× in perplexity (docs/results-lm.md), which asks whether an
assistant helps there too.

Sparsity is counted as everywhere (the fraction of non-embedding parameters removed,
:func:`minidisc.compute.flops.non_embedding_params`). Every layer of a family has the
same size, so removing ``n`` layers removes ``n/L`` of the layers' parameters; the
final norm, which no layer holds, stays, so the counted sparsity is ``n/L`` less its
share (on SmolLM2, 30 layers: 15 layers are 49.9997 %, not 50 %). Counting it against
the level would make the 50 % level remove a 16th layer (53.3 %) for 576 parameters;
the layer count is the rule, and the report gives the counted sparsity. A level is
thus at or up to one layer (1/L, 3.3 % on SmolLM2) above the asked one, less that share.

Nesting: one fixed order of the layers serves every level (each level removes a prefix
of it), so a sparser level's spec fits in a denser one's, as the sandwich needs.

The student is an ordinary config of its architecture with fewer layers: empty layers
are removed on export (:mod:`minidisc.elastic.extract`); for a family whose empty layer
is not the identity (BERT) the specs name the removed layers (:attr:`SubnetSpec.dropped`).
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from minidisc.elastic.importance import Importance
from minidisc.elastic.levels import at_or_above, check_levels
from minidisc.elastic.spec import LAYERS, SubnetSpec
from minidisc.elastic.uniform_map import uniform_shape
from minidisc.errors import ConfigError


def depth_spec(config: Any, importance: Importance, n: int) -> SubnetSpec:
    """The teacher with its ``n`` layers of least block importance removed, full width.

    Raises:
        ConfigError: the family cannot drop layers, ``importance`` has no layer scores, or
            ``n`` not in ``[0, L)``.
    """
    from minidisc.elastic.families import family_for

    family = family_for(config)
    if LAYERS not in family.pruned_axes:
        raise ConfigError(f"the {family.name} family cannot drop whole layers; use --layer-shapes uniform or global")
    return without_layers(config, importance.weakest_layers(n))


def without_layers(config: Any, dropped: tuple[int, ...]) -> SubnetSpec:
    """The full model at full width with the layers ``dropped`` emptied: the uniform map's
    shape at keep fraction 1, as ``--drop-layers`` builds it (also what
    :func:`minidisc.schedules.lm_compare_config.depth_cut` counts)."""
    from minidisc.elastic.families import family_for

    return uniform_shape(config, Fraction(1), axes=family_for(config).pruned_axes, cut_hidden=False,
                         dropped=dropped)


def layers_for(sparsity: float, num_layers: int) -> int:
    """``⌈s·L⌉`` at the precision of levels: the fewest of ``num_layers`` layers whose
    share is at least the level ``sparsity`` (the module doc)."""
    return next(n for n in range(num_layers + 1) if at_or_above(n / num_layers, sparsity))


def depth_sparsity_map(config: Any, importance: Importance, grid: Iterable[float]) -> dict[float, SubnetSpec]:
    """``{level: SubnetSpec}``: per level ``s`` of ``grid``, the teacher with its
    ``⌈s·L⌉`` layers of least block importance removed (:func:`depth_spec`).

    Args:
        config: the full (reordered) model's config.
        importance: block importance in ``importance.layers`` (one score per layer).
        grid: sparsity levels, fractions in [0, 1).

    Returns:
        Levels ascending; ``spec.sparsity`` is the level; nested across levels.

    Raises:
        ConfigError: a level outside [0, 1); a level that would remove every layer (one
            always stays); a family that cannot drop layers; no layer scores.
    """
    from minidisc.elastic.families import family_for

    num_layers = family_for(config).geometry(config).num_layers
    levels = check_depth_levels(num_layers, grid)
    return {s: depth_spec(config, importance, layers_for(s, num_layers)).with_sparsity(s) for s in levels}


def check_depth_levels(num_layers: int, grid: Iterable[float]) -> tuple[float, ...]:
    """``grid`` as levels (:func:`check_levels`), each reachable by removing layers of an
    ``num_layers``-layer model: checked before a run starts, from the teacher's config.

    Raises:
        ConfigError: a level outside [0, 1), or one that would remove every layer.
    """
    levels = check_levels(grid)
    for s in levels:
        if layers_for(s, num_layers) >= num_layers:
            raise ConfigError(
                f"no depth cut reaches sparsity {s:g}: one layer of {num_layers} always stays (at most "
                f"{(num_layers - 1) / num_layers:.4f}); lower the level or use --layer-shapes uniform"
            )
    return levels
