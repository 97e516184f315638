"""Coefficients of the supervised and distillation scaling laws, as plain data.

Busbridge et al., "Distillation Scaling Laws" (arXiv 2502.08606, ICML 2025):
the supervised law is Eq. 1 and the distillation law Eq. 8; the defaults here are the
paper's fitted coefficients (Table 6). A parameter set is a frozen dataclass that
round-trips through JSON, so a fit made with :mod:`minidisc.scaling.fit` (or by hand)
can be saved, shared and loaded in place of the paper's values.

JSON layout (every section optional; a missing section means the paper's values)::

    {"supervised":   {"E": 1.22, "A": 3355, "B": 18186, "alpha": 0.408,
                      "beta": 0.431, "gamma": 0.452},
     "distillation": {"A": 2243, "B": 24181, "alpha": 0.321, "beta": 0.637,
                      "gamma": 0.764, "c0": 2.549, "c1": 522.6, "f1": 0.09, "d1": 1.315}}

An optional ``"flops_model"`` section holds the F(N) constants of Eq. 69 the laws were
measured with (``{"rho": 32, "omega": 12.1, "n_ctx": 256, "n_vocab": 4505}``; see
:class:`~minidisc.scaling.compute.FlopsModel`), read by :func:`load_flops_model`. Other
top-level keys (a fit's confidence intervals, provenance) are ignored on load.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from minidisc.errors import ConfigError
from minidisc.fileio import write_json
from minidisc.scaling.compute import FlopsModel

__all__ = [
    "DistillationParams",
    "ScalingLawParams",
    "SupervisedParams",
    "load_flops_model",
    "load_params",
    "save_params",
]


def _check_finite(obj: object, positive: tuple[str, ...]) -> None:
    """Raise ConfigError unless every field is finite and the named ones are > 0;
    store every field as a Python float."""
    name = type(obj).__name__
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise ConfigError(f"{name}.{f.name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{name}.{f.name} must be finite, got {value!r}")
        if f.name in positive and value <= 0:
            raise ConfigError(f"{name}.{f.name} must be > 0, got {value!r}")
        object.__setattr__(obj, f.name, float(value))  # plain floats, e.g. from NumPy


@dataclass(frozen=True)
class SupervisedParams:
    """Coefficients of the supervised law L(N, D) = E + (A/N^alpha + B/D^beta)^gamma (Eq. 1).

    L is validation cross-entropy in nats, N non-embedding parameters, D training
    tokens. Defaults: Table 6 of Busbridge et al. (2025).
    """

    E: float = 1.220
    A: float = 3355.0
    B: float = 18186.0
    alpha: float = 0.408
    beta: float = 0.431
    gamma: float = 0.452

    def __post_init__(self) -> None:
        _check_finite(self, positive=("E", "A", "B"))

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupervisedParams:
        """Build from a mapping with exactly this class's keys (missing keys: defaults).

        Raises:
            ConfigError: on an unknown key or an invalid value.
        """
        return _from_dict(cls, data, "supervised")

    @property
    def compute_optimal_exponents(self) -> tuple[float, float]:
        """(a, b) with N_opt ∝ C^a, D_opt ∝ C^b: a = β/(α+β), b = α/(α+β)."""
        total = self.alpha + self.beta
        return self.beta / total, self.alpha / total


@dataclass(frozen=True)
class DistillationParams:
    """Coefficients of the distillation law (Eq. 8), Table 6 of Busbridge et al. (2025).

    ``A, B, alpha, beta, gamma`` are the paper's primed A′, B′, α′, β′, γ′ (the student
    power law); ``c0`` scales the teacher-loss prefactor L_T^(−c0); ``c1``, ``f1``
    shape the capacity-gap break; ``d1`` is where the break sits (L_T / L̃_S = d1).
    """

    A: float = 2243.0
    B: float = 24181.0
    alpha: float = 0.321
    beta: float = 0.637
    gamma: float = 0.764
    c0: float = 2.549
    c1: float = 522.6
    f1: float = 0.090
    d1: float = 1.315

    def __post_init__(self) -> None:
        _check_finite(self, positive=("A", "B", "f1", "d1"))

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DistillationParams:
        """Build from a mapping with exactly this class's keys (missing keys: defaults).

        Raises:
            ConfigError: on an unknown key or an invalid value.
        """
        return _from_dict(cls, data, "distillation")


@dataclass(frozen=True)
class ScalingLawParams:
    """Both laws together: what prediction, planning and crossover need."""

    supervised: SupervisedParams = field(default_factory=SupervisedParams)
    distillation: DistillationParams = field(default_factory=DistillationParams)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {"supervised": self.supervised.to_dict(),
                "distillation": self.distillation.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingLawParams:
        """Build from ``{"supervised": {...}, "distillation": {...}}``; missing sections
        take the paper's values, other top-level keys are ignored.

        Raises:
            ConfigError: if a section is not a mapping or holds unknown/invalid values.
        """
        if not isinstance(data, dict):
            raise ConfigError("scaling-law parameters must be a JSON object")
        sup = data.get("supervised", {})
        dist = data.get("distillation", {})
        return cls(SupervisedParams.from_dict(sup), DistillationParams.from_dict(dist))


def _from_dict(cls: type, data: Any, section: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"the '{section}' parameters must be a JSON object, got {data!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown {section} parameter(s) {unknown}; expected keys among {sorted(known)}"
        )
    values = {}
    for key, value in data.items():
        try:
            values[key] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{section}.{key} must be a number, got {value!r}") from None
    return cls(**values)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"parameter file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"parameter file {path} is not valid JSON: {err}") from None


def load_params(path: str | os.PathLike[str]) -> ScalingLawParams:
    """Read a parameter JSON file (layout in the module docstring).

    Raises:
        ConfigError: if the file is missing, not JSON, or holds invalid values.
    """
    path = Path(path)
    data = _read(path)
    try:
        return ScalingLawParams.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def load_flops_model(path: str | os.PathLike[str]) -> FlopsModel | None:
    """The ``flops_model`` section of a parameter file, or None if it has none.

    Raises:
        ConfigError: if the file is missing or not JSON, or the section is invalid.
    """
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict) or "flops_model" not in data:
        return None
    try:
        return FlopsModel.from_dict(data["flops_model"])
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def save_params(
    path: str | os.PathLike[str],
    params: ScalingLawParams,
    extra: dict[str, Any] | None = None,
    flops_model: FlopsModel | None = None,
) -> None:
    """Write ``params`` (plus the F(N) constants, if given, and optional extra
    top-level keys) as JSON, atomically."""
    payload: dict[str, Any] = params.to_dict()
    if flops_model is not None:
        payload["flops_model"] = flops_model.to_dict()
    if extra:
        payload.update({k: v for k, v in extra.items() if k not in payload})
    write_json(path, payload)
