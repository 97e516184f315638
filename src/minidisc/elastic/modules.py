"""Building blocks of elastic sub-networks: sliced linear layers and skippable attention.

Both are installed by *changing the class of existing modules in place* (a subclass of
the original class), so parameters keep their objects and names: state dicts,
``save_pretrained`` of the full model, optimizers and output-capturing hooks (which
match modules by ``isinstance``) are unaffected.
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


_SKIPPABLE_CLASSES: dict[tuple[type, str], type] = {}


def make_skippable(module: nn.Module, family: Any) -> nn.Module:
    """Give ``module`` (an attention module) the ability to be skipped, in place."""
    cls = type(module)
    if issubclass(cls, _SkippableAttention):
        return module
    key = (cls, family.name)
    if key not in _SKIPPABLE_CLASSES:
        _SKIPPABLE_CLASSES[key] = type(
            f"Skippable{cls.__name__}",
            (_SkippableAttention, cls),
            {"_minidisc_family": family, "_minidisc_base": cls, "__module__": __name__},
        )
        # Module-level name, so pickle can find the class once it has been created.
        globals()[_SKIPPABLE_CLASSES[key].__name__] = _SKIPPABLE_CLASSES[key]
    module.__class__ = _SKIPPABLE_CLASSES[key]
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
