"""Masked-LM forward passes that run the MLM head only where it is needed.

The encoder (``model.base_model``) runs through
:func:`minidisc.objectives.forward_with_signals`, then the MLM head is applied to the
last hidden states of

* ``masked``: the masked positions only -- logits ``(1, N, V)`` for the ``N`` masked
  tokens of the batch, paired with :func:`masked_view` of the batch, which tells the
  objectives where the rows come from (``logit_positions``, see
  :mod:`minidisc.objectives.base`); hidden-state and attention terms still see the
  batch's ``(B, L)`` attention mask;
* ``all``: every position -- logits ``(B, L, V)`` with the batch as it is;
* ``none``: no head (``Signals.logits`` is ``None``).

Logits at masked positions are identical to the full model's there (the head is
position-wise), so every loss averaged over masked positions is unchanged, at a
fraction (≈ 15 %) of the head's cost.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from minidisc.objectives import LOGIT_POSITIONS, Signals, forward_with_signals
from minidisc.pretrain.data import IGNORE_INDEX
from minidisc.pretrain.student import mlm_head


def masked_positions(batch: Mapping[str, Tensor]) -> Tensor:
    """``(B, L)`` bool: positions with an MLM label."""
    return batch["labels"] != IGNORE_INDEX


def masked_view(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The batch as the objectives see it next to ``(1, N, V)`` masked-position logits:
    unchanged, plus ``logit_positions`` = :func:`masked_positions` ``(B, L)``."""
    return {**batch, LOGIT_POSITIONS: masked_positions(batch)}


def mlm_signals(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    head: str,
    *,
    need_qkv: bool = False,
    need_hidden_states: bool = True,
) -> Signals:
    """Encoder signals of a masked LM plus the MLM logits of ``head`` mode (module doc).

    Grad and train/eval mode are the caller's (teacher: ``eval()`` + ``no_grad``).

    Args:
        model: a masked LM (``BertForMaskedLM``-like: ``base_model`` + MLM head).
        batch: ``input_ids``/``attention_mask`` ``(B, L)`` and ``labels`` (``-100`` off
            the masked positions; needed for ``masked``).
        head: ``"none"``, ``"masked"`` or ``"all"``.
        need_qkv: capture per-layer queries/keys/values.
        need_hidden_states: keep every layer's hidden states in the signals (the last
            one is always computed).

    Returns:
        :class:`~minidisc.objectives.Signals` with ``logits`` ``(1, N, V)`` /
        ``(B, L, V)`` / ``None``.
    """
    signals = forward_with_signals(model.base_model, batch, need_qkv, need_hidden_states=True)
    last = signals.hidden_states[-1]
    if head == "masked":
        signals.logits = mlm_head(model)(last[masked_positions(batch)]).unsqueeze(0)
    elif head == "all":
        signals.logits = mlm_head(model)(last)
    elif head != "none":
        raise ValueError(f"head must be 'none', 'masked' or 'all', got {head!r}")
    if not need_hidden_states:
        signals.hidden_states = None
    return signals

