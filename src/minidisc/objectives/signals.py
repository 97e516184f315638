"""What one forward pass produced, in the form the objectives consume.

A trainer asks an objective what it needs (``needs_hidden_states``, ``needs_qkv``) and
calls :func:`forward_with_signals` for the student (with grad) and the teacher (eval
mode, under ``torch.no_grad()`` — the trainer's job), then hands both
:class:`Signals` to the objective.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from minidisc.objectives.capture import capture_qkv, is_causal_model
from minidisc.objectives.functional import key_mask, masked_log_softmax

#: Batch keys that are passed to the model; everything else (labels, distill_mask …)
#: is for the objectives only.
MODEL_INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "position_ids",
    "inputs_embeds",
)


@dataclass
class Signals:
    """Outputs of one forward pass.

    Attributes:
        logits: ``(B, C)`` sequence classification/regression, ``(B, L, C)`` token
            classification, ``(B, L, V)`` (masked/causal) LM; ``None`` for a bare encoder.
        hidden_states: ``(B, L, d)`` per entry: the embedding output, then each layer's
            output (as HF returns with ``output_hidden_states=True``; ``L_layers + 1``
            entries). ``None`` when not requested.
        queries: per layer ``(B, H, L, d_head)`` (post-RoPE for rotary models).
        keys, values: per layer ``(B, H_kv, L, d_head)``; ``H_kv < H`` under GQA.
        attention_scaling: per layer, the factor applied to ``Q·Kᵀ`` (``1/√d_head``).
        is_causal: whether the model's self-attention is causal.
        topk: a causal-LM teacher's next-token distributions as top-k + tail
            (:class:`~minidisc.objectives.topk.TopKTeacher`, from the teacher-logit
            cache), in place of ``logits``; the divergence objectives read it.
    """

    logits: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    queries: tuple[Tensor, ...] | None = None
    keys: tuple[Tensor, ...] | None = None
    values: tuple[Tensor, ...] | None = None
    attention_scaling: tuple[float, ...] | None = None
    is_causal: bool = False
    topk: Any = None

    # -- access with clear errors -------------------------------------------------

    def require_logits(self, who: str) -> Tensor:
        """The logits, or ``ValueError`` naming the objective ``who`` that needs them."""
        if self.logits is None:
            raise ValueError(
                f"{who} needs logits, but the model produced none (use a model with a head)"
            )
        return self.logits

    def require_hidden_states(self, who: str) -> tuple[Tensor, ...]:
        """The hidden states, or ``ValueError`` (the trainer did not request them)."""
        if self.hidden_states is None:
            raise ValueError(
                f"{who} needs hidden states; call forward_with_signals(need_hidden_states=True)"
            )
        return self.hidden_states

    def require_qkv(
        self, who: str
    ) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...], tuple[Tensor, ...]]:
        """``(queries, keys, values)``, or ``ValueError`` (the trainer did not capture them)."""
        if self.queries is None or self.keys is None or self.values is None:
            raise ValueError(
                f"{who} needs queries/keys/values; call forward_with_signals(need_qkv=True)"
            )
        return self.queries, self.keys, self.values

    @property
    def num_layers(self) -> int:
        """Number of transformer layers seen (from hidden states, else from Q/K/V)."""
        if self.hidden_states is not None:
            return len(self.hidden_states) - 1
        if self.queries is not None:
            return len(self.queries)
        raise ValueError("these signals hold neither hidden states nor queries")

    # -- attention ------------------------------------------------------------------

    def attention_scores(self, layer: int) -> Tensor:
        """Pre-softmax scores ``Q·Kᵀ·scaling`` of ``layer`` (no mask applied).

        Keys of grouped-query attention are repeated to the query heads (query head ``i``
        uses key head ``i // (H/H_kv)``, as transformers' ``repeat_kv`` does).

        Returns:
            ``(B, H, L, L)``.
        """
        queries, keys, _ = self.require_qkv("attention_scores")
        q, k = queries[layer], keys[layer]
        if q.shape[1] != k.shape[1]:
            if q.shape[1] % k.shape[1]:
                raise ValueError(
                    f"{q.shape[1]} query heads are not a multiple of {k.shape[1]} key heads"
                )
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        scaling = self.attention_scaling[layer] if self.attention_scaling else q.shape[-1] ** -0.5
        return torch.matmul(q, k.transpose(-1, -2)) * scaling

    def attention_log_probs(self, layer: int, attention_mask: Tensor) -> Tensor:
        """``log_softmax`` of :meth:`attention_scores` with padded (and future) keys excluded.

        Args:
            attention_mask: ``(B, L)``, 1 for real tokens.

        Returns:
            ``(B, H, L, L)``; excluded entries are ``-inf``; rows of padded queries are
            meaningless (every loss skips them).
        """
        return masked_log_softmax(
            self.attention_scores(layer), key_mask(attention_mask, self.is_causal)
        )

    def attention_probs(self, layer: int, attention_mask: Tensor) -> Tensor:
        """Attention probabilities ``softmax(Q·Kᵀ·scaling)``, padded keys excluded. ``(B, H, L, L)``."""
        return self.attention_log_probs(layer, attention_mask).exp()

    def detach(self) -> Signals:
        """A copy whose tensors are cut from the autograd graph (teacher side)."""

        def cut(xs: tuple[Tensor, ...] | None) -> tuple[Tensor, ...] | None:
            return None if xs is None else tuple(x.detach() for x in xs)

        return replace(
            self,
            logits=None if self.logits is None else self.logits.detach(),
            hidden_states=cut(self.hidden_states),
            queries=cut(self.queries),
            keys=cut(self.keys),
            values=cut(self.values),
        )


def forward_with_signals(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    need_qkv: bool = False,
    *,
    need_hidden_states: bool = True,
) -> Signals:
    """Run ``model`` on ``batch`` and collect what distillation objectives need.

    Only the model-input keys (:data:`MODEL_INPUT_KEYS`) are passed to the model; labels
    are not, so the model computes no loss (the objectives compute their own). Grad mode
    and train/eval mode are left to the caller (teacher: ``eval()`` + ``no_grad``).

    Args:
        model: a ``transformers`` model (BERT/RoBERTa-like encoder or LLaMA-family decoder
            for Q/K/V capture; any model for logits/hidden states).
        batch: tensors keyed like a tokenizer's output plus optional ``labels`` /
            ``distill_mask``.
        need_qkv: capture per-layer queries/keys/values with :class:`capture_qkv`.
        need_hidden_states: request ``output_hidden_states``.

    Returns:
        :class:`Signals`.

    Raises:
        ModelError: ``need_qkv`` on an unsupported architecture.
    """
    inputs = {k: v for k, v in batch.items() if k in MODEL_INPUT_KEYS}
    if getattr(getattr(model, "config", None), "use_cache", None) is not None:
        inputs["use_cache"] = False  # no KV cache during training forwards
    recorder = capture_qkv(model) if need_qkv else contextlib.nullcontext()
    with recorder:
        outputs = model(**inputs, output_hidden_states=need_hidden_states, return_dict=True)
    signals = Signals(
        logits=getattr(outputs, "logits", None),
        hidden_states=tuple(outputs.hidden_states) if need_hidden_states else None,
    )
    if isinstance(recorder, capture_qkv):
        captured = recorder.result()
        signals.queries, signals.keys, signals.values = (
            captured.queries,
            captured.keys,
            captured.values,
        )
        signals.attention_scaling = captured.scaling
        signals.is_causal = captured.is_causal
    else:
        signals.is_causal = is_causal_model(model)
    return signals
