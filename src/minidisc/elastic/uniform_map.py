"""Uniform layer shapes: per sparsity level, one sub-network with the same sizes in every layer.

A *uniform* sub-network keeps the same query heads and FFN units in every layer (and one
residual-stream width), so an extracted student is an ordinary config of its
architecture (for LLaMA: ``num_attention_heads``, ``num_key_value_heads``,
``intermediate_size``, ``hidden_size``, the teacher's ``head_dim``) and loads with plain
``transformers`` -- the layer shapes of the Minitron students (Muralidharan et al. 2024,
arXiv 2407.14679) and of every released LLaMA. :mod:`minidisc.elastic.sparsity_map`
offers it beside MiniDisc's global map (per-layer sizes) as ``layer_shapes="uniform"``.

Sparsity is measured as everywhere in minidisc: the fraction of non-embedding parameters
removed, ``1 − non_embedding_params(spec) / non_embedding_params(full)``
(:func:`minidisc.compute.flops.non_embedding_params`, the single definition).

The policy: one *keep fraction* ``r`` in [0, 1] sets all three sizes, and a level gets the
first shape, in decreasing ``r``, whose sub-network is at least that sparse -- **at or just above** the
level, never below it. The excess is less than one step of the path
(:func:`uniform_path`, one size changing per step): on SmolLM2-135M about 0.35 % of the
non-embedding parameters for 8 FFN units, 1 % for 9 hidden channels, and up to 5 % where
a KV group goes (its 70 % level lands at 73.7 %, the first shape without a third of the
attention); its other default-grid levels land within 1 % (50 % → 50.8 %).

* FFN units ``= r·I`` rounded down to a multiple of 8
  (:data:`~minidisc.elastic.sparsity_map.NEURON_MULTIPLE`), at least 8 (or the full
  size when it is smaller), the full size at ``r = 1``;
* hidden width ``= r·d`` rounded down to a multiple of the kept query heads (at least
  one per head), the full width at ``r = 1``: ``LlamaConfig`` refuses to save a
  ``hidden_size`` that is not a multiple of ``num_attention_heads``, even with an
  explicit ``head_dim`` (SmolLM2: multiples of 9, steps of 1.6 % of the width); along
  the path the width never grows back when the heads drop;
* key/value groups (whole groups, as the GQA rule of :mod:`minidisc.elastic.reorder`):
  all of them while ``r ≥ 1/2`` (:data:`HEADS_WHOLE_DOWN_TO`), below it
  ``floor(2r · groups)``, at least one.

Why. Minitron found that pruning the FFN and the embedding channels costs less than
pruning attention heads (Muralidharan et al. 2024; Sreenivas et al. 2024, arXiv
2408.11796), and its width-pruned Llama-3.1-Minitron-4B keeps all 32 heads while its
hidden width goes 4096 → 3072 and its FFN 14336 → 9216. Under grouped-query attention
the head axis is also coarse: SmolLM2-135M has 9 query heads in 3 KV groups, so one step
removes a third of the attention, about 8 % of the non-embedding parameters at once. So
heads stay whole while hidden and FFN keep at least half their size (up to about 69 %
sparsity on SmolLM2, beyond the 50 % target of issue 11); below, the attention would
hold a growing share of what is left (40 % at ``r = 1/2``, more below) and be more than
twice as wide as the residual stream it reads, so the groups shrink with ``2r``.
Every size is a non-increasing function of ``r``, hence sparsity is monotone in ``r``
and the levels are **nested** (each level's spec fits in the one below); a level added
later (``extra_levels``) gets the same spec it would have had in the first map.

Without hidden-channel scores (``Importance.hidden is None``) or for a family that does
not prune the width, the width stays whole and only FFN and heads are cut; a level that
then cannot be reached raises.

Depth (``drop_layers = N``, Minitron's depth pruning): the ``N`` layers of lowest block
importance (:meth:`Importance.weakest_layers`) keep nothing at every level above 0 (the
teacher's level keeps them all), so the path starts with one step that removes those
layers whole; the width and FFN then shrink in the layers that stay. A level the depth
cut alone already passes gets that shape. The exported student has ``L − N`` layers of
one size: still an ordinary config (:mod:`minidisc.elastic.spec`, empty layers). For a
family whose empty layer is not the identity (BERT) the specs name the removed layers
(:attr:`SubnetSpec.dropped`), so the sub-network skips them whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from minidisc.elastic.align import align_spec, head_multiple
from minidisc.elastic.importance import Importance
from minidisc.elastic.levels import at_or_above, check_levels
from minidisc.elastic.spec import AXES, HEADS, HIDDEN, LAYERS, NEURONS, SubnetSpec
from minidisc.errors import ConfigError

HEADS_WHOLE_DOWN_TO = Fraction(1, 2)
"""Key/value groups are all kept while the keep fraction ``r`` is at least this."""


def _width(r: Fraction, full: int, multiple: int) -> int:
    """``r·full`` rounded down to a multiple of ``multiple``, in [min(multiple, full), full]."""
    if r >= 1:
        return full
    return min(full, max(multiple, math.floor(r * full / multiple) * multiple))


def _groups(r: Fraction, groups: int) -> int:
    if r >= HEADS_WHOLE_DOWN_TO:
        return groups
    return max(1, math.floor(r / HEADS_WHOLE_DOWN_TO * groups))


def uniform_shape(
    config: Any,
    keep: Fraction,
    *,
    axes: Iterable[str],
    cut_hidden: bool,
    neuron_multiple: int = 8,
    max_hidden: int | None = None,
    dropped: tuple[int, ...] = (),
    align: int = 1,
) -> SubnetSpec:
    """The uniform sub-network of keep fraction ``keep`` (see the module doc).

    Args:
        config: the full model's config (its family gives the sizes).
        keep: ``r`` in [0, 1].
        axes: the axes cut (the family's pruned axes); the others stay whole.
        cut_hidden: whether the width is cut (needs ``HIDDEN`` in ``axes`` too).
        max_hidden: the width is at most this (the previous shape's along the path).
        dropped: layers that keep nothing (0 heads, 0 units).
        align: sizes rounded down to multiples of this (:mod:`minidisc.elastic.align`).
    """
    from minidisc.elastic.families import family_for

    geo = family_for(config).geometry(config)
    axes = set(axes)
    groups = _groups(keep, geo.num_kv_heads) if HEADS in axes else geo.num_kv_heads
    heads = groups * geo.group_size
    neurons = _width(keep, geo.intermediate_size, neuron_multiple) if NEURONS in axes else geo.intermediate_size
    hidden = geo.hidden_size
    if cut_hidden and HIDDEN in axes and keep < 1:
        bound = min(keep * geo.hidden_size, geo.hidden_size if max_hidden is None else max_hidden)
        hidden = max(heads, math.floor(bound / heads) * heads)
    kept = [i not in dropped for i in range(geo.num_layers)]
    spec = SubnetSpec(tuple(heads * k for k in kept), tuple(neurons * k for k in kept),
                      hidden=None if hidden == geo.hidden_size else hidden,
                      dropped=() if geo.empty_layer_is_identity else dropped)
    return align_spec(spec, align, full_heads=geo.num_heads, full_neurons=geo.intermediate_size,
                      full_hidden=geo.hidden_size, head_dim=geo.head_dim, group_size=geo.group_size,
                      hidden_multiple=max(_aligned_heads(heads, geo, align), 1))


def _aligned_heads(heads: int, geo: Any, align: int) -> int:
    """The query heads ``heads`` keeps after alignment (the width is a multiple of them)."""
    if align == 1 or heads >= geo.num_heads:
        return heads
    step = head_multiple(align, geo.head_dim, geo.group_size)
    return heads // step * step


def _one_axis_at_a_time(before: SubnetSpec, after: SubnetSpec) -> list[SubnetSpec]:
    """The shapes from ``before`` (excluded) to ``after`` (included) when a breakpoint
    of ``r`` changes several sizes at once (e.g. ``r = 2/3`` cuts 8 channels and 8
    units): FFN first, then width, then heads, so the path takes one smaller step at a
    time (finer sparsities, still nested)."""
    ffn_first = SubnetSpec(before.heads, after.neurons, hidden=before.hidden, dropped=after.dropped)
    then_width = SubnetSpec(before.heads, after.neurons, hidden=after.hidden, dropped=after.dropped)
    steps = [ffn_first, then_width, after]
    return [spec for i, spec in enumerate(steps) if spec != before and (i == 0 or spec != steps[i - 1])]


def uniform_path(
    config: Any,
    *,
    axes: Iterable[str] = AXES,
    cut_hidden: bool = True,
    neuron_multiple: int = 8,
    dropped: tuple[int, ...] = (),
    align: int = 1,
) -> list[tuple[SubnetSpec, float]]:
    """Every uniform shape of the policy, from the full model to the smallest, each with
    its non-embedding sparsity: ``[(spec, sparsity), …]`` with ``r`` decreasing, each
    step changing one size, each spec fitting in the one before (so sparsity never
    decreases).

    Args:
        config: the full model's config.
        axes: the family's pruned axes (the others stay whole).
        cut_hidden: whether the width is cut (needs ``HIDDEN`` in ``axes`` too).
        neuron_multiple: rounding of the FFN units.
        dropped: layers removed whole after the first shape (the full model).
        align: every shape's sizes rounded down to multiples of this before its sparsity
            is counted (:mod:`minidisc.elastic.align`).
    """
    from minidisc.compute.flops import non_embedding_params
    from minidisc.elastic.families import family_for

    axes = tuple(axes)
    geo = family_for(config).geometry(config)
    # Sizes are step functions of r, constant on [b_i, b_i+1) between these breakpoints.
    points = {Fraction(0), Fraction(1)}
    for heads in range(geo.group_size, geo.num_heads + 1, geo.group_size):
        points |= {Fraction(j * heads, geo.hidden_size) for j in range(1, geo.hidden_size // heads + 1)}
    points |= {
        Fraction(j * neuron_multiple, geo.intermediate_size)
        for j in range(1, geo.intermediate_size // neuron_multiple + 1)
    }
    points |= {HEADS_WHOLE_DOWN_TO * Fraction(j, geo.num_kv_heads) for j in range(1, geo.num_kv_heads + 1)}
    shapes: list[SubnetSpec] = []
    for r in sorted((p for p in points if p <= 1), reverse=True):
        previous = None if not shapes or shapes[-1].hidden is None else shapes[-1].hidden
        spec = uniform_shape(
            config, r, axes=axes, cut_hidden=cut_hidden, neuron_multiple=neuron_multiple, max_hidden=previous,
            dropped=dropped, align=align,
        )
        if not shapes or shapes[-1] != spec:
            shapes.extend(_one_axis_at_a_time(shapes[-1], spec) if shapes else [spec])
    if dropped:  # the teacher's own shape first: the depth cut is the path's first step
        shapes.insert(0, geo.full_spec())
    full = non_embedding_params(config, geo.full_spec())
    return [(spec, 1.0 - non_embedding_params(config, spec) / full) for spec in shapes]


def uniform_sparsity_map(
    config: Any,
    importance: Importance,
    grid: Iterable[float],
    *,
    axes: Iterable[str] = AXES,
    neuron_multiple: int = 8,
    drop_layers: int = 0,
    align: int = 1,
) -> dict[float, SubnetSpec]:
    """``{level: SubnetSpec}``: per level of ``grid``, the first shape of
    :func:`uniform_path` (the largest) whose non-embedding sparsity is at or above the
    level.

    Args:
        config: the full (reordered) model's config.
        importance: only says whether hidden channels were scored (``importance.hidden``);
            the sizes do not depend on the scores, the reorder put the best first.
        grid: sparsity levels, fractions in [0, 1).
        axes: the family's pruned axes.
        neuron_multiple: rounding of the FFN units.
        drop_layers: layers removed whole at every level above 0: the ones of lowest
            block importance (``importance.layers``).
        align: sizes rounded down to multiples of this (:mod:`minidisc.elastic.align`);
            the levels then pick among the aligned shapes, by their counted sparsity.

    Returns:
        Levels ascending; ``spec.sparsity`` is the level, nested across levels.

    Raises:
        ConfigError: a level outside [0, 1), or a level no uniform sub-network reaches
            (the width is not cut and FFN and heads alone do not remove enough);
            ``drop_layers`` for a family that cannot drop layers, without layer scores, or
            not below the number of layers.
    """
    levels = check_levels(grid)
    axes = tuple(axes)
    cut_hidden = importance.hidden is not None and HIDDEN in axes
    dropped = _dropped(config, importance, axes, drop_layers)
    path = uniform_path(config, axes=axes, cut_hidden=cut_hidden, neuron_multiple=neuron_multiple, dropped=dropped,
                        align=align)
    result: dict[float, SubnetSpec] = {}
    for s in levels:
        spec = next((spec for spec, sparsity in path if at_or_above(sparsity, s)), None)
        if spec is None:
            reach = path[-1][1]
            how = "" if cut_hidden else " without cutting the hidden width (give hidden-channel importance)"
            raise ConfigError(
                f"no uniform sub-network reaches sparsity {s:g}{how}: the sparsest keeps "
                f"{1 - reach:.1%} of the non-embedding parameters (sparsity {reach:.4f})"
            )
        result[s] = spec.with_sparsity(s)
    return result


def _dropped(config: Any, importance: Importance, axes: tuple[str, ...], n: int) -> tuple[int, ...]:
    """The layers a map with ``drop_layers = n`` removes (see :func:`uniform_sparsity_map`)."""
    from minidisc.elastic.families import family_for

    if not n:
        return ()
    family = family_for(config)
    if LAYERS not in axes:
        raise ConfigError(f"the {family.name} family cannot drop whole layers; leave --drop-layers at 0")
    return importance.weakest_layers(n)
