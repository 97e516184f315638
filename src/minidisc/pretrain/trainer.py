"""Trainers of the pretraining arms: an LM from scratch and task-agnostic distillation.

Both train masked LMs (encoders) and causal LMs (decoders), and count every training
batch analytically with the arm's
:class:`~minidisc.pretrain.budget.CostModel` (the same function the budget plan uses,
so spent and planned FLOPs agree exactly) into the trainer's
:class:`~minidisc.compute.meter.ComputeMeter`. The forward passes go through the
transformer and the LM head separately (:func:`~minidisc.pretrain.forward.lm_signals`),
so the shared FLOP hooks of :class:`~minidisc.training.trainers.MeteredTrainer`, which
sit on the top-level modules, do not fire and nothing is counted twice.
Single-process training only (the encoder is called outside any DDP wrapper).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from minidisc.errors import ConfigError
from minidisc.objectives import Signals, label_loss
from minidisc.pretrain.budget import CostModel
from minidisc.pretrain.data import IGNORE_INDEX
from minidisc.pretrain.forward import causal_view, lm_signals, masked_positions, masked_view
from minidisc.pretrain.student import lm_head
from minidisc.runtime import autocast
from minidisc.tasks.lm_types import MASKED_LM, LMType
from minidisc.training.trainers import DistillationTrainer, MeteredTrainer


class _Accounting:
    """Mixin: analytic cost of each training batch, recorded before the step runs."""

    cost: CostModel
    loss_sink: Any = None  # LossCurve.record_train_loss

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        if self.args.world_size > 1:  # type: ignore[attr-defined]
            raise ConfigError("minidisc pretrain trains in a single process; launch it without accelerate/torchrun")
        rows, length = inputs["input_ids"].shape
        masked = int((inputs["labels"] != IGNORE_INDEX).sum())
        student, teacher = self.cost.batch(int(rows), int(length), masked)
        totals = self.meter.totals  # type: ignore[attr-defined]
        totals.student_train_flops += student
        totals.teacher_forward_flops += teacher
        loss = super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]
        if self.loss_sink is not None:
            self.loss_sink(float(loss.detach()))
        return loss


def objective_view(batch: dict[str, Any], lm: LMType, head: str) -> dict[str, Any]:
    """The batch as the losses see it next to logits of ``head`` mode: with the masked
    positions of gathered MLM logits, or with the next-token positions of a causal LM
    (:mod:`minidisc.pretrain.forward`)."""
    if lm.causal:
        return causal_view(batch)
    return masked_view(batch) if head == "masked" else batch


class ScratchTrainer(_Accounting, MeteredTrainer):
    """The student alone, on the LM loss of its type: masked-LM cross-entropy at the
    masked positions, or next-token cross-entropy at every position whose next token
    is real (:func:`minidisc.objectives.label_loss` with ``task_type="causal_lm"``).

    With ``frozen_encoder`` (masked LM only) the encoder runs in eval mode under
    ``no_grad`` and only the MLM head learns (warming up the head of a teacher checkpoint
    without one).

    Keyword Args:
        cost: the arm's cost model (its student head mode is used for the forward).
        lm: the LM type (default masked LM).
        frozen_encoder: see above.

    Raises:
        ConfigError: ``frozen_encoder`` for a causal LM.
    """

    def __init__(
        self, *args: Any, cost: CostModel, lm: LMType = MASKED_LM, frozen_encoder: bool = False, **kwargs: Any
    ) -> None:
        if frozen_encoder and lm.causal:
            raise ConfigError("a frozen encoder is an MLM-head warm-up; decoders train every weight")
        super().__init__(*args, **kwargs)
        self.cost = cost
        self.lm = lm
        self.frozen_encoder = frozen_encoder
        self.model_accepts_loss_kwargs = False  # the loss is a mean over predicted positions

    def compute_loss(
        self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        if return_outputs:
            raise NotImplementedError("pretrain evaluates with minidisc.pretrain.evaluate")
        student = self.accelerator.unwrap_model(model)  # unwrapped: the run's autocast is entered here
        head = self.cost.student_head
        with autocast():
            if self.frozen_encoder:
                student.base_model.eval()  # no dropout in the frozen encoder, as at KD time
                with torch.no_grad():
                    hidden = student.base_model(
                        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], return_dict=True
                    ).last_hidden_state
                logits = lm_head(student)(hidden[masked_positions(inputs)]).unsqueeze(0)
            else:
                logits = lm_signals(student, inputs, head, need_hidden_states=False).logits
        return label_loss(logits, objective_view(inputs, self.lm, head), self.lm.name)


class PretrainDistillationTrainer(_Accounting, DistillationTrainer):
    """Task-agnostic distillation of a masked-LM or causal-LM student.

    The teacher's and the student's LM heads run in the arm's head mode (``masked``,
    ``all`` or ``none``); with ``masked`` the objective sees ``(1, N, V)`` logits and
    :func:`~minidisc.pretrain.forward.masked_view` of the batch; a causal LM's objective
    sees ``(B, L, V)`` logits and :func:`~minidisc.pretrain.forward.causal_view` (KD
    over next-token distributions).

    Keyword Args:
        teacher, objective: as :class:`~minidisc.training.trainers.DistillationTrainer`
            (the objective built with ``task_type = lm.name``).
        cost: the arm's cost model (its head modes are used for the forwards).
        lm: the LM type (default masked LM).
    """

    def __init__(self, *args: Any, cost: CostModel, lm: LMType = MASKED_LM, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cost = cost
        self.lm = lm

    def _signals(self, model: torch.nn.Module, inputs: dict[str, Any], head: str) -> Signals:
        with autocast():  # the forwards in the run's precision; the objective stays float32
            return lm_signals(
                model,
                inputs,
                head,
                need_qkv=self.objective.needs_qkv,
                need_hidden_states=self.objective.needs_hidden_states,
            )

    def teacher_signals(self, inputs: dict[str, Any]) -> Signals:
        t0 = time.perf_counter()
        with torch.no_grad():
            signals = self._signals(self.teacher, inputs, self.cost.teacher_head)
        self.meter.totals.teacher_time_s += time.perf_counter() - t0
        return signals

    def distillation_loss(self, model: torch.nn.Module, inputs: dict[str, Any], teacher: Signals) -> torch.Tensor:
        student = self._signals(self.accelerator.unwrap_model(model), inputs, self.cost.student_head)
        loss, _parts = self.objective(student, teacher, objective_view(inputs, self.lm, self.cost.student_head))
        return loss
