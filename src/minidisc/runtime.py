"""Where and in which precision every stage computes: the one place that decides.

The device is ``accelerate``'s device of this process (``PartialState().device``, built
as :func:`minidisc.fileio.process_state` builds it): the GPU of this rank under
``accelerate launch``/``torchrun``, the GPU when there is one, the CPU otherwise or with
``ACCELERATE_USE_CPU=1`` — the device the HF Trainer stages use too.

The precision is what ``--precision`` (the ``precision`` key of every YAML config) asks:

========  ==============================================================================
``auto``  ``bf16`` where the device is a CUDA GPU that supports it, else ``fp32``
``bf16``  bfloat16 autocast (weights and optimiser state stay float32); CPU or GPU
``fp16``  float16 autocast with loss scaling; CUDA GPUs only
``tf32``  float32 weights and activations, TensorFloat-32 matmuls; Ampere+ CUDA GPUs
``fp32``  plain float32 (the CPU default: CPU results are those of earlier releases)
========  ==============================================================================

A command calls :func:`configure` once, before any work (an impossible request stops it
there, with what to pick instead); every stage then asks :func:`current`. Trainer stages
pass :meth:`Runtime.trainer_flags` to ``TrainingArguments``; loops outside a Trainer
(importance, perplexity, held-out losses, teacher forwards) run under
:meth:`Runtime.autocast`. Every model that computes is moved by :func:`place` (the
one placement function: it marks each module it placed, so a test can check that
nothing computes elsewhere). Losses and the λ-tradeoff stay float32: objectives upcast
half-precision inputs (:mod:`minidisc.objectives.functional`), and Trainer outputs are
converted back to float32 by ``accelerate``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args

from minidisc.errors import ConfigError

if TYPE_CHECKING:
    import torch

PrecisionName = Literal["auto", "bf16", "fp16", "tf32", "fp32"]
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)
#: The attribute :func:`place` sets on every module it moves: the device it moved it to.
PLACED = "_minidisc_placed_on"

M = TypeVar("M")


@dataclass(frozen=True)
class Runtime:
    """The device and the resolved precision of this process.

    Attributes:
        device: where every model computes (a CUDA device always with its index).
        precision: ``bf16``, ``fp16``, ``tf32`` or ``fp32`` (never ``auto``).
        requested: what the command asked for (``auto`` included).
    """

    device: torch.device
    precision: str
    requested: str = "fp32"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: no autocast, for ``fp32`` and ``tf32``)."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast`` on this device with the precision's dtype; a no-op for
        ``fp32``/``tf32`` (so float32 runs compute exactly as without it)."""
        import torch

        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def trainer_flags(self) -> dict[str, Any]:
        """The ``TrainingArguments`` fields of this precision (``bf16``, ``fp16``, ``tf32``,
        and ``use_cpu`` on a CPU, which the Trainer needs for bf16 there)."""
        flags: dict[str, Any] = {"bf16": self.precision == "bf16", "fp16": self.precision == "fp16"}
        if self.precision == "tf32":
            flags["tf32"] = True
        if self.device.type == "cpu" and self.precision != "fp32":
            flags["use_cpu"] = True  # the Trainer refuses bf16 without a GPU unless told it is on the CPU
        return flags

    def place(self, module: M) -> M:
        """Move ``module`` (an ``nn.Module``) to this device, in place, and mark it and
        every submodule as placed here (:data:`PLACED`). Returns ``module``."""
        module.to(self.device)  # type: ignore[attr-defined]
        for sub in module.modules():  # type: ignore[attr-defined]
            object.__setattr__(sub, PLACED, self.device)
        return module

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for manifests and reports: device, its name, precision."""
        return {"device": str(self.device), "device_name": device_name(self.device),
                "precision": self.precision, "requested": self.requested}


def resolve(precision: str = "fp32", device: torch.device | None = None) -> Runtime:
    """The runtime of ``precision`` on ``device`` (default: accelerate's device of this
    process), checked against what the device supports.

    Raises:
        ConfigError: an unknown precision; ``fp16`` or ``tf32`` without a CUDA GPU (or
            ``tf32`` on one older than Ampere); ``bf16`` on a CUDA GPU without bfloat16.
            The message says what to pick instead.
    """
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    device = _indexed(device if device is not None else accelerator_device())
    cuda = device.type == "cuda"
    if precision == "auto":
        chosen = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        return Runtime(device, chosen, "auto")
    if precision == "fp16" and not cuda:
        raise ConfigError(
            f"--precision fp16 needs a CUDA GPU, but this process runs on {device.type}: "
            "use bf16 (autocast on the CPU too) or fp32 (the CPU default)"
        )
    if precision == "tf32" and not (cuda and torch.cuda.get_device_capability(device)[0] >= 8):
        where = f"a {device_name(device)} (older than Ampere)" if cuda else device.type
        raise ConfigError(f"--precision tf32 needs an NVIDIA GPU of the Ampere generation or newer, not {where}: "
                          "use fp32" + (" or fp16" if cuda else " or bf16"))
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"--precision bf16: {device_name(device)} does not support bfloat16: use fp16 or fp32")
    return Runtime(device, precision, precision)


_current: Runtime | None = None


def configure(precision: str = "auto") -> Runtime:
    """Decide this process's runtime for the command about to run (before any work) and
    enable TF32 matmuls when asked; every stage then reads it with :func:`current`.

    Raises:
        ConfigError: the precision is not available here (:func:`resolve`).
    """
    import torch

    global _current
    runtime = resolve(precision)
    if runtime.device.type == "cuda":  # TF32 only when asked: fp32 means fp32
        torch.backends.cuda.matmul.allow_tf32 = runtime.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = runtime.precision == "tf32"
    _current = runtime
    return runtime


def current() -> Runtime:
    """The runtime :func:`configure` decided; plain ``fp32`` on accelerate's device when
    no command configured one (library use)."""
    return _current if _current is not None else resolve("fp32")


def place(module: M) -> M:
    """Move ``module`` to the current device (:meth:`Runtime.place`); the one call every
    stage uses to put a model where it computes."""
    return current().place(module)


def autocast() -> contextlib.AbstractContextManager[Any]:
    """The current precision's autocast (:meth:`Runtime.autocast`)."""
    return current().autocast()


def accelerator_device() -> torch.device:
    """``accelerate``'s device of this process (:func:`minidisc.fileio.process_state`)."""
    from minidisc.fileio import process_state

    return process_state().device


def device_name(device: torch.device) -> str:
    """A readable name: the GPU's model for CUDA (``NVIDIA H200``), else the device type."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def _indexed(device: torch.device) -> torch.device:
    """``cuda`` → ``cuda:<current index>``, as the Trainer names it (other devices as given)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def stage_runtimes(stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``runtime`` record of every manifest stage that has one (runs made before it
    was recorded have none), for a report."""
    return {name: entry["runtime"] for name, entry in stages.items() if isinstance(entry.get("runtime"), dict)}


def describe_runtimes(runtimes: dict[str, dict[str, Any]]) -> str:
    """One line for a report: each distinct precision and device, with the stages it ran
    when they differ, e.g. ``bf16 on NVIDIA H200 (cuda:0)`` or ``fp32 on cpu``."""
    groups: dict[str, list[str]] = {}
    for name, r in runtimes.items():
        where = r["device"] if r.get("device_name") in (None, r["device"].split(":")[0]) else f"{r['device_name']} ({r['device']})"
        groups.setdefault(f"{r['precision']} on {where}", []).append(name)
    if len(groups) <= 1:
        return next(iter(groups), "not recorded")
    return "; ".join(f"{what} ({', '.join(names)})" for what, names in groups.items())
