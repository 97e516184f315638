"""Turn a sub-network into a standalone, physically smaller model ("densify" in the reference).

Every sliced projection becomes a plain ``nn.Linear`` holding a contiguous copy of its
active prefix; a layer that keeps no heads keeps a skippable attention module (it must
not run attention on an empty projection). A cut hidden width (``spec.hidden``) cuts the
token embedding's columns, every norm of the residual stream and the output head's input
columns too (a head tied to the embedding stays tied: one tensor), and the config says
``hidden_size = spec.hidden`` (:meth:`Family.write_hidden_size`, which keeps the head
size). The layers of ``spec.dropped`` are removed (:meth:`Family.keep_layers`), so the
student has fewer layers. The config records the per-layer sizes in ``config.minidisc_subnet`` (a
:meth:`SubnetSpec.to_dict`), and, when every layer has the same sizes, also in the
architecture's own size fields where they can express them (see
:meth:`Family.write_uniform_sizes` and :mod:`minidisc.elastic.io`).
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from minidisc.elastic.families import Family, Geometry, family_for
from minidisc.elastic.modules import (
    make_skippable,
    plain_linear,
    restore_class,
    restore_embedding,
    restore_layer,
    restore_linear,
    restore_norm,
)
from minidisc.elastic.spec import AXES, HIDDEN, LAYERS, SubnetSpec
from minidisc.errors import ConfigError

CONFIG_KEY = "minidisc_subnet"


def physical_spec(model: nn.Module, family: Family | None = None) -> SubnetSpec:
    """Per-layer (query heads, FFN units) as stored in ``model``'s weights; ``hidden`` is
    ``None``: a model is at its own config's width (an extracted student's config says
    its cut width, :func:`extract`)."""
    family = family or family_for(model)
    geo = family.geometry(model.config)
    sizes = [family.layer_sizes(layer, geo) for layer in family.layers(model)]
    return SubnetSpec(tuple(h for h, _ in sizes), tuple(n for _, n in sizes))


def check_spec(spec: SubnetSpec, bound: SubnetSpec, family: Family, geometry: Geometry) -> None:
    """Raise ConfigError unless ``spec`` is a sub-network of ``bound`` that cuts only the
    family's pruned axes (:attr:`Family.pruned_axes`), keeps whole KV groups and at most
    the model's width ``geometry.hidden_size``."""
    if spec.hidden is not None:
        if HIDDEN not in family.pruned_axes:
            raise ConfigError(
                f"the {family.name} family does not prune the hidden width: the spec keeps "
                f"hidden={spec.hidden}; leave hidden unset"
            )
        if spec.hidden > geometry.hidden_size:
            raise ConfigError(
                f"the spec keeps hidden={spec.hidden} channels, more than the model's width {geometry.hidden_size}"
            )
    if spec.dropped and LAYERS not in family.pruned_axes:
        raise ConfigError(f"the {family.name} family does not remove whole layers: leave dropped empty")
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
    """Shrink ``model``'s layers (and, with ``spec.hidden``, its width) to ``spec`` in
    place, keeping the weight prefixes.

    Works on ordinary and on elastic models (any elastic module becomes its plain class
    again). The config is not changed (:func:`record_spec` does that). Returns ``model``.
    """
    family = family or family_for(model)
    geo = family.geometry(model.config)
    check_spec(spec, physical_spec(model, family), family, geo)
    if HIDDEN in family.pruned_axes:
        _slice_hidden_(model, family, spec.hidden)
    for layer, heads, units in zip(family.layers(model), spec.heads, spec.neurons):
        for path, (out, inp) in family.projection_sizes(heads, units, geo, spec.hidden).items():
            _replace(layer, path, _slice_linear(layer.get_submodule(path), out, inp))
        attn = layer.get_submodule(family.attention_path)
        if heads == 0:
            make_skippable(attn, family).minidisc_skip = True
        else:
            restore_class(attn)
        family.after_resize(layer, heads, geo)
    return model


def _slice_hidden_(model: nn.Module, family: Family, hidden: int | None) -> None:
    """Keep the first ``hidden`` residual-stream channels (``None``: all) of the embeddings,
    the norms (weight and bias), the square heads (rows and columns) and the output heads,
    in place; they become their plain classes again. A head that shared the token
    embedding's weight shares the cut one."""
    embeddings = [restore_embedding(e) for e in family.hidden_embeddings(model)]
    old = embeddings[0].weight
    h = old.shape[1] if hidden is None else hidden
    for embedding in embeddings:
        if embedding.weight.shape[1] != h:
            weight = embedding.weight
            embedding.weight = nn.Parameter(weight.detach()[:, :h].clone(), requires_grad=weight.requires_grad)
            embedding.embedding_dim = h
    for norm in family.hidden_norms(model):
        restore_norm(norm)
        if norm.weight.shape[0] != h:
            for name in ("weight", "bias"):
                value = getattr(norm, name, None)
                if isinstance(value, nn.Parameter):
                    setattr(norm, name, nn.Parameter(value.detach()[:h].clone(), requires_grad=value.requires_grad))
            if isinstance(norm, nn.LayerNorm):
                norm.normalized_shape = (h,)
    for head in family.square_heads(model):
        restore_linear(head)
        if head.weight.shape != (h, h):
            _replace_module(model, head, _slice_linear(head, h, h))
    for head in family.output_heads(model):
        restore_linear(head)
        if head.weight is old:  # tied to the embedding: the same (cut) tensor
            head.weight = embeddings[0].weight
            head.in_features = h
        elif head.in_features != h:
            _replace_module(model, head, _slice_linear(head, None, h))


def _replace_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    """Put ``new`` wherever ``model`` holds the submodule ``old``."""
    for name, module in list(model.named_modules()):
        if module is old and name:
            _replace(model, name, new)


def record_spec(config: Any, spec: SubnetSpec, family: Family) -> bool:
    """Write ``spec`` into ``config`` (and a cut width into its ``hidden_size``); return
    True if plain ``from_pretrained`` rebuilds it."""
    setattr(config, CONFIG_KEY, spec.to_dict())
    if spec.hidden is not None and spec.hidden != config.hidden_size:
        family.write_hidden_size(config, spec.hidden)
    plain = spec.is_uniform and family.write_uniform_sizes(config, spec)
    family.check_written_sizes(config)
    return plain


def drop_empty_layers_(model: nn.Module, family: Family | None = None) -> tuple[int, ...]:
    """Remove the layers of ``model`` that keep no heads and no FFN units, in place, where
    such a layer is the identity (:attr:`Geometry.empty_layer_is_identity`; otherwise
    nothing is removed); the recorded spec (``config.minidisc_subnet``) follows.

    Returns:
        The removed layers' indices before removal (0-based, ascending).

    Raises:
        ConfigError: every layer is empty.
    """
    family = family or family_for(model)
    geo = family.geometry(model.config)
    empty = physical_spec(model, family).empty_layers() if geo.empty_layer_is_identity else ()
    if not empty:
        return ()
    if len(empty) == geo.num_layers:
        raise ConfigError("every layer of the model keeps no heads and no FFN units: nothing would remain")
    family.keep_layers(model, [i for i in range(geo.num_layers) if i not in empty])
    recorded = getattr(model.config, CONFIG_KEY, None)
    if recorded:
        setattr(model.config, CONFIG_KEY, SubnetSpec.from_dict(recorded).without_layers(empty).to_dict())
    return empty


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
    if spec.dropped:  # removed whole: the student has fewer layers
        family.keep_layers(student, [i for i in range(spec.num_layers) if i not in spec.dropped])
        spec = spec.without_layers(spec.dropped)
    for layer in family.layers(student):
        restore_layer(layer)
    record_spec(student.config, spec, family)
    return student
