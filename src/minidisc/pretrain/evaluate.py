"""Held-out LM loss and the loss curve of a run.

Masked LM: the held-out blocks are masked once with a fixed seed
(:func:`minidisc.pretrain.data.heldout_batch`), so every arm -- and the teacher -- is
scored on the same masked positions; the loss is the mean cross-entropy in nats over all
masked positions of the held-out set. Causal LM: the same unmasked blocks for every arm
and the teacher (:func:`minidisc.pretrain.data.causal_heldout_batch`); the loss is the
mean next-token cross-entropy in nats over every position whose next token is real
(:func:`minidisc.pretrain.forward.next_token_positions`). Both are token-weighted, not
means of batch means.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from transformers import TrainerCallback

from minidisc.compute.meter import ComputeTotals
from minidisc.fileio import write_json
from minidisc.pretrain.data import IGNORE_INDEX
from minidisc.pretrain.forward import masked_positions, next_token_positions
from minidisc.pretrain.student import lm_head
from minidisc.runtime import autocast, current, place
from minidisc.tasks.lm_types import MASKED_LM, LMType

if TYPE_CHECKING:
    from minidisc.compute.meter import ComputeMeter
    from minidisc.pretrain.budget import CostModel

PROGRESS_FILE = "minidisc_progress.json"


#: Logit entries (positions × vocabulary) one held-out forward may hold: with a
#: 49,152-token vocabulary, 32 blocks of 128 tokens would need 0.8 GB of float32 logits.
_EVAL_LOGIT_ENTRIES = 2**26


def _scored(part: dict[str, Tensor], hidden: Tensor, model: nn.Module, lm: LMType) -> tuple[float, int]:
    """``(summed cross-entropy in nats, scored positions)`` of one held-out chunk."""
    if lm.causal:
        chosen = next_token_positions(part["attention_mask"])  # position t predicts token t + 1
        targets = part["input_ids"].roll(-1, dims=1)[chosen]
    else:
        chosen = masked_positions(part)
        targets = part["labels"][chosen]
    logits = lm_head(model)(hidden[chosen]).float()
    return float(nn.functional.cross_entropy(logits, targets, reduction="sum")), int(chosen.sum())


@torch.no_grad()
def heldout_lm_loss(
    model: nn.Module, batch: dict[str, Tensor], batch_size: int = 32, lm: LMType = MASKED_LM
) -> float:
    """Mean held-out cross-entropy of ``model`` on ``batch`` (module doc): nats per masked
    token (MLM) or per next-token prediction (causal LM).

    Runs in eval mode (dropout off) and restores the previous mode. The head runs on the
    scored positions only (equal to the full model's logits there).

    Args:
        model: a masked or causal LM (base model + LM head).
        batch: ``input_ids``, ``attention_mask``, ``labels`` ``(n, L)``.
        batch_size: rows per forward pass (fewer for a large vocabulary, so that one
            chunk's logits stay below ``2**26`` entries).
        lm: the LM type.

    Raises:
        ValueError: no scored position in ``batch``.
    """
    was_training = model.training
    model.eval()
    place(model)  # where the run computes (a teacher is evaluated before any Trainer moved it)
    device = current().device
    n, length = batch["input_ids"].shape
    rows = max(1, min(batch_size, _EVAL_LOGIT_ENTRIES // (length * int(model.config.vocab_size))))
    total, count = 0.0, 0
    try:
        for start in range(0, n, rows):
            part = {k: v[start : start + rows].to(device) for k, v in batch.items()}
            with autocast():  # the run's precision; the loss itself is float32 (_scored)
                hidden = model.base_model(
                    input_ids=part["input_ids"], attention_mask=part["attention_mask"], return_dict=True
                ).last_hidden_state
                loss, scored = _scored(part, hidden, model, lm)
            total, count = total + loss, count + scored
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError(f"the held-out batch has no {'next-token' if lm.causal else 'masked'} positions")
    return total / count


def scored_count(batch: dict[str, Tensor], lm: LMType = MASKED_LM) -> int:
    """Positions the held-out loss averages over: masked positions (MLM) or next-token
    positions (causal LM)."""
    if lm.causal:
        return int(next_token_positions(batch["attention_mask"]).sum())
    return masked_count(batch)


def masked_count(batch: dict[str, Tensor]) -> int:
    """Masked positions in ``batch``."""
    return int((batch["labels"] != IGNORE_INDEX).sum())


class LossCurve(TrainerCallback):
    """Held-out loss at fixed token intervals, wall-clock split, resumable progress.

    Evaluates before the first step (0 tokens), at the end of the first step whose
    cumulative training tokens reach each multiple of ``every_tokens`` (exactly at the
    multiple when it is a multiple of ``batch_size × block_size``), and after the last
    step. Each point records ``step, tokens, flops`` (training FLOPs so far),
    ``loss`` (held-out, nats) and ``train_loss`` (mean objective loss since the previous
    point). On every checkpoint save it writes its state and the meter's totals to
    ``checkpoint-*/minidisc_progress.json``; :meth:`restore` reads them back on resume.

    Args:
        model: the student.
        heldout: the masked held-out batch.
        every_tokens: evaluation interval in training tokens.
        meter: returns the trainer's :class:`ComputeMeter`.
        cost: the cost model (evaluation FLOPs are counted, outside the budget).
        eval_batch_size: rows per evaluation forward.
        lm: the LM type (how the held-out loss is measured).
    """

    def __init__(
        self,
        model: nn.Module,
        heldout: dict[str, Tensor],
        every_tokens: int,
        meter: Any,
        cost: CostModel,
        eval_batch_size: int = 32,
        lm: LMType = MASKED_LM,
    ) -> None:
        self.model = model
        self.lm = lm
        self.heldout = heldout
        self.every_tokens = int(every_tokens)
        self.meter = meter
        self.cost = cost
        self.eval_batch_size = eval_batch_size
        self.points: list[dict[str, Any]] = []
        self.eval_time_s = 0.0
        self.elapsed_before_s = 0.0  # wall time of earlier (interrupted) sessions
        self._started: float | None = None
        self._loss_sum = 0.0
        self._loss_steps = 0
        n, length = heldout["input_ids"].shape
        self.eval_flops_each = cost.eval_forward(n, length, scored_count(heldout, lm))

    # -- state ------------------------------------------------------------------------

    @property
    def wall_time_s(self) -> float:
        """Wall time of training so far (all sessions), evaluation included."""
        running = time.perf_counter() - self._started if self._started is not None else 0.0
        return self.elapsed_before_s + running

    def record_train_loss(self, loss: float) -> None:
        """Add one step's training loss to the running mean of the next point."""
        self._loss_sum += loss
        self._loss_steps += 1

    def state_dict(self, meter: ComputeMeter) -> dict[str, Any]:
        return {
            "points": self.points,
            "eval_time_s": self.eval_time_s,
            "wall_time_s": self.wall_time_s,
            "totals": meter.totals.to_dict(),
            "loss_sum": self._loss_sum,
            "loss_steps": self._loss_steps,
        }

    def restore(self, checkpoint: str | Path, meter: ComputeMeter) -> None:
        """Load the progress saved with ``checkpoint`` into this callback and ``meter``."""
        state = json.loads((Path(checkpoint) / PROGRESS_FILE).read_text(encoding="utf-8"))
        self.points = list(state["points"])
        self.eval_time_s = float(state["eval_time_s"])
        self.elapsed_before_s = float(state["wall_time_s"])
        self._loss_sum = float(state["loss_sum"])
        self._loss_steps = int(state["loss_steps"])
        totals = ComputeTotals.from_dict(state["totals"])
        totals.wall_time_s = 0.0  # the trainer's meter restarts its own clock
        meter.totals = totals

    # -- evaluation -----------------------------------------------------------------

    def evaluate(self, step: int) -> None:
        t0 = time.perf_counter()
        loss = heldout_lm_loss(self.model, self.heldout, self.eval_batch_size, self.lm)
        self.eval_time_s += time.perf_counter() - t0
        meter = self.meter()
        meter.record_eval(self.eval_flops_each)
        train_loss = self._loss_sum / self._loss_steps if self._loss_steps else None
        self._loss_sum, self._loss_steps = 0.0, 0
        self.points.append({
            "step": step,
            "tokens": meter.totals.tokens,
            "flops": meter.totals.train_flops,
            "loss": loss,
            "train_loss": train_loss,
            "wall_time_s": self.wall_time_s,
        })

    def _next_mark(self) -> int:
        done = self.points[-1]["tokens"] if self.points else -1
        return (done // self.every_tokens + 1) * self.every_tokens

    # -- trainer events ---------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._started = time.perf_counter()
        if not self.points:
            self.evaluate(0)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        last = state.global_step >= state.max_steps
        if last or self.meter().totals.tokens >= self._next_mark():
            self.evaluate(state.global_step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            write_json(folder / PROGRESS_FILE, self.state_dict(self.meter()))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._started is not None:
            self.elapsed_before_s += time.perf_counter() - self._started
            self._started = None
