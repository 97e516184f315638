"""Turn a sub-network into a standalone, physically smaller model ("densify" in the reference).

Every sliced projection becomes a plain ``nn.Linear`` holding a contiguous copy of its
active prefix; a layer that keeps no heads keeps a skippable attention module (it must
not run attention on an empty projection). The config records the per-layer sizes in
``config.minidisc_subnet`` (a :meth:`SubnetSpec.to_dict`), and, when every layer has the
same sizes, also in the architecture's own size fields where they can express them
(see :meth:`Family.write_uniform_sizes` and :mod:`minidisc.elastic.io`).
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from minidisc.elastic.families import Family, Geometry, family_for
from minidisc.elastic.modules import make_skippable, plain_linear, restore_class
from minidisc.elastic.spec import AXES, SubnetSpec
from minidisc.errors import ConfigError

CONFIG_KEY = "minidisc_subnet"


def physical_spec(model: nn.Module, family: Family | None = None) -> SubnetSpec:
    """Per-layer (query heads, FFN units) as stored in ``model``'s weights."""
    family = family or family_for(model)
    geo = family.geometry(model.config)
    sizes = [family.layer_sizes(layer, geo) for layer in family.layers(model)]
    return SubnetSpec(tuple(h for h, _ in sizes), tuple(n for _, n in sizes))


def check_spec(spec: SubnetSpec, bound: SubnetSpec, family: Family, geometry: Geometry) -> None:
    """Raise ConfigError unless ``spec`` is a sub-network of ``bound`` that cuts only the
    family's pruned axes (:attr:`Family.pruned_axes`) and keeps whole KV groups."""
    if spec.num_layers != bound.num_layers:
        raise ConfigError(f"the spec has {spec.num_layers} layers, the model {bound.num_layers}")
    if not spec.fits_in(bound):
        raise ConfigError(
            f"the spec {spec.to_dict()} exceeds the model's sizes {bound.to_dict()} in some layer"
        )
    for axis in AXES:
        if axis not in family.pruned_axes and spec.sizes(axis) != bound.sizes(axis):
            raise ConfigError(
                f"the {family.name} family does not prune {axis}: the spec keeps {list(spec.sizes(axis))} "
                f"{axis} per layer, the model has {list(bound.sizes(axis))}"
            )
    g = geometry.group_size
    if any(h % g for h in spec.heads):
        raise ConfigError(
            f"with grouped-query attention every layer keeps a multiple of {g} query heads "
            f"(whole KV groups); got {list(spec.heads)}"
        )


def _replace(layer: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(layer.get_submodule(parent_path) if parent_path else layer, name, new)


def _slice_linear(linear: nn.Linear, out: int | None, inp: int | None) -> nn.Linear:
    w = linear.weight
    out = w.shape[0] if out is None else out
    inp = w.shape[1] if inp is None else inp
    return plain_linear(w[:out, :inp], None if linear.bias is None else linear.bias[:out])


def slice_layers_(model: nn.Module, spec: SubnetSpec, family: Family | None = None) -> nn.Module:
    """Shrink ``model``'s layers to ``spec`` in place, keeping the weight prefixes.

    Works on ordinary and on elastic models (any :class:`ElasticLinear` becomes a plain
    ``nn.Linear``). Returns ``model``.
    """
    family = family or family_for(model)
    geo = family.geometry(model.config)
    check_spec(spec, physical_spec(model, family), family, geo)
    for layer, heads, units in zip(family.layers(model), spec.heads, spec.neurons):
        for path, (out, inp) in family.projection_sizes(heads, units, geo).items():
            _replace(layer, path, _slice_linear(layer.get_submodule(path), out, inp))
        attn = layer.get_submodule(family.attention_path)
        if heads == 0:
            make_skippable(attn, family).minidisc_skip = True
        else:
            restore_class(attn)
        family.after_resize(layer, heads, geo)
    return model


def record_spec(config: Any, spec: SubnetSpec, family: Family) -> bool:
    """Write ``spec`` into ``config``; return True if plain ``from_pretrained`` rebuilds it."""
    setattr(config, CONFIG_KEY, spec.to_dict())
    if spec.is_uniform:
        return family.write_uniform_sizes(config, spec)
    return False


def extract(model: nn.Module, spec: SubnetSpec, family: Family | None = None) -> nn.Module:
    """A standalone deep copy of ``model`` cut to ``spec`` (``model`` is left untouched).

    Returns:
        A ``PreTrainedModel`` of the same class with physically smaller projections
        and ``config.minidisc_subnet`` set. Save it with
        :func:`minidisc.elastic.io.save_student`.

    Raises:
        ConfigError: ``spec`` does not fit the model.
    """
    family = family or family_for(model)
    # Validate before paying for the copy.
    check_spec(spec, physical_spec(model, family), family, family.geometry(model.config))
    student = copy.deepcopy(model)
    slice_layers_(student, spec, family)
    record_spec(student.config, spec, family)
    return student
