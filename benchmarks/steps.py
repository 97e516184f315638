"""Seconds per training step of a minidisc stage's own Trainer (shared by the step benchmarks).

A benchmark must time the step that a run trains, not a copy of it: the sandwich step
here is :class:`~minidisc.training.subnets.SubnetTrainer`'s, built by
:meth:`Distiller.trainer <minidisc.training.distill.Distiller.trainer>` exactly as a
MiniDisc iteration builds it (teacher forward once per batch, then every candidate's
forward and backward, one clipped AdamW step). A step is timed from the Trainer's
``on_step_begin`` to its ``on_step_end`` (after the optimizer step; the next batch is
collated outside that window), with the accelerator synchronised at both ends.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import torch
from transformers import DataCollatorWithPadding, TrainerCallback

from minidisc.config import TrainConfig
from minidisc.elastic import Importance
from minidisc.elastic.model import ElasticModel
from minidisc.training.distill import Distiller
from minidisc.training.tracker import CandidateTracker


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(TrainerCallback):
    """Wall seconds of every optimizer step of one ``trainer.train()``."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        _sync()
        self._start = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        _sync()
        self.seconds.append(time.perf_counter() - self._start)


def random_specs(student: torch.nn.Module, levels: list[float], seed: int = 0) -> dict[float, Any]:
    """``{sparsity: SubnetSpec}`` from random importance scores.

    A step's cost depends on each candidate's shapes, not on which heads and neurons it
    keeps; random scores give per-layer sizes near the layer average, where a real
    importance varies them between layers at the same total (and the same FLOPs)."""
    elastic = ElasticModel(student)
    return elastic.sparsity_map(random_importance(elastic.geometry, seed), levels)


def random_importance(geometry: Any, seed: int = 0, *, width_and_depth: bool = False) -> Importance:
    """Seeded random scores of every head and FFN unit (normalised); with
    ``width_and_depth`` also of every hidden channel and layer, drawn after them (so the
    head and unit scores are the same either way)."""
    gen = torch.Generator().manual_seed(seed)
    heads = torch.rand(geometry.num_layers, geometry.num_heads, generator=gen)
    neurons = torch.rand(geometry.num_layers, geometry.intermediate_size, generator=gen)
    if not width_and_depth:
        return Importance(heads, neurons).normalize()
    hidden = torch.rand(geometry.hidden_size, generator=gen)
    return Importance(heads, neurons, hidden=hidden, layers=torch.rand(geometry.num_layers, generator=gen)).normalize()


def step_seconds(trainer: Any, *, pad_to: int | None = None) -> list[float]:
    """Train ``trainer`` (its ``max_steps``; evaluation must not fall inside them) and
    return the seconds of each step. ``pad_to``: pad every batch to this many tokens
    instead of to its longest sequence."""
    if pad_to is not None:
        trainer.data_collator = DataCollatorWithPadding(trainer.processing_class, padding="max_length", max_length=pad_to)
    timer = StepTimer()
    trainer.add_callback(timer)
    trainer.train()
    return timer.seconds


def sandwich_seconds(
    distiller: Distiller,
    teacher: torch.nn.Module,
    student: torch.nn.Module,
    levels: list[float],
    scratch: Path,
    *,
    pad_to: int | None = None,
) -> list[float]:
    """Seconds of each step of distillation into the candidates ``levels`` (several: a
    sandwich step; one: a direct-KD step), ``distiller.cfg.max_steps`` steps."""
    specs = random_specs(student, levels)
    tracker = CandidateTracker(levels, lam=0.2, target=max(levels))
    trainer = distiller.trainer(teacher, student, specs, tracker, scratch, stage="benchmark")
    return step_seconds(trainer, pad_to=pad_to)


def summary(seconds: list[float], warmup: int) -> dict[str, float | int]:
    """Median and minimum over the steps after ``warmup`` (seconds)."""
    timed = seconds[warmup:] or seconds
    return {"median_s": round(statistics.median(timed), 4), "min_s": round(min(timed), 4), "steps": len(timed)}


def benchmark_config(batch: int, steps: int, seed: int = 0) -> TrainConfig:
    """Optimisation settings of a timed run: ``steps`` steps of ``batch`` examples, no
    evaluation inside them (one epoch is far longer than the run)."""
    return TrainConfig(epochs=1.0, max_steps=steps, batch_size=batch, eval_batch_size=batch, patience=None, seed=seed)
