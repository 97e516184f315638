"""Sparsity maps: the sub-network of every sparsity level, nested across levels.

Three layer shapes (``layer_shapes``): ``"global"`` (below: MiniDisc's map, per-layer
sizes), ``"uniform"`` (every layer alike, an ordinary config:
:mod:`minidisc.elastic.uniform_map`) and ``"depth"`` (whole layers removed, full width:
:mod:`minidisc.elastic.depth_map`). A family's default is
:attr:`Family.default_layer_shapes <minidisc.elastic.families.Family.default_layer_shapes>`:
global for encoders, uniform for decoders (:func:`model_sparsity_map`,
``ElasticModel.sparsity_map``, through :func:`default_layer_shapes`), except that a
decoder importance without hidden-channel scores falls back to global: uniform shapes
that keep the full width cannot go beyond about 92 % sparsity on SmolLM2 (one KV group
of attention is 8 % of its non-embedding parameters), so the default grid's 95 % level
would fail, and a decoder's gradient importance scores no channels today.
:func:`sparsity_map` itself defaults to global.

Global sparsity map: per-layer kept heads and FFN units for every sparsity level.

MiniDisc spec §Sparsification, "Global sparsity map": all ``L·H`` heads are ranked
globally by their (per-layer normalised) score, and separately all ``L·I`` FFN units;
for sparsity ``s`` the lowest ``round(s·total)`` are pruned and a layer's pruned count is
how many of them fall in it. One fixed ranking serves every level, so the pruned sets,
and hence the sub-networks, are nested across sparsities. Heads and units use the same
fraction ``s``.

Decisions [ours]:

* ``round`` is round-half-up.
* Grouped-query attention prunes whole KV groups: the ranked items are the ``L·KV``
  groups scored by the sum of their query heads' scores; a layer keeps
  ``kept_groups · group_size`` query heads.
* A layer's kept FFN units are rounded **down** to a multiple of 8 (the reference's
  granularity). Rounding down is monotone, so nesting survives, and a sub-network never
  exceeds its budget. A layer left with < 8 units therefore keeps 0 (its FFN is
  skipped: residual + LayerNorm only), as in the reference. Heads are not rounded; a
  layer may keep 0 heads (attention skipped).
* Ties in score are broken towards pruning the later unit of a layer (after
  :func:`~minidisc.elastic.reorder.reorder_model` the later unit is the less important).
* Only the axes the architecture family prunes (:attr:`Family.pruned_axes
  <minidisc.elastic.families.Family.pruned_axes>`) are cut; every level keeps the others
  whole. :func:`model_sparsity_map` reads the axes and the group size from a config.
* The global map cuts the per-layer axes only: the model-wide hidden width is kept
  whole (one width cannot follow a per-layer ranking); the uniform map cuts it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch

from minidisc.elastic.align import align_spec, check_align
from minidisc.elastic.depth_map import depth_sparsity_map
from minidisc.elastic.families import family_for
from minidisc.elastic.importance import Importance
from minidisc.elastic.levels import check_levels
from minidisc.elastic.spec import (
    AXES,
    DEFAULT_GRID,
    HEADS,
    NEURONS,
    PRUNABLE_AXES,
    SubnetSpec,
    shape_conflict,
)
from minidisc.elastic.uniform_map import uniform_sparsity_map
from minidisc.errors import ConfigError
from minidisc.fileio import read_json, write_json

NEURON_MULTIPLE = 8

LayerShapes = Literal["uniform", "global", "depth"]  # spec.LAYER_SHAPES, for type checkers


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5 + 1e-9)  # 1e-9: guard 0.85·40 = 33.9999… style float error


def _global_ranking(scores: torch.Tensor) -> torch.Tensor:
    """Layer index of every unit, in pruning order (least important first).

    ``scores``: ``(L, U)``. Sort key: score ascending, then position in layer descending.
    """
    num_layers, units = scores.shape
    flat = scores.double().reshape(-1)
    pos = torch.arange(units).repeat(num_layers)
    layer = torch.arange(num_layers).repeat_interleave(units)
    # Two stable sorts = lexicographic order on (score, −position).
    order = torch.sort(-pos, stable=True).indices
    order = order[torch.sort(flat[order], stable=True).indices]
    return layer[order]


def _pruned_per_layer(ranking: torch.Tensor, num_layers: int, count: int) -> torch.Tensor:
    return torch.bincount(ranking[:count], minlength=num_layers)


def sparsity_map(
    importance: Importance,
    grid: Iterable[float] = DEFAULT_GRID,
    *,
    group_size: int = 1,
    neuron_multiple: int = NEURON_MULTIPLE,
    axes: Iterable[str] = AXES,
    layer_shapes: LayerShapes = "global",
    config: Any = None,
    drop_layers: int = 0,
    align: int = 1,
) -> dict[float, SubnetSpec]:
    """Per-layer sizes of the sub-network at every sparsity in ``grid``.

    Args:
        importance: ``heads (L, H)``, ``neurons (L, I)``; normally per-layer normalised
            (the ranking is global, so the scale of each layer matters).
        grid: sparsity levels, fractions in [0, 1) (0.95 = a "5 % student").
        group_size: query heads per KV head (GQA); whole groups are pruned.
        neuron_multiple: kept FFN units per layer are rounded down to a multiple of this.
        axes: the axes cut (of :data:`~minidisc.elastic.spec.PRUNABLE_AXES`); the
            others keep every head (unit, channel) at every level.
        layer_shapes: ``"global"`` (this module's map; sparsity = the fraction of heads
            and of units pruned) or ``"uniform"``
            (:func:`~minidisc.elastic.uniform_map.uniform_sparsity_map`: sparsity = the
            fraction of non-embedding parameters removed, at or just above each level)
            or ``"depth"`` (:func:`~minidisc.elastic.depth_map.depth_sparsity_map`: whole
            layers of least block importance removed, full width; sparsity counted
            as for ``"uniform"``).
        config: the full model's config; needed by ``"uniform"`` and ``"depth"``
            (parameter counts, group size), unused by ``"global"``.
        drop_layers: whole layers removed at every level above 0 (``"uniform"`` only:
            :func:`~minidisc.elastic.uniform_map.uniform_sparsity_map`).
        align: kept heads, units and width rounded down to multiples of this
            (:func:`~minidisc.elastic.align.align_spec`; needs ``config``); 1: none.

    Returns:
        ``{sparsity: SubnetSpec}`` in ascending sparsity (keys are levels:
        :func:`minidisc.elastic.levels.level`).
        For ``s < s'``: ``spec[s'].fits_in(spec[s])`` (nesting).

    Raises:
        ConfigError: a level outside [0, 1), heads not divisible into groups, an
            unknown axis or layer shape, ``"uniform"`` (or ``align`` above 1) without a
            config, a level the uniform or depth map cannot reach, ``drop_layers`` with
            ``"global"`` or ``"depth"``, ``align`` below 1, or above 1 with ``"depth"``.
    """
    align = check_align(align)
    if problem := shape_conflict(layer_shapes, drop_layers, align):
        raise ConfigError(problem)
    if align > 1 and config is None:
        raise ConfigError("aligning a sparsity map needs the model's config (its head size)")
    axes = set(axes)
    if axes - set(PRUNABLE_AXES):
        raise ConfigError(
            f"unknown pruning axes {sorted(axes - set(PRUNABLE_AXES))}; the axes are {', '.join(PRUNABLE_AXES)}"
        )
    if layer_shapes == "uniform":
        if config is None:
            raise ConfigError("the uniform sparsity map needs the model's config (its parameter counts)")
        return uniform_sparsity_map(
            config, importance, grid, axes=axes, neuron_multiple=neuron_multiple, drop_layers=drop_layers,
            align=align,
        )
    if layer_shapes == "depth":
        if config is None:
            raise ConfigError("the depth sparsity map needs the model's config (its parameter counts)")
        return depth_sparsity_map(config, importance, grid)
    levels = check_levels(grid)
    head_share = 1.0 if HEADS in axes else 0.0
    unit_share = 1.0 if NEURONS in axes else 0.0
    groups = importance.group_scores(group_size)
    num_layers, num_groups = groups.shape
    units = importance.neurons.shape[1]
    group_rank = _global_ranking(groups)
    neuron_rank = _global_ranking(importance.neurons)

    result: dict[float, SubnetSpec] = {}
    for s in levels:
        pruned_groups = _pruned_per_layer(
            group_rank, num_layers, _round_half_up(head_share * s * group_rank.numel())
        )
        pruned_units = _pruned_per_layer(
            neuron_rank, num_layers, _round_half_up(unit_share * s * neuron_rank.numel())
        )
        heads = ((num_groups - pruned_groups) * group_size).tolist()
        kept_units = (units - pruned_units).tolist()
        neurons = [(n // neuron_multiple) * neuron_multiple if n < units else n for n in kept_units]
        result[s] = SubnetSpec(tuple(heads), tuple(neurons), sparsity=s)
    if align > 1:
        geo = family_for(config).geometry(config)
        result = {s: align_spec(spec, align, full_heads=geo.num_heads, full_neurons=geo.intermediate_size,
                                full_hidden=geo.hidden_size, head_dim=geo.head_dim, group_size=group_size)
                  for s, spec in result.items()}
    return result


# --- the map on disk --------------------------------------------------------------------

MAP_FILE = "sparsity_map.json"
"""The map a ``sparsified`` stage (or ``minidisc sparsify``) writes: level (``f"{s:g}"``) →
:meth:`SubnetSpec.to_dict`, levels ascending."""

EXTRA_LEVELS = "extra_levels.json"
"""Levels a run added to its (possibly linked) ``sparsified`` map, kept beside the folder in
the run itself: a finished stage's files never change (a resumed run checks them), and a
run never writes into the run it links its teacher from."""


def load_sparsity_map(sparsified_dir: Path) -> dict[float, SubnetSpec]:
    """The nested sparsity map saved in ``sparsified_dir``, with the levels the run added
    to it later (:data:`EXTRA_LEVELS` beside the folder, see :func:`save_extra_levels`).

    Raises:
        OSError / ValueError: the map file is missing or not JSON.
    """
    raw = read_json(Path(sparsified_dir) / MAP_FILE)
    extra = Path(sparsified_dir).parent / EXTRA_LEVELS
    if extra.is_file():
        raw = {**read_json(extra), **raw}
    return {float(s): SubnetSpec.from_dict(spec) for s, spec in raw.items()}


def save_sparsity_map(sparsified_dir: Path, spec_map: dict[float, SubnetSpec]) -> None:
    """Write :data:`MAP_FILE` into ``sparsified_dir`` (atomically), levels ascending."""
    _save_map(Path(sparsified_dir) / MAP_FILE, spec_map)


def save_extra_levels(sparsified_dir: Path, added: dict[float, SubnetSpec]) -> None:
    """Add ``added`` to :data:`EXTRA_LEVELS` beside ``sparsified_dir`` (atomically), so
    :func:`load_sparsity_map` returns them with the saved map."""
    extra = Path(sparsified_dir).parent / EXTRA_LEVELS
    before = {float(k): SubnetSpec.from_dict(v) for k, v in read_json(extra).items()} if extra.is_file() else {}
    _save_map(extra, before | added)


def _save_map(path: Path, spec_map: dict[float, SubnetSpec]) -> None:
    write_json(path, {f"{s:g}": spec_map[s].to_dict() for s in sorted(spec_map)})


def default_layer_shapes(family: Any, importance: Importance) -> LayerShapes:
    """The layer shapes of a map of ``family`` when none is asked: the family's default,
    but ``"global"`` for a uniform-default family when ``importance`` has no hidden-channel
    scores (see the module doc)."""
    shapes = family.default_layer_shapes
    if shapes == "uniform" and importance.hidden is None:
        return "global"
    return shapes


def model_sparsity_map(
    config: Any,
    importance: Importance,
    grid: Iterable[float] = DEFAULT_GRID,
    layer_shapes: LayerShapes | None = None,
    *,
    drop_layers: int = 0,
    align: int = 1,
) -> dict[float, SubnetSpec]:
    """:func:`sparsity_map` of a model with ``config``: its family's pruned axes, key/value
    group size and, unless ``layer_shapes`` is given, default layer shapes
    (:func:`default_layer_shapes`).

    Raises:
        ModelError: unsupported architecture. ConfigError: as :func:`sparsity_map`.
    """
    family = family_for(config)
    group_size = family.geometry(config).group_size
    return sparsity_map(
        importance,
        grid,
        group_size=group_size,
        axes=family.pruned_axes,
        layer_shapes=layer_shapes or default_layer_shapes(family, importance),
        config=config,
        drop_layers=drop_layers,
        align=align,
    )
