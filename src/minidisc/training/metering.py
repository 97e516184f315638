"""Live compute accounting inside the Trainer.

Forward hooks on the student (and teacher) read the shape of every batch they compute
and the sub-network active at that moment, so sandwich steps over many candidates and
evaluation passes are all costed exactly, with no change to the training code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from minidisc.compute.flops import forward_flops
from minidisc.compute.meter import ComputeMeter

if TYPE_CHECKING:
    import torch

    from minidisc.elastic.spec import SubnetSpec

SpecFn = Callable[[], "SubnetSpec | None"]


def batch_shape(kwargs: dict[str, Any], args: tuple[Any, ...]) -> tuple[int, int] | None:
    """(batch, padded length) of a model call, or None when it has no token input."""
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None:
        ids = kwargs.get("inputs_embeds")
    if ids is None:
        return None
    return int(ids.shape[0]), int(ids.shape[1])


def attach_flop_hook(
    model: torch.nn.Module, meter: ComputeMeter, role: str, spec_fn: SpecFn | None = None
) -> Any:
    """Count every forward of ``model`` into ``meter``.

    Args:
        role: ``"student"`` (train-mode forwards cost 3× forward FLOPs, eval-mode ones
            count as evaluation) or ``"teacher"`` (always 1× forward FLOPs).
        spec_fn: returns the active sub-network (None: the model's own full size).

    A model with an output embedding (a causal or masked LM) is counted with its
    vocabulary projection (``2·h·V`` per token at the kept width ``h``); a classifier's
    head is left out, as in the paper's FLOPs.

    Returns: the hook handle (``.remove()`` detaches it).
    """
    config = model.config
    # a language model's vocabulary projection runs at every position and is a large
    # share of a small decoder's forward (SmolLM2-135M: 20 %); classifier heads are not counted
    lm_head = model.get_output_embeddings() is not None

    def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        shape = batch_shape(kwargs, args)
        if shape is None:
            return
        spec = spec_fn() if spec_fn else None
        flops = forward_flops(config, spec, seq_len=shape[1], batch=shape[0], lm_head=lm_head)
        if role == "teacher":
            meter.record_teacher_forward(flops)
        elif module.training:
            meter.totals.student_train_flops += 3.0 * flops
        else:
            meter.record_eval(flops)

    return model.register_forward_pre_hook(hook, with_kwargs=True)


class MeterCallback(TrainerCallback):
    """Counts a Trainer run: FLOPs by hooks, tokens per optimiser step, wall time.

    Tokens are the non-padding tokens of each training batch (counted once per batch,
    however many sub-networks the batch trains).
    """

    def __init__(self, model: torch.nn.Module, spec_fn: SpecFn | None = None) -> None:
        self.meter = ComputeMeter()
        self._handle = attach_flop_hook(model, self.meter, "student", spec_fn)
        self._t0: float | None = None

    def count_batch(self, inputs: dict[str, Any]) -> None:
        mask = inputs.get("attention_mask")
        ids = inputs["input_ids"]
        tokens = int(mask.sum()) if mask is not None else ids.numel()
        self.meter.totals.tokens += tokens
        self.meter.totals.sequences += int(ids.shape[0])

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.meter.start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.meter.record_steps(1)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.meter.totals = self.meter.stop().across_processes()  # every rank reports the whole stage
        self._handle.remove()


def timed(meter: ComputeMeter) -> Callable[[Callable[[], Any]], Any]:
    """Run a teacher forward and add its wall time to ``meter``'s teacher time."""

    def run(fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        meter.totals.teacher_time_s += time.perf_counter() - t0
        return out

    return run
