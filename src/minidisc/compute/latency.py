"""Measured inference time of models on this process's device and precision.

What a FLOP count cannot say: on a GPU a student of a tenth of the teacher's FLOPs may
be only twice as fast (kernel launches, the unpruned width's memory traffic), so the
λ-tradeoff may weigh measured speed-up (``--cost latency``) and the compress report
states the student's measured time next to its FLOPs ratio (issue 15, part 4).

The measurement: every model runs a forward over the same random batch of ``batch``
sequences × ``tokens`` tokens (ids drawn from the vocabulary with a fixed seed, no
padding), in inference mode, under the run's precision (:func:`minidisc.runtime.current`:
its device and autocast). After one warm-up round, ``repeats`` rounds time one forward of
every model in turn -- interleaved, so a load from other processes hits all alike -- each
between two device synchronisations; a model's time is the median over rounds, in
milliseconds. Speed-up = reference time / model time (> 1: faster than the reference).

``benchmarks/subnet_speed.py`` and ``benchmarks/gpu.py`` time models the same way
(:func:`forward_ms`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

#: Defaults of a measurement: the issue's batch of 32 × 128 tokens, 5 timed rounds.
BATCH = 32
TOKENS = 128
REPEATS = 5


@dataclass(frozen=True)
class Setting:
    """What a measurement ran with (recorded beside every time).

    Attributes:
        batch: sequences per forward. tokens: tokens per sequence.
        precision: the runtime precision (``fp32``, ``bf16``, …). device: its name
            (:func:`minidisc.runtime.device_name`). repeats: timed rounds (median).
    """

    batch: int
    tokens: int
    precision: str
    device: str
    repeats: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.device}, {self.precision}, batch {self.batch} × {self.tokens} tokens, median of {self.repeats}"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_seconds(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> float:
    """Wall seconds of one forward of ``model`` on ``inputs``, between device syncs."""
    device = next(iter(inputs.values())).device
    from minidisc.runtime import current

    with torch.inference_mode(), current().autocast():
        synchronize(device)
        start = time.perf_counter()
        model(**inputs)
        synchronize(device)
    return time.perf_counter() - start


def forward_ms(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], repeats: int) -> float:
    """Median milliseconds of ``repeats`` forwards after one warm-up forward."""
    times = [forward_seconds(model, inputs) for _ in range(repeats + 1)][1:]
    return statistics.median(times) * 1e3


def random_inputs(vocab_size: int, batch: int, tokens: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """``input_ids (batch, tokens)`` drawn from the vocabulary and an all-ones ``attention_mask``."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, tokens), generator=gen)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def max_positions(config: Any) -> int:
    """The longest input ``config``'s position embeddings take (RoBERTa-style position ids
    start after the padding index); a very large number for models without a limit."""
    limit = getattr(config, "max_position_embeddings", None) or 1 << 30
    if getattr(config, "model_type", "") in ("roberta", "xlm-roberta"):
        limit -= (getattr(config, "pad_token_id", None) or 0) + 1
    return limit


def measure(
    models: Mapping[Hashable, torch.nn.Module],
    *,
    batch: int = BATCH,
    tokens: int = TOKENS,
    repeats: int = REPEATS,
) -> tuple[dict[Hashable, float], Setting]:
    """Median forward milliseconds of every model (module doc), placed on the runtime's
    device and in eval mode first.

    Args:
        models: label → model; all share a vocabulary (the first model's is used).
        batch, tokens: the input shape (``tokens`` capped at the shortest position limit
            of the models, :func:`max_positions`; the setting records what ran). repeats: timed rounds (≥ 1).

    Returns:
        ``({label: ms}, setting)``.

    Raises:
        ValueError: no models, or ``batch``, ``tokens`` or ``repeats`` below 1.
    """
    from minidisc.runtime import current, device_name

    if not models or min(batch, tokens, repeats) < 1:
        raise ValueError(f"measure needs models and batch, tokens, repeats >= 1; got {len(models)} models, "
                         f"batch {batch}, tokens {tokens}, repeats {repeats}")
    tokens = min(tokens, *(max_positions(model.config) for model in models.values()))
    rt = current()
    placed = {key: rt.place(model.eval()) for key, model in models.items()}
    vocab = next(iter(placed.values())).config.vocab_size
    inputs = random_inputs(vocab, batch, tokens, rt.device)
    times: dict[Hashable, list[float]] = {key: [] for key in placed}
    for round_index in range(repeats + 1):  # round 0 warms up
        for key, model in placed.items():
            seconds = forward_seconds(model, inputs)
            if round_index:
                times[key].append(seconds)
    setting = Setting(batch, tokens, rt.precision, device_name(rt.device), repeats)
    return {key: statistics.median(t) * 1e3 for key, t in times.items()}, setting


def speedups(ms: Mapping[Hashable, float], reference: Hashable) -> dict[Hashable, float]:
    """``ms[reference] / ms[key]`` for every key."""
    return {key: ms[reference] / value for key, value in ms.items()}


def latency_cost(speedup: float) -> float:
    """The λ-tradeoff's cost term of a candidate ``speedup`` times faster than its teacher:
    the fraction of the teacher's time it saves, ``1 − 1/speedup``. Where time is
    proportional to FLOPs this is the FLOPs sparsity, so λ keeps its meaning."""
    return 1.0 - 1.0 / speedup
