"""Capture the queries, keys and values of every self-attention layer of a HF model.

The model's source is not touched: forward hooks on the modules whose outputs are the
queries, keys and values record them, and for rotary models a forward pre-hook on the
attention module records the ``position_embeddings`` (cos, sin) it is called with, which
are then applied with the model's own ``apply_rotary_pos_emb``. So the captured Q/K are
exactly what the attention scores are computed from. The model's architecture family
(:mod:`minidisc.elastic.families`) names those modules and the head size:

* BERT / RoBERTa-like encoders (``attention.self.query/key/value``): Q, K, V as
  projected.
* LLaMA-family decoders (``self_attn.q_proj/k_proj/v_proj``; Qwen3's per-head
  ``q_norm`` / ``k_norm`` after them): Q and K *after* the per-head norm and RoPE, V as
  projected. K and V keep ``num_key_value_heads`` heads (grouped-query attention is not
  expanded here; :meth:`Signals.attention_scores` expands K to the query heads).

Hooks were chosen over wrapping an ``AttentionInterface`` function: they need no change
of ``config._attn_implementation`` (which also selects the mask format), work with every
attention kernel (eager, sdpa, flash), and still fire when a sub-network slices the
projection weights, since the projection modules are still called. Head counts are read
from the projection output width, so pruned sub-networks are captured as they run.

Limitation: with *reentrant* gradient checkpointing the recorded tensors carry no
gradient; use non-reentrant checkpointing (or none) when training a student on Q/K/V
losses.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn

from minidisc.elastic.families import family_for, supported_model_types
from minidisc.errors import ModelError


@dataclass(frozen=True)
class _Attention:
    """One self-attention layer as the family locates it."""

    module: nn.Module  # receives position_embeddings; carries is_causal and scaling
    sources: tuple[nn.Module, nn.Module, nn.Module]  # outputs: Q, K, V before RoPE
    head_dim: int


def _attention_layers(model: nn.Module) -> list[_Attention]:
    """The self-attention layers of the first module in ``model`` (itself, or a model it
    wraps, e.g. for distributed training) whose architecture family is registered.

    Raises:
        ModelError: no module of ``model`` has a supported architecture.
    """
    for candidate in model.modules():
        config = getattr(candidate, "config", None)
        if getattr(config, "model_type", None) in supported_model_types():
            family = family_for(config)
            head_dim = family.geometry(config).head_dim
            return [
                _Attention(layer.get_submodule(family.attention_path), family.qkv_sources(layer), head_dim)
                for layer in family.layers(candidate)
            ]
    raise ModelError(
        f"no supported self-attention modules found in {type(model).__name__}; Q/K/V capture "
        f"supports the architectures of minidisc.elastic.families ({', '.join(supported_model_types())})"
    )


def _rope_function(module: nn.Module) -> Callable[..., tuple[Tensor, Tensor]] | None:
    """The ``apply_rotary_pos_emb`` of the modeling file defining ``module``'s class.

    Walks the MRO so that a class swapped in place by a subclass defined elsewhere
    (elastic sub-network wrappers) still finds its model's function.
    """
    for cls in type(module).__mro__:
        rope = getattr(sys.modules.get(cls.__module__), "apply_rotary_pos_emb", None)
        if callable(rope):
            return rope
    return None


def _signature_declaring(module: nn.Module, parameter: str) -> inspect.Signature | None:
    """Signature of the first ``forward`` in ``module``'s MRO that names ``parameter``."""
    for cls in type(module).__mro__:
        forward = cls.__dict__.get("forward")
        if forward is not None:
            signature = inspect.signature(forward)
            if parameter in signature.parameters:
                return signature
    return None


def find_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention modules of ``model`` in layer order.

    Raises:
        ModelError: when no supported self-attention module is found.
    """
    return [attention.module for attention in _attention_layers(model)]


def is_causal_model(model: nn.Module) -> bool:
    """True when the model's self-attention is causal (decoder-only LMs)."""
    try:
        modules = find_attention_modules(model)
    except ModelError:
        return bool(getattr(getattr(model, "config", None), "is_decoder", False))
    return bool(getattr(modules[0], "is_causal", False))


@dataclass
class _Record:
    sources: tuple[nn.Module, nn.Module, nn.Module]
    head_dim: int
    scaling: float
    rope_fn: Callable[..., tuple[Tensor, Tensor]] | None
    outputs: dict[str, Tensor] = field(default_factory=dict)
    position_embeddings: tuple[Tensor, Tensor] | None = None


@dataclass(frozen=True)
class CapturedQKV:
    """Per-layer attention inputs of one forward pass.

    Attributes:
        queries: per layer ``(B, H, L, d_head)``.
        keys, values: per layer ``(B, H_kv, L, d_head)`` (``H_kv = H`` without GQA).
        scaling: per layer, the factor the model multiplies ``Q·Kᵀ`` by (``1/√d_head``
            unless the model says otherwise).
        is_causal: whether the attention is causal.
    """

    queries: tuple[Tensor, ...]
    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]
    scaling: tuple[float, ...]
    is_causal: bool


class capture_qkv:  # lower-case: used like a function, ``with capture_qkv(model) as cap``
    """Context manager recording Q/K/V of every self-attention layer during one forward.

    Example::

        with capture_qkv(model) as cap:
            out = model(**inputs)
        qkv = cap.result()

    Raises:
        ModelError: on construction if the architecture is not supported; from
            :meth:`result` if some attention layer did not run.
    """

    def __init__(self, model: nn.Module) -> None:
        layers = _attention_layers(model)
        self._modules = [attention.module for attention in layers]
        self._records = [self._make_record(attention) for attention in layers]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._causal = bool(getattr(self._modules[0], "is_causal", False))

    @staticmethod
    def _make_record(attention: _Attention) -> _Record:
        scaling = getattr(attention.module, "scaling", None)
        return _Record(
            sources=attention.sources,
            head_dim=attention.head_dim,
            scaling=float(scaling) if isinstance(scaling, (int, float)) else attention.head_dim**-0.5,
            rope_fn=_rope_function(attention.module),
        )

    def __enter__(self) -> capture_qkv:  # noqa: PYI034
        for module, record in zip(self._modules, self._records):
            record.outputs.clear()
            record.position_embeddings = None
            self._handles.append(
                module.register_forward_pre_hook(self._pre_hook(record), with_kwargs=True)
            )
            # A per-head norm (Qwen3 q_norm/k_norm) runs after the projection and before
            # RoPE, so its output is what the attention sees; the family names it.
            for kind, source in zip("qkv", record.sources):
                self._handles.append(source.register_forward_hook(self._output_hook(record, kind)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @staticmethod
    def _pre_hook(record: _Record) -> Callable[..., None]:
        signature: inspect.Signature | None = None

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            nonlocal signature
            if "position_embeddings" in kwargs or not args:
                record.position_embeddings = kwargs.get("position_embeddings")
                return
            # Passed positionally: bind against the model's own forward (a wrapper class
            # swapped in place may declare only *args/**kwargs).
            if signature is None:
                signature = _signature_declaring(module, "position_embeddings")
            if signature is None:
                record.position_embeddings = None
                return
            bound = signature.bind_partial(module, *args, **kwargs).arguments
            record.position_embeddings = bound.get("position_embeddings")

        return hook

    @staticmethod
    def _output_hook(record: _Record, kind: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            record.outputs[kind] = output

        return hook

    def result(self) -> CapturedQKV:
        """Assemble the captured tensors into ``(B, heads, L, d_head)`` per layer."""
        queries, keys, values = [], [], []
        for index, record in enumerate(self._records):
            missing = {"q", "k", "v"} - record.outputs.keys()
            if missing:
                raise ModelError(
                    f"attention layer {index} did not run (no {sorted(missing)} captured); "
                    "Q/K/V capture needs every self-attention layer to call its projections"
                )
            q, k, v = (self._heads(record.outputs[n], record.head_dim) for n in ("q", "k", "v"))
            if record.position_embeddings is not None:
                if record.rope_fn is None:
                    raise ModelError(
                        "the attention layer receives rotary position embeddings but its module "
                        "defines no apply_rotary_pos_emb; this architecture is not supported"
                    )
                cos, sin = record.position_embeddings
                q, k = record.rope_fn(q, k, cos, sin)
            queries.append(q)
            keys.append(k)
            values.append(v)
        return CapturedQKV(
            queries=tuple(queries),
            keys=tuple(keys),
            values=tuple(values),
            scaling=tuple(r.scaling for r in self._records),
            is_causal=self._causal,
        )

    @staticmethod
    def _heads(x: Tensor, head_dim: int) -> Tensor:
        """``(B, L, n·d)`` or ``(B, L, n, d)`` → ``(B, n, L, d)``."""
        batch, length = x.shape[:2]
        return x.reshape(batch, length, -1, head_dim).transpose(1, 2)
