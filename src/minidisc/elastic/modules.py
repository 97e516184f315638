"""Building blocks of elastic sub-networks: sliced linear layers, skippable attention,
skippable whole layers, and (for a cut residual stream) sliced embeddings, RMSNorms and
LayerNorms.

All are installed by *changing the class of existing modules in place* (a subclass of
the original class), so parameters keep their objects and names: state dicts,
``save_pretrained`` of the full model, optimizers, tied weights and output-capturing
hooks (which match modules by ``isinstance``) are unaffected.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class ElasticLinear(nn.Linear):
    """``nn.Linear`` that computes with a prefix slice of its weight.

    With ``active_out = o`` and ``active_in = i`` the forward is
    ``F.linear(x, weight[:o, :i], bias[:o])``: input ``(..., i)``, output ``(..., o)``.
    The matmul itself is smaller (cost ∝ o·i), nothing is masked. ``None`` means the
    full size. Gradients flow into the used slice of the shared weight only.
    """

    active_out: int | None = None
    active_in: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, inp = self.active_out, self.active_in
        if out is None and inp is None:
            return F.linear(x, self.weight, self.bias)
        out = self.out_features if out is None else out
        inp = self.in_features if inp is None else inp
        bias = None if self.bias is None else self.bias[:out]
        return F.linear(x, self.weight[:out, :inp], bias)

    def set_active(self, out: int | None = None, inp: int | None = None) -> None:
        """Use ``weight[:out, :inp]``; ``None`` (or the full size) means full."""
        self.active_out = None if out is None or out == self.out_features else int(out)
        self.active_in = None if inp is None or inp == self.in_features else int(inp)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", active_out={self.active_out}, active_in={self.active_in}"


def make_elastic_linear(linear: nn.Linear) -> ElasticLinear:
    """Turn ``linear`` into an :class:`ElasticLinear` in place (same object, same parameters)."""
    if not isinstance(linear, ElasticLinear):
        if type(linear) is not nn.Linear:
            raise TypeError(f"expected a plain nn.Linear, got {type(linear).__name__}")
        linear.__class__ = ElasticLinear
    linear.active_out = None
    linear.active_in = None
    return linear  # type: ignore[return-value]


def restore_linear(linear: nn.Linear) -> nn.Linear:
    """Undo :func:`make_elastic_linear`: the module becomes a plain ``nn.Linear`` again
    (same object and parameters, so a tied weight stays tied)."""
    if isinstance(linear, ElasticLinear):
        linear.__dict__.pop("active_out", None)
        linear.__dict__.pop("active_in", None)
        linear.__class__ = nn.Linear
    return linear


class ElasticEmbedding(nn.Embedding):
    """``nn.Embedding`` whose output keeps the first ``active_dim`` channels.

    With ``active_dim = h`` the forward looks up ``weight[:, :h]``: ids ``(...)`` →
    ``(..., h)``. ``None`` means the full width. Gradients reach the used columns only.
    """

    active_dim: int | None = None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.active_dim is None:
            return super().forward(input)
        return F.embedding(
            input,
            self.weight[:, : self.active_dim],
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
        )

    def set_active(self, dim: int | None) -> None:
        """Use the first ``dim`` channels; ``None`` (or the full width) means full."""
        self.active_dim = None if dim is None or dim == self.embedding_dim else int(dim)


def make_elastic_embedding(embedding: nn.Embedding) -> ElasticEmbedding:
    """Turn ``embedding`` into an :class:`ElasticEmbedding` in place (same object, same weight).

    Raises:
        TypeError: ``embedding`` is not a plain ``nn.Embedding``.
    """
    if not isinstance(embedding, ElasticEmbedding):
        if type(embedding) is not nn.Embedding:
            raise TypeError(f"expected a plain nn.Embedding, got {type(embedding).__name__}")
        embedding.__class__ = ElasticEmbedding
    embedding.active_dim = None
    return embedding  # type: ignore[return-value]


def restore_embedding(embedding: nn.Embedding) -> nn.Embedding:
    """Undo :func:`make_elastic_embedding` (a plain ``nn.Embedding``, same object)."""
    if isinstance(embedding, ElasticEmbedding):
        embedding.__dict__.pop("active_dim", None)
        embedding.__class__ = nn.Embedding
    return embedding


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension, as the LLaMA-family ``*RMSNorm`` modules of
    ``transformers`` compute it (Zhang & Sennrich 2019, eq. 4): in float32,
    ``x / sqrt(mean(x²) + eps)``, cast back to ``x``'s dtype, times ``weight``.

    Args:
        x: ``(..., h)``. weight: ``(h,)``. eps: added to the mean square.
    """
    dtype = x.dtype
    x32 = x.to(torch.float32)
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(dtype)


class _ElasticNorm:
    """Mixin for an RMSNorm of the residual stream (a module with ``.weight (H,)`` and
    ``.variance_epsilon``): with ``active_dim = h`` its input is ``(..., h)``, the mean
    square is taken over those ``h`` channels and ``weight[:h]`` scales them
    (:func:`rms_norm`); ``None`` runs the original forward."""

    active_dim: int | None = None
    _minidisc_base: type = object  # the original class

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.active_dim is None:
            return super().forward(hidden_states)  # type: ignore[misc]
        return rms_norm(hidden_states, self.weight[: self.active_dim], self.variance_epsilon)  # type: ignore[attr-defined]

    def set_active(self, dim: int | None) -> None:
        """Normalise the first ``dim`` channels; ``None`` (or the full width) means full."""
        full = self.weight.shape[0]  # type: ignore[attr-defined]
        self.active_dim = None if dim is None or dim == full else int(dim)


class ElasticLayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last dimension that normalises the first ``active_dim``
    channels: input ``(..., h)``, mean and variance over those ``h`` channels, scaled by
    ``weight[:h]`` and shifted by ``bias[:h]`` (Ba et al. 2016, eq. 15-16, on the kept
    channels), i.e. the LayerNorm of a model of width ``h``. ``None``: the full width."""

    active_dim: int | None = None

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        h = self.active_dim
        if h is None:
            return super().forward(input)
        weight = None if self.weight is None else self.weight[:h]
        bias = None if self.bias is None else self.bias[:h]
        return F.layer_norm(input, (h,), weight, bias, self.eps)

    def set_active(self, dim: int | None) -> None:
        """Normalise the first ``dim`` channels; ``None`` (or the full width) means full."""
        self.active_dim = None if dim is None or dim == self.normalized_shape[0] else int(dim)


_MIXED_CLASSES: dict[tuple[type, type, str | None], type] = {}


def _mixed_class(mixin: type, cls: type, prefix: str, family: Any = None) -> type:
    """The subclass ``(mixin, cls)`` named ``<prefix><cls name>``, made once per
    ``(mixin, cls, family)``; it records ``cls`` as ``_minidisc_base`` (and ``family``
    when given) so the swap can be undone."""
    key = (mixin, cls, None if family is None else family.name)
    if key not in _MIXED_CLASSES:
        attrs = {"_minidisc_base": cls, "__module__": __name__}
        if family is not None:
            attrs["_minidisc_family"] = family
        made = type(f"{prefix}{cls.__name__}", (mixin, cls), attrs)
        # Module-level name, so pickle can find the class once it has been created.
        globals()[made.__name__] = made
        _MIXED_CLASSES[key] = made
    return _MIXED_CLASSES[key]


def make_elastic_norm(norm: nn.Module) -> nn.Module:
    """Give ``norm`` (a plain ``nn.LayerNorm`` over the last dimension, or an RMSNorm with
    ``weight`` and ``variance_epsilon``, e.g. ``LlamaRMSNorm``, ``Qwen3RMSNorm``) a cut
    width, in place.

    Raises:
        TypeError: ``norm`` is neither.
    """
    cls = type(norm)
    if issubclass(cls, (_ElasticNorm, ElasticLayerNorm)):
        norm.active_dim = None
        return norm
    if cls is nn.LayerNorm:
        if len(norm.normalized_shape) != 1:
            raise TypeError(f"expected a LayerNorm over the last dimension, got shape {norm.normalized_shape}")
        norm.__class__ = ElasticLayerNorm
        norm.active_dim = None
        return norm
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1 or not hasattr(norm, "variance_epsilon"):
        raise TypeError(f"expected an RMSNorm with a weight vector and variance_epsilon, got {cls.__name__}")
    norm.__class__ = _mixed_class(_ElasticNorm, cls, "Elastic")
    norm.active_dim = None
    return norm


def restore_norm(norm: nn.Module) -> nn.Module:
    """Undo :func:`make_elastic_norm` (an instance of its original class, same object)."""
    if isinstance(norm, ElasticLayerNorm):
        norm.__dict__.pop("active_dim", None)
        norm.__class__ = nn.LayerNorm
    if isinstance(norm, _ElasticNorm):
        norm.__dict__.pop("active_dim", None)
        norm.__class__ = type(norm)._minidisc_base
    return norm


def plain_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A standard ``nn.Linear`` holding (contiguous copies of) ``weight`` (out, in) and ``bias``."""
    lin = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(lin)
    lin.out_features, lin.in_features = weight.shape
    lin.weight = nn.Parameter(
        weight.detach().clone().contiguous(), requires_grad=weight.requires_grad
    )
    if bias is None:
        lin.register_parameter("bias", None)
    else:
        lin.bias = nn.Parameter(
            bias.detach().clone().contiguous(), requires_grad=bias.requires_grad
        )
    return lin


class _SkippableAttention:
    """Mixin: when ``minidisc_skip`` is set, the attention is not computed at all and the
    family's ``skip_attention`` output is returned (see :mod:`minidisc.elastic.families`)."""

    minidisc_skip: bool = False
    _minidisc_family: Any = None  # set on the generated subclass
    _minidisc_base: type = object  # the original class

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.minidisc_skip:
            return self._minidisc_family.skip_attention(self, args, kwargs)
        return super().forward(*args, **kwargs)  # type: ignore[misc]


def make_skippable(module: nn.Module, family: Any) -> nn.Module:
    """Give ``module`` (an attention module) the ability to be skipped, in place."""
    cls = type(module)
    if issubclass(cls, _SkippableAttention):
        return module
    module.__class__ = _mixed_class(_SkippableAttention, cls, "Skippable", family)
    module.minidisc_skip = False
    return module


def restore_class(module: nn.Module) -> nn.Module:
    """Undo :func:`make_skippable` (the module becomes an instance of its original class)."""
    if isinstance(module, _SkippableAttention):
        module.__dict__.pop("minidisc_skip", None)
        module.__class__ = type(module)._minidisc_base
    return module


def is_skippable(module: nn.Module) -> bool:
    return isinstance(module, _SkippableAttention)


class _SkippableLayer:
    """Mixin: when ``minidisc_drop`` is set, the whole transformer layer is skipped and
    the family's ``skip_layer`` output (its input hidden states) is returned."""

    minidisc_drop: bool = False
    _minidisc_family: Any = None  # set on the generated subclass
    _minidisc_base: type = object  # the original class

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.minidisc_drop:
            return self._minidisc_family.skip_layer(args, kwargs)
        return super().forward(*args, **kwargs)  # type: ignore[misc]


def make_droppable(layer: nn.Module, family: Any) -> nn.Module:
    """Give the transformer ``layer`` the ability to be skipped whole, in place."""
    cls = type(layer)
    if issubclass(cls, _SkippableLayer):
        return layer
    layer.__class__ = _mixed_class(_SkippableLayer, cls, "Droppable", family)
    layer.minidisc_drop = False
    return layer


def restore_layer(layer: nn.Module) -> nn.Module:
    """Undo :func:`make_droppable` (an instance of its original class, same object)."""
    if isinstance(layer, _SkippableLayer):
        layer.__dict__.pop("minidisc_drop", None)
        layer.__class__ = type(layer)._minidisc_base
    return layer
