"""Stop a training stage that diverged: a non-finite loss, gradient norm or weight.

A learning rate far too high drives the weights to inf/NaN within a few steps. The
Trainer would go on regardless (its default ``logging_nan_inf_filter`` even hides NaN
losses from the logs), evaluate the NaN model at majority-class accuracy and save it as
a normal-looking result. :class:`DivergenceCallback` raises a
:class:`~minidisc.errors.DivergenceError` instead, naming the stage and the step; the
stage's staging folder is then discarded and nothing is recorded as finished.

What is checked, all from values the Trainer computes anyway:

* the training loss of every step (the scalar ``training_step`` returns);
* the logged loss and gradient norm (the norm before clipping) of every logging step —
  under fp16 loss scaling a non-finite gradient norm is the scaler's normal overflow
  (the step is skipped), so it is not checked there;
* every weight of the trained model at each evaluation and checkpoint save during
  training, and at the end of training (one pass over the weights each time).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback

from minidisc.errors import DivergenceError

if TYPE_CHECKING:
    from transformers import TrainingArguments


def first_nonfinite_parameter(model: torch.nn.Module) -> str | None:
    """Name of the first parameter of ``model`` holding an inf or NaN, None when all are
    finite (one device sync for the whole model when they are)."""
    named = [(n, p) for n, p in model.named_parameters() if p.is_floating_point()]
    if not named:
        return None
    flags = torch.stack([torch.isfinite(p.detach()).all() for _, p in named])
    if bool(flags.all()):
        return None
    return named[int((~flags).nonzero()[0])][0]


class DivergenceCallback(TrainerCallback):
    """Raise :class:`~minidisc.errors.DivergenceError` when training diverges.

    Args:
        stage: the stage's name as the user sees it (``teacher``, ``iter1``,
            ``hop-s0.9``, ``student``, a task of a GLUE suite ...).

    :class:`~minidisc.training.trainers.MeteredTrainer` adds one to every Trainer and
    hands it each step's loss (:meth:`check_loss`); weights are checked only while the
    Trainer trains, so evaluating a given model never raises here.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self._training = False

    def check_loss(self, loss: torch.Tensor, args: TrainingArguments, step: int) -> None:
        """Raise unless ``loss`` (a scalar tensor, the loss of optimiser step ``step``,
        1-based) is finite."""
        if not bool(torch.isfinite(loss.detach()).all()):
            raise self.error(args, step, f"the training loss is {float(loss.detach()):g}")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._training = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        checked = ("loss",) if args.fp16 else ("loss", "grad_norm")
        for key in checked:
            value = logs.get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                what = "the logged training loss" if key == "loss" else "the gradient norm"
                raise self.error(args, state.global_step, f"{what} is {value:g}")

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._training:
            self.check_weights(args, state.global_step, kwargs.get("model"))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.check_weights(args, state.global_step, kwargs.get("model"))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._training = False
        self.check_weights(args, state.global_step, kwargs.get("model"))

    def check_weights(self, args: TrainingArguments, step: int, model: torch.nn.Module | None) -> None:
        """Raise when a weight of ``model`` is inf or NaN."""
        if model is None:
            return
        name = first_nonfinite_parameter(model)
        if name is not None:
            raise self.error(args, step, f"weight {name} is not finite")

    def error(self, args: TrainingArguments, step: int, what: str) -> DivergenceError:
        """The error for a divergence seen at ``step``; says what to change."""
        clipping = (
            f"gradients are already clipped to norm {args.max_grad_norm:g}"
            if args.max_grad_norm and args.max_grad_norm > 0
            else "and enable gradient clipping (max_grad_norm > 0)"
        )
        return DivergenceError(
            f"training diverged in stage '{self.stage}' at step {step} ({what}), so nothing of that stage was "
            f"kept: lower --learning-rate (now {args.learning_rate:g}; {clipping}) and run the command again"
        )
