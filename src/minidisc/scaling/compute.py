"""Compute model of distillation: forward FLOPs per token and total cost per scenario.

Busbridge et al., "Distillation Scaling Laws" (arXiv 2502.08606):

* forward FLOPs per token (Eq. 69, App. H.1)::

      F(N) = 2N · (1 + σ1·n_ctx/N^(1/3) + σ2·n_vocab/N^(2/3))
      σ1 = (1/(ρ·ω²))^(1/3),   σ2 = (ρ/ω)^(1/3)

  where ω = N/(n_layers·d_model²) (12 for multi-head attention with a gated FFN of
  width 8/3·d_model) and ρ = d_model/n_layers (128 for the paper's models). The two
  correction terms are the attention-logit and the output-projection FLOPs.
* total distillation cost (Eq. 9)::

      FLOPs = 3·F(N_S)·D_S + F(N_T)·(δ_lgt·D_S + δ_pre·3·D_T)

  with the four scenarios of Table 2 choosing (δ_lgt, δ_pre). Training costs three
  forward passes per token (forward + backward).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from minidisc.errors import ConfigError

__all__ = [
    "FLOPS_MODEL_FIELDS",
    "SCENARIOS",
    "FlopsModel",
    "Scenario",
    "distillation_flops",
    "forward_flops_per_token",
    "get_scenario",
    "non_embedding_params",
    "supervised_flops",
]

FloatOrArray = float | NDArray[np.float64]
FLOPS_MODEL_FIELDS = ("rho", "omega", "n_ctx", "n_vocab")


@dataclass(frozen=True)
class FlopsModel:
    """Architecture constants of Eq. 69; defaults are the paper's (App. H.1).

    Eq. 69 is 2N + 2·n_ctx·n_layers·d_model + 2·n_vocab·d_model FLOPs per token with
    n_layers and d_model recovered from N through ρ and ω. Models counted differently
    fit it through *effective* values: e.g. a bidirectional encoder scoring the full
    S-token block (QKᵀ and A·V: 4·S·d_model per layer) has n_ctx = 2·S, and an MLM
    head run on a fraction p of the tokens has n_vocab = p·(vocabulary + d_model)
    (its d×d transform included). Non-integer values are allowed for that reason.

    Attributes:
        rho: d_model / n_layers (aspect ratio).
        omega: N / (n_layers·d_model²); 2 + 2/g_size + n_ffn·ρ_ffn = 12 for MHA
            (g_size = 1) with a gated FFN (n_ffn = 3, ρ_ffn = 8/3); also 12 for a
            plain 4×d_model FFN (BERT).
        n_ctx: context length in tokens (effective, see above).
        n_vocab: vocabulary size (effective, see above).
    """

    rho: float = 128.0
    omega: float = 12.0
    n_ctx: float = 4096
    n_vocab: float = 32168

    def __post_init__(self) -> None:
        for name in FLOPS_MODEL_FIELDS:
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                    or not (math.isfinite(value) and value > 0)):
                raise ConfigError(f"FlopsModel.{name} must be finite and > 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        """The constants as a JSON-ready dict (the ``flops_model`` section of a
        parameter file)."""
        return {name: getattr(self, name) for name in FLOPS_MODEL_FIELDS}

    @classmethod
    def from_dict(cls, data: object) -> FlopsModel:
        """Build from a mapping of some of ``rho, omega, n_ctx, n_vocab`` (others: the
        paper's values).

        Raises:
            ConfigError: if ``data`` is not a mapping, has unknown keys or bad values.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"the 'flops_model' section must be a JSON object, got {data!r}")
        unknown = sorted(set(data) - set(FLOPS_MODEL_FIELDS))
        if unknown:
            raise ConfigError(f"unknown flops_model key(s) {unknown}; expected keys among "
                              f"{list(FLOPS_MODEL_FIELDS)}")
        return cls(**data)

    @property
    def sigma1(self) -> float:
        """(1/(ρ·ω²))^(1/3): attention-logit FLOPs coefficient."""
        return (1.0 / (self.rho * self.omega**2)) ** (1.0 / 3.0)

    @property
    def sigma2(self) -> float:
        """(ρ/ω)^(1/3): output-projection (unembedding) FLOPs coefficient."""
        return (self.rho / self.omega) ** (1.0 / 3.0)


def _positive(x: ArrayLike, what: str) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ConfigError(f"{what} must be finite and > 0, got {x!r}")
    return arr


def _nonneg(x: ArrayLike, what: str) -> NDArray[np.float64]:
    arr = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError(f"{what} must be finite and >= 0, got {x!r}")
    return arr


def _out(x: NDArray[np.float64]) -> FloatOrArray:
    return float(x) if np.ndim(x) == 0 else x


def forward_flops_per_token(n: ArrayLike, model: FlopsModel | None = None) -> FloatOrArray:
    """F(N): forward-pass FLOPs per token of a model with N non-embedding parameters (Eq. 69).

    Args:
        n: non-embedding parameters (> 0), any shape.
        model: architecture constants; default the paper's (ρ=128, ω=12, n_ctx=4096,
            n_vocab=32168).

    Returns:
        FLOPs per token (not GFLOPs), same shape as ``n``.

    Raises:
        ConfigError: if N is not finite and positive.
    """
    m = model or FlopsModel()
    arr = _positive(n, "N (parameters)")
    root = np.cbrt(arr)
    out = 2.0 * arr * (1.0 + m.sigma1 * m.n_ctx / root + m.sigma2 * m.n_vocab / root**2)
    return _out(out)


def supervised_flops(n: ArrayLike, d: ArrayLike, model: FlopsModel | None = None) -> FloatOrArray:
    """3·F(N)·D: FLOPs to train an N-parameter model on D tokens (forward + backward)."""
    return _out(3.0 * np.asarray(forward_flops_per_token(n, model)) * _positive(d, "D (tokens)"))


@dataclass(frozen=True)
class Scenario:
    """Which teacher costs a distillation budget pays for (Table 2).

    Attributes:
        name: CLI name.
        delta_logits: δ_lgt, 1 if teacher inference on the D_S distillation tokens is
            paid, else 0 (logits cached or amortised over many students).
        delta_pretrain: δ_pre, 1 if training the teacher (3·F(N_T)·D_T) is paid.
        description: one line for --help and reports.
    """

    name: str
    delta_logits: int
    delta_pretrain: int
    description: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("best-case", 0, 0, "teacher exists and its logits are free (fully amortised)"),
        Scenario("teacher-inference", 1, 0, "teacher exists; its forward passes on D_S are paid"),
        Scenario("teacher-pretraining", 0, 1, "teacher must be trained; logits amortised"),
        Scenario(
            "teacher-pretraining-inference", 1, 1, "teacher must be trained and its logits paid"
        ),
    )
}


def get_scenario(name: str | Scenario) -> Scenario:
    """Look up a scenario by CLI name.

    Raises:
        ConfigError: if the name is unknown (the message lists the valid names).
    """
    if isinstance(name, Scenario):
        return name
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(
            f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}"
        ) from None


def distillation_flops(
    student_params: ArrayLike,
    student_tokens: ArrayLike,
    teacher_params: ArrayLike,
    teacher_tokens: ArrayLike,
    scenario: str | Scenario = "teacher-pretraining-inference",
    model: FlopsModel | None = None,
) -> FloatOrArray:
    """Total FLOPs of a distillation (Eq. 9): 3F(N_S)D_S + F(N_T)(δ_lgt D_S + δ_pre 3 D_T).

    Args:
        student_params: N_S (non-embedding parameters).
        student_tokens: D_S (distillation tokens, >= 0).
        teacher_params: N_T.
        teacher_tokens: D_T (teacher pretraining tokens, >= 0).
        scenario: a Table 2 scenario or its name.
        model: F(N) constants.

    Raises:
        ConfigError: on an unknown scenario or invalid inputs.
    """
    s = get_scenario(scenario)
    ds = _nonneg(student_tokens, "D_S (student tokens)")
    dt = _nonneg(teacher_tokens, "D_T (teacher tokens)")
    fs = np.asarray(forward_flops_per_token(student_params, model))
    ft = np.asarray(forward_flops_per_token(teacher_params, model))
    total = 3.0 * fs * ds + ft * (s.delta_logits * ds + s.delta_pretrain * 3.0 * dt)
    return _out(total)


def non_embedding_params(
    n_layers: int,
    d_model: int,
    d_ffn: int,
    n_heads: int | None = None,
    n_kv_heads: int | None = None,
    gated_ffn: bool = True,
) -> int:
    """N: the non-embedding parameter count the scaling laws use, from an architecture.

    Counts the attention projections (Q and O: d_model² each; K and V: d_model² ·
    n_kv_heads/n_heads each) and the FFN (3·d_model·d_ffn gated, 2·d_model·d_ffn
    otherwise) per layer. Embeddings, the output head, norms and biases are excluded,
    as in the paper (e.g. 8 layers, d_model 1024, gated d_ffn 2816 → 102,760,448,
    the paper's "103M").

    Raises:
        ConfigError: on non-positive sizes or n_heads not divisible by n_kv_heads.
    """
    for name, value in (("n_layers", n_layers), ("d_model", d_model), ("d_ffn", d_ffn)):
        if int(value) <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    kv_fraction = 1.0
    if n_heads is not None or n_kv_heads is not None:
        heads = int(n_heads or n_kv_heads or 1)
        kv = int(n_kv_heads or heads)
        if heads <= 0 or kv <= 0 or heads % kv:
            raise ConfigError(
                f"n_heads ({heads}) must be a positive multiple of n_kv_heads ({kv})"
            )
        kv_fraction = kv / heads
    attention = 2 * d_model * d_model + 2 * round(d_model * d_model * kv_fraction)
    ffn = (3 if gated_ffn else 2) * d_model * d_ffn
    return int(n_layers * (attention + ffn))
