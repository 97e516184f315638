"""Trainer subclasses: metered training and teacher → student distillation.

``MeteredTrainer`` adds compute accounting, the divergence check and the stage's
training logs to the HF Trainer; ``DistillationTrainer``
replaces the label loss by a distillation objective against a frozen teacher. The
teacher runs in eval mode (dropout off) under ``no_grad``, once per batch.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import Trainer

from minidisc.errors import ConfigError
from minidisc.fileio import atomic_path
from minidisc.objectives import forward_with_signals
from minidisc.runtime import autocast, current, place
from minidisc.training.divergence import DivergenceCallback
from minidisc.training.logs import log_callbacks
from minidisc.training.metering import MeterCallback, attach_flop_hook

if TYPE_CHECKING:
    from minidisc.objectives import Objective, Signals


class MeteredTrainer(Trainer):
    """A Trainer that counts FLOPs, tokens and wall time of its run, stops when training
    diverges, and writes the stage's training logs.

    Keyword Args:
        spec_fn: returns the student's active sub-network (for elastic students).
        stage: the stage's name in divergence errors (see
            :class:`~minidisc.training.divergence.DivergenceCallback`).
        log_dir: write TensorBoard events and ``metrics.jsonl`` here
            (:mod:`minidisc.training.logs`); None: no logs (e.g. evaluation only).
    """

    def __init__(
        self, *args: Any, spec_fn: Any = None, stage: str = "training", log_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        model = kwargs.get("model", args[0] if args else None)
        if model is not None:  # where every other stage computes (the Trainer's own move is then a no-op)
            place(model)
        super().__init__(*args, **kwargs)
        if self.args.device != current().device:
            raise RuntimeError(f"the Trainer computes on {self.args.device} but minidisc placed the model on "
                               f"{current().device}: both must come from accelerate's state")
        self.meter_callback = MeterCallback(self.model, spec_fn)
        self.add_callback(self.meter_callback)
        self.divergence = DivergenceCallback(stage)
        self.add_callback(self.divergence)
        for callback in log_callbacks(log_dir) if log_dir is not None else ():
            self.add_callback(callback)

    @property
    def meter(self):
        return self.meter_callback.meter

    def train(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().train(*args, **kwargs)
        except BaseException:
            # A failed stage (divergence, interruption) ends its progress bars now, so the
            # error printed next is the last line on the screen, not a bar redrawn at exit.
            _close_progress_bars(self)
            raise

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        self.meter_callback.count_batch(inputs)
        loss = self.compute_training_step(model, inputs, num_items_in_batch)
        self.divergence.check_loss(loss, self.args, self.state.global_step + 1)
        return loss

    def compute_training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        """Forward and backward of one batch; return its (detached) loss. Subclasses that
        train differently (several sub-networks per batch) replace this, and keep the
        accounting and divergence check of :meth:`training_step`."""
        return super().training_step(model, inputs, num_items_in_batch)


def _close_progress_bars(trainer: Trainer) -> None:
    from transformers.trainer_callback import ProgressCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, ProgressCallback):
            for bar in (callback.training_bar, callback.prediction_bar):
                if bar is not None:
                    bar.close()
            callback.training_bar = callback.prediction_bar = None


class DistillationTrainer(MeteredTrainer):
    """Distil a frozen ``teacher`` into the trained model with ``objective``.

    The objective may own learnable parameters (e.g. width projections); they are
    optimised with the student and discarded afterwards. Evaluation uses the student's
    own outputs (its label loss and logits), never the teacher.

    Keyword Args:
        teacher: the teacher model (placed on the student's device, frozen; it runs under
            the run's autocast, :mod:`minidisc.runtime`).
        objective: a :class:`minidisc.objectives.Objective`.
        teacher_cache: a :class:`~minidisc.training.teacher_cache.TeacherCacheStore`;
            teacher outputs are then served from it where possible (objectives reading
            Q/K/V always run the teacher). Its statistics: ``self.teacher_cache.stats``.
    """

    def __init__(
        self, *args: Any, teacher: torch.nn.Module, objective: Objective, teacher_cache: Any = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = place(teacher).eval().requires_grad_(False)
        self.objective = place(objective)
        attach_flop_hook(self.teacher, self.meter, "teacher")
        cached = teacher_cache is not None and teacher_cache.supports(objective)
        self.teacher_cache = teacher_cache.view(self.teacher) if cached else None
        self.model_accepts_loss_kwargs = False  # our losses are batch means: let the Trainer scale for accumulation

    # The objective's parameters (width projections) are trained beside the student but are
    # not part of it, so the model files of a checkpoint miss them; they travel with the
    # optimiser state instead, which is what a resumable checkpoint needs.
    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            save_objective_state(self.objective, output_dir)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            load_objective_state(self.objective, checkpoint)

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        extra = [p for p in self.objective.parameters() if p.requires_grad]
        if extra:  # projections learn with the student, without weight decay
            optimizer.add_param_group({"params": extra, "weight_decay": 0.0})
        return optimizer

    def teacher_signals(self, inputs: dict[str, Any]) -> Signals:
        """The teacher's outputs for one batch: from the teacher cache when one is set,
        else (and for cache misses) from a forward pass of the teacher."""
        t0 = time.perf_counter()
        if self.teacher_cache is not None:
            signals = self.teacher_cache.signals(
                inputs, self._teacher_forward, need_hidden_states=self.objective.needs_hidden_states
            )
        else:
            signals = self._teacher_forward(inputs)
        self.meter.totals.teacher_time_s += time.perf_counter() - t0
        return signals

    def _teacher_forward(self, inputs: dict[str, Any]) -> Signals:
        # the teacher is not the Trainer's model, so accelerate's autocast does not wrap it
        with torch.no_grad(), autocast():
            return forward_with_signals(
                self.teacher,
                inputs,
                need_hidden_states=self.objective.needs_hidden_states,
                need_qkv=self.objective.needs_qkv,
            )

    def distillation_loss(self, model: torch.nn.Module, inputs: dict[str, Any], teacher: Signals) -> torch.Tensor:
        """Student forward and the objective's loss against ``teacher``."""
        student = forward_with_signals(
            model,
            inputs,
            need_hidden_states=self.objective.needs_hidden_states,
            need_qkv=self.objective.needs_qkv,
        )
        loss, _parts = self.objective(student, teacher, inputs)
        return loss

    def compute_loss(
        self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if return_outputs or not model.training:  # evaluation: the student alone
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return self.distillation_loss(model, inputs, self.teacher_signals(inputs))


#: File of a checkpoint holding the objective's parameters and buffers (safetensors).
OBJECTIVE_STATE_FILE = "objective.safetensors"


def save_objective_state(objective: torch.nn.Module, folder: str | Path) -> Path | None:
    """Write ``objective.state_dict()`` (e.g. TinyBERT's ``d_S → d_T`` projections) to
    ``folder/objective.safetensors``; nothing for an objective without state.

    Returns:
        The file written, or ``None``.
    """
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in objective.state_dict().items()}
    if not state:
        return None
    target = Path(folder) / OBJECTIVE_STATE_FILE
    with atomic_path(target) as tmp:
        save_file(state, str(tmp))
    return target


def load_objective_state(objective: torch.nn.Module, folder: str | Path) -> None:
    """Restore what :func:`save_objective_state` wrote into ``objective``, in place (the
    optimiser keeps referring to the same parameters).

    Raises:
        ConfigError: the objective has state but the checkpoint has no (or a different)
            objective file, e.g. a checkpoint written by another objective or before
            objective state was saved.
    """
    from safetensors.torch import load_file

    expected = objective.state_dict()
    if not expected:
        return
    path = Path(folder) / OBJECTIVE_STATE_FILE
    if not path.is_file():
        raise ConfigError(
            f"checkpoint {folder} has no {OBJECTIVE_STATE_FILE}, so the objective's learnable parameters "
            f"({', '.join(expected)}) cannot be restored; delete the checkpoint folder to restart training"
        )
    state = load_file(str(path))
    if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
        raise ConfigError(
            f"{path} holds {sorted(state)} with other names or shapes than the objective's {sorted(expected)}; "
            "the checkpoint belongs to another objective or student width: delete it to restart training"
        )
    objective.load_state_dict(state)
