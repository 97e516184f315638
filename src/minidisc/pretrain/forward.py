"""LM forward passes that run the LM head only where it is needed.

The transformer (``model.base_model``) runs through
:func:`minidisc.objectives.forward_with_signals`, then the LM head (an MLM head, or a
decoder's ``lm_head``) is applied to the last hidden states of

* ``masked``: the masked positions only -- logits ``(1, N, V)`` for the ``N`` masked
  tokens of the batch, paired with :func:`masked_view` of the batch, which tells the
  objectives where the rows come from (``logit_positions``, see
  :mod:`minidisc.objectives.base`); hidden-state and attention terms still see the
  batch's ``(B, L)`` attention mask;
* ``all``: every position -- logits ``(B, L, V)`` with the batch as it is (a causal LM
  always: each position predicts the next token);
* ``none``: no head (``Signals.logits`` is ``None``).

Logits at masked positions are identical to the full model's there (the head is
position-wise), so every loss averaged over masked positions is unchanged, at a
fraction (≈ 15 %) of the head's cost. Calling the base model and the head separately
also keeps the Trainer's FLOP hooks on the top-level model silent: pretraining counts
its FLOPs analytically (:mod:`minidisc.pretrain.budget`).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from minidisc.objectives import LOGIT_POSITIONS, Signals, forward_with_signals
from minidisc.pretrain.data import IGNORE_INDEX
from minidisc.pretrain.student import lm_head


def masked_positions(batch: Mapping[str, Tensor]) -> Tensor:
    """``(B, L)`` bool: positions with an MLM label."""
    return batch["labels"] != IGNORE_INDEX


def masked_view(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The batch as the objectives see it next to ``(1, N, V)`` masked-position logits:
    unchanged, plus ``logit_positions`` = :func:`masked_positions` ``(B, L)``."""
    return {**batch, LOGIT_POSITIONS: masked_positions(batch)}


def next_token_positions(attention_mask: Tensor) -> Tensor:
    """``(B, L)`` bool: positions ``t`` whose next token ``t + 1`` is a real token -- the
    positions a causal LM is trained and scored on (the last real token of a row has no
    target inside the row; padding has none)."""
    real = attention_mask.bool()
    out = real.clone()
    out[:, :-1] &= real[:, 1:]
    out[:, -1] = False
    return out


def causal_view(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The batch as the objectives see it next to ``(B, L, V)`` causal-LM logits: plus
    ``distill_mask`` = :func:`next_token_positions`, so a KD term averages over exactly
    the positions the next-token cross-entropy does (with ``positions="all"`` it takes
    every real token instead)."""
    return {**batch, "distill_mask": next_token_positions(batch["attention_mask"])}


def lm_signals(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    head: str,
    *,
    need_qkv: bool = False,
    need_hidden_states: bool = True,
) -> Signals:
    """Transformer signals of a masked or causal LM plus the logits of ``head`` mode
    (module doc).

    Grad and train/eval mode are the caller's (teacher: ``eval()`` + ``no_grad``).

    Args:
        model: ``…ForMaskedLM`` / ``…ForCausalLM`` (``base_model`` + LM head; the last
            hidden state of ``base_model`` is what the head reads -- after the final
            norm for LLaMA).
        batch: ``input_ids``/``attention_mask`` ``(B, L)`` and ``labels`` (``-100`` off
            the masked positions; needed for ``masked``).
        head: ``"none"``, ``"masked"`` or ``"all"``.
        need_qkv: capture per-layer queries/keys/values.
        need_hidden_states: keep every layer's hidden states in the signals (the last
            one is always computed).

    Returns:
        :class:`~minidisc.objectives.Signals` with ``logits`` ``(1, N, V)`` /
        ``(B, L, V)`` / ``None``.

    Raises:
        ValueError: an unknown ``head`` mode.
    """
    signals = forward_with_signals(model.base_model, batch, need_qkv, need_hidden_states=True)
    last = signals.hidden_states[-1]
    if head == "masked":
        signals.logits = lm_head(model)(last[masked_positions(batch)]).unsqueeze(0)
    elif head == "all":
        signals.logits = lm_head(model)(last)
    elif head != "none":
        raise ValueError(f"head must be 'none', 'masked' or 'all', got {head!r}")
    if not need_hidden_states:
        signals.hidden_states = None
    return signals
