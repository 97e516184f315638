"""Compute accounting of a training stage: FLOPs, tokens and wall time.

Training a model costs ≈ 3× its forward FLOPs (forward + backward, Kaplan et al. 2020);
a teacher costs 1× its forward FLOPs per batch it scores. FLOPs are counted analytically
(:mod:`minidisc.compute.flops`) on the padded batch shape that is actually computed.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ComputeTotals:
    """Accumulated cost of one stage (FLOPs are floating-point operations, not MACs)."""

    student_train_flops: float = 0.0
    teacher_forward_flops: float = 0.0
    eval_flops: float = 0.0
    tokens: int = 0
    sequences: int = 0
    steps: int = 0
    wall_time_s: float = 0.0
    teacher_time_s: float = 0.0

    @property
    def train_flops(self) -> float:
        """Student training plus teacher forward passes: the budget-relevant cost."""
        return self.student_train_flops + self.teacher_forward_flops

    def add(self, other: ComputeTotals) -> ComputeTotals:
        """Sum of two totals (used to cost a whole schedule from its stages)."""
        return ComputeTotals(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["train_flops"] = self.train_flops
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComputeTotals:
        return cls(**{k: data[k] for k in asdict(cls()) if k in data})

    @classmethod
    def nominal(cls, data: dict[str, Any]) -> ComputeTotals:
        """A stage's recorded compute with the teacher forwards a teacher-output cache
        served (``teacher_cache.flops_saved``) counted as computed: what the stage costs
        whether or not another stage filled the cache before it."""
        totals = cls.from_dict(data)
        totals.teacher_forward_flops += float((data.get("teacher_cache") or {}).get("flops_saved") or 0.0)
        return totals

    def across_processes(self) -> ComputeTotals:
        """The totals of a data-parallel stage over all its processes: FLOPs, tokens and
        sequences add up, times are the slowest process's, steps are shared (every
        process takes each optimiser step). Unchanged when running in one process."""
        import torch
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return self
        summed = ("student_train_flops", "teacher_forward_flops", "eval_flops", "tokens", "sequences")
        slowest = ("wall_time_s", "teacher_time_s")
        values = torch.tensor([getattr(self, k) for k in summed], dtype=torch.float64)
        times = torch.tensor([getattr(self, k) for k in slowest], dtype=torch.float64)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        dist.all_reduce(times, op=dist.ReduceOp.MAX)
        out = dict(zip(summed, values.tolist())) | dict(zip(slowest, times.tolist()))
        out["tokens"], out["sequences"] = int(out["tokens"]), int(out["sequences"])
        return ComputeTotals(**out, steps=self.steps)


@dataclass
class ComputeMeter:
    """Counts a stage's cost as it runs; call the ``record_*`` methods per batch."""

    totals: ComputeTotals = field(default_factory=ComputeTotals)
    _started: float | None = None

    def start(self) -> None:
        self._started = time.perf_counter()

    def stop(self) -> ComputeTotals:
        if self._started is not None:
            self.totals.wall_time_s += time.perf_counter() - self._started
            self._started = None
        return self.totals

    def record_student_step(self, forward_flops: float, tokens: int, sequences: int) -> None:
        """One optimiser step's worth of student training on ``tokens`` real tokens."""
        self.totals.student_train_flops += 3.0 * forward_flops
        self.totals.tokens += int(tokens)
        self.totals.sequences += int(sequences)

    def record_steps(self, n: int = 1) -> None:
        self.totals.steps += n

    def record_teacher_forward(self, forward_flops: float, seconds: float = 0.0) -> None:
        self.totals.teacher_forward_flops += forward_flops
        self.totals.teacher_time_s += seconds

    def record_eval(self, forward_flops: float) -> None:
        self.totals.eval_flops += forward_flops
