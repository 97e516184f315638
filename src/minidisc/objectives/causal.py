"""Divergences between next-token distributions, for distilling causal (decoder) LMs.

Notation: ``p = softmax(z_T/τ)`` is the teacher's distribution, ``q = softmax(z_S/τ)``
the student's, both over the vocabulary at one position; ``KL(a ‖ b) = Σ_v a_v (log a_v
− log b_v)``. Per position:

* forward KL ``KL(p ‖ q)``: mean-seeking; what vanilla KD minimises (Hinton et al. 2015);
* reverse KL ``KL(q ‖ p)``: mode-seeking (MiniLLM, Gu et al. 2024, eq. 1);
* generalized JSD(β) ``β·KL(p ‖ m) + (1−β)·KL(q ‖ m)``, ``m = β·p + (1−β)·q``
  (GKD, Agarwal et al. 2024, eq. 3), β in (0, 1): the symmetric Jensen–Shannon
  divergence at β = 0.5, ≈ β·KL(p ‖ q) as β → 0 and ≈ (1−β)·KL(q ‖ p) as β → 1;
* α-skew KL ``KL(p ‖ α·p + (1−α)·q)`` (DistiLLM, Ko et al. 2024, arXiv 2402.03898,
  eq. 3; α in [0, 1), the paper uses α = 0.1): forward KL at α = 0, bounded by
  ``log(1/α)`` above, and with gradients that stay finite where ``q → 0``;
* α-skew reverse KL ``KL(q ‖ (1−α)·p + α·q)`` (same paper, eq. 4).

All five are ≥ 0 and 0 exactly when ``p = q``. Each is multiplied by ``τ²`` (as
Hinton et al. do for the forward KL: it keeps gradient magnitudes comparable across
temperatures), so at ``τ = 1`` it is the plain divergence. Logits of shape ``(B, L, V)``
are averaged over the positions a ``(B, L)`` mask selects, weighted per token (a sum
over selected positions divided by their count, not a mean of per-sequence means);
``(N, V)`` rows (one distribution per example) are averaged over rows. Half-precision
logits are upcast to float32 first; float32/float64 stay as they are. Mixtures are
formed in log space (``logsumexp``). A vocabulary entry with probability 0 (a ``-inf``
logit) contributes 0 to ``KL(a ‖ b)`` where ``a`` is 0, never NaN; where only ``b`` is 0
the divergence is ``+inf`` (the forward KL where the student rules out a word the
teacher allows, the reverse KL the other way round), while JSD and the skewed forms
stay finite: their mixtures are positive wherever either side is.

Which positions count for a causal LM (:func:`next_token_positions`): logits at
position ``t`` are the prediction of token ``t + 1``, so position ``t`` takes part when
it is a real token and its target ``labels[t + 1]`` is not ignored (``-100``); the last
position of a row has no target in the batch and is left out when labels are given.
``batch["distill_mask"]`` (when present) replaces the label rule; without labels every
real token counts.

The objectives (:class:`ForwardKLObjective` …) are label-free. They are meant for
``task_type="causal_lm"``; on masked-LM, token-classification or sequence-classification
outputs they compare the same per-position (or per-example) class distributions, over
the positions :func:`minidisc.objectives.base.logit_selection` picks. Regression has no
distribution: it is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor

from minidisc.errors import ConfigError
from minidisc.objectives import functional as fn
from minidisc.objectives.base import (
    IGNORE_INDEX,
    SEQUENCE_TASKS,
    Objective,
    check_positions,
    check_positive,
    gathered_positions,
    logit_selection,
    real_tokens,
)
from minidisc.objectives.catalog import OBJECTIVE_DESCRIPTIONS
from minidisc.objectives.signals import Signals

#: Divergence kinds :func:`lm_divergence` computes, in the order of the module doc.
DIVERGENCES: tuple[str, ...] = ("forward_kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl")

# ---------------------------------------------------------------------------
# per-row divergences on log-probabilities


def kl_rows(logp_a: Tensor, logp_b: Tensor) -> Tensor:
    """``KL(a ‖ b) = Σ_v a_v (log a_v − log b_v)`` per row.

    Entries with ``a_v = 0`` contribute 0 (their log-probabilities are never used, so a
    ``-inf`` there gives no NaN, forward or backward); an entry with ``a_v > 0 = b_v``
    makes the row ``+inf``, as the divergence is.

    Args:
        logp_a, logp_b: ``(..., V)`` log-probabilities (rows sum to 1 after ``exp``).

    Returns:
        ``(...)``.
    """
    a = logp_a.exp()
    support = a > 0
    zero = torch.zeros((), dtype=logp_a.dtype, device=logp_a.device)
    diff = torch.where(support, logp_a, zero) - torch.where(support, logp_b, zero)
    return torch.where(support, a * diff, zero).sum(-1)


def log_mixture(logp_a: Tensor, logp_b: Tensor, weight_a: float) -> Tensor:
    """``log(w·a + (1−w)·b)`` elementwise, computed as a ``logsumexp``.

    Args:
        logp_a, logp_b: log-probabilities of the same shape.
        weight_a: ``w`` in [0, 1]; ``w = 0`` returns ``logp_b`` and ``w = 1`` ``logp_a``
            exactly.
    """
    if weight_a <= 0.0:
        return logp_b
    if weight_a >= 1.0:
        return logp_a
    return torch.logaddexp(logp_a + math.log(weight_a), logp_b + math.log1p(-weight_a))


def divergence_rows(
    logp_student: Tensor,
    logp_teacher: Tensor,
    kind: str,
    *,
    beta: float = 0.5,
    alpha: float = 0.1,
) -> Tensor:
    """One divergence per row between teacher ``p`` and student ``q`` (module doc).

    Args:
        logp_student, logp_teacher: ``(..., V)`` log-probabilities ``log q``, ``log p``.
        kind: one of :data:`DIVERGENCES`.
        beta: JSD weight β in (0, 1) (``jsd`` only).
        alpha: skew α in [0, 1) (``skew_kl`` / ``skew_reverse_kl`` only).

    Returns:
        ``(...)``, each ≥ 0 (up to rounding).

    Raises:
        ValueError: unknown ``kind`` or a weight outside its range.
    """
    if kind == "forward_kl":
        return kl_rows(logp_teacher, logp_student)
    if kind == "reverse_kl":
        return kl_rows(logp_student, logp_teacher)
    if kind == "jsd":
        _check_open_fraction("beta", beta)
        logm = log_mixture(logp_teacher, logp_student, beta)
        return beta * kl_rows(logp_teacher, logm) + (1.0 - beta) * kl_rows(logp_student, logm)
    if kind == "skew_kl":
        _check_skew(alpha)
        return kl_rows(logp_teacher, log_mixture(logp_teacher, logp_student, alpha))
    if kind == "skew_reverse_kl":
        _check_skew(alpha)
        return kl_rows(logp_student, log_mixture(logp_student, logp_teacher, alpha))
    raise ValueError(f"unknown divergence {kind!r}; choose one of {', '.join(DIVERGENCES)}")


def _check_open_fraction(name: str, value: float) -> None:
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be in (0, 1) (the divergence is 0 at both ends), got {value}")


def _check_skew(alpha: float) -> None:
    if not 0.0 <= float(alpha) < 1.0:
        raise ValueError(f"alpha must be in [0, 1) (alpha = 1 makes the divergence 0), got {alpha}")


# ---------------------------------------------------------------------------
# losses on logits


def lm_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    kind: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
) -> Tensor:
    """``τ² ·`` the token-weighted mean of one divergence over the selected positions.

    Args:
        student_logits, teacher_logits: ``(B, L, V)`` next-token logits (or ``(N, V)``
            rows), same shape. The teacher's are detached.
        mask: ``(B, L)`` bool, True where a position counts (3-D logits only); ``None``
            counts every position.
        kind: one of :data:`DIVERGENCES`.
        temperature: ``τ > 0``; both sides are softened by it.
        beta, alpha: see :func:`divergence_rows`.

    Returns:
        A float32 (float64 for float64 inputs) scalar; 0, still on the student's graph,
        when no position is selected.

    Raises:
        ValueError: shapes differ, a mask that does not fit, ``τ ≤ 0``, unknown ``kind``,
            or a weight out of range.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ; student and teacher need the same vocabulary"
        )
    if not float(temperature) > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s = fn.select_rows(student_logits, mask)
    t = fn.select_rows(teacher_logits.detach(), mask)
    if s.shape[0] == 0:
        return fn._zero_like_graph(fn._upcast(student_logits))
    logp_s = torch.log_softmax(fn._upcast(s) / temperature, dim=-1)
    logp_t = torch.log_softmax(fn._upcast(t) / temperature, dim=-1)
    rows = divergence_rows(logp_s, logp_t, kind, beta=beta, alpha=alpha)
    return rows.mean() * temperature**2


def forward_kl(
    student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None, temperature: float = 1.0
) -> Tensor:
    """``τ² · KL(p ‖ q)``, token-weighted mean (:func:`lm_divergence`)."""
    return lm_divergence(student_logits, teacher_logits, mask, kind="forward_kl", temperature=temperature)


def reverse_kl(
    student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None, temperature: float = 1.0
) -> Tensor:
    """``τ² · KL(q ‖ p)``, token-weighted mean (:func:`lm_divergence`)."""
    return lm_divergence(student_logits, teacher_logits, mask, kind="reverse_kl", temperature=temperature)


def generalized_jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    beta: float = 0.5,
) -> Tensor:
    """``τ² · JSD(β)(p ‖ q)`` (GKD, Agarwal et al. 2024), token-weighted mean."""
    return lm_divergence(
        student_logits, teacher_logits, mask, kind="jsd", temperature=temperature, beta=beta
    )


def skew_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    alpha: float = 0.1,
) -> Tensor:
    """``τ² · KL(p ‖ α·p + (1−α)·q)`` (DistiLLM, Ko et al. 2024, eq. 3), token-weighted mean."""
    return lm_divergence(
        student_logits, teacher_logits, mask, kind="skew_kl", temperature=temperature, alpha=alpha
    )


def skew_reverse_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    alpha: float = 0.1,
) -> Tensor:
    """``τ² · KL(q ‖ (1−α)·p + α·q)`` (DistiLLM, Ko et al. 2024, eq. 4), token-weighted mean."""
    return lm_divergence(
        student_logits, teacher_logits, mask, kind="skew_reverse_kl", temperature=temperature, alpha=alpha
    )


# ---------------------------------------------------------------------------
# positions


def next_token_positions(batch: Mapping[str, Tensor], like: Tensor, positions: str = "auto") -> Tensor:
    """The ``(B, L)`` bool positions of a causal LM whose next-token predictions count.

    ``positions="all"``: every real token (``attention_mask``). ``"auto"``:
    ``distill_mask & real`` when the batch has ``distill_mask``; else, with ``(B, L)``
    ``labels`` (``input_ids`` with ``-100`` where a token is ignored, as
    ``transformers`` causal LMs take them), the real positions ``t`` whose target
    ``labels[t + 1]`` is not ignored (the last position has no target: left out); else
    every real token.

    Args:
        batch: ``attention_mask`` and optionally ``distill_mask`` / ``labels``.
        like: a ``(B, L, …)`` tensor giving the shape and device when masks are absent.
        positions: ``"auto"`` or ``"all"``.
    """
    real = real_tokens(batch, like)
    if positions == "all":
        return real
    if batch.get("distill_mask") is not None:
        return batch["distill_mask"].bool() & real
    labels = batch.get("labels")
    if labels is None or labels.dim() != 2:
        return real
    has_target = torch.zeros_like(real)
    has_target[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return real & has_target


def divergence_positions(
    batch: Mapping[str, Tensor], task_type: str, logits: Tensor, positions: str = "auto"
) -> Tensor | None:
    """Which positions of ``logits`` a divergence objective averages over.

    ``causal_lm``: :func:`next_token_positions`; other token-level tasks:
    :func:`minidisc.objectives.base.logit_selection`; sequence tasks: ``None`` (every row).

    Raises:
        ConfigError: gathered causal-LM logits (the next-token rule needs every position).
    """
    if task_type in SEQUENCE_TASKS:
        return None
    if task_type == "causal_lm":
        if gathered_positions(batch) is not None:
            raise ConfigError(
                "causal-LM logits cannot be gathered: the next-token rule needs every position"
            )
        return next_token_positions(batch, logits, positions)
    return logit_selection(batch, task_type, logits, positions)


# ---------------------------------------------------------------------------
# objectives


class DivergenceObjective(Objective):
    """Base of the label-free next-token divergence objectives (see the module doc).

    Loss = ``τ² ·`` the token-weighted mean over :func:`divergence_positions` of the
    subclass's divergence between teacher and student distributions. Applies to causal
    LMs (``task_type="causal_lm"``, the intended use) and, comparing class
    distributions, to masked-LM, token- and sequence-classification outputs; not to
    regression.

    Args:
        task_type: the objectives' task type (default ``"causal_lm"``).
        temperature: ``τ > 0`` (default 1: the plain divergence).
        positions: ``"auto"`` or ``"all"`` (:func:`next_token_positions`).

    Raises:
        ConfigError: regression, or an option out of range.
    """

    kind: ClassVar[str] = ""

    def __init__(self, *, task_type: str = "causal_lm", temperature: float = 1.0, positions: str = "auto") -> None:
        super().__init__(task_type=task_type)
        if task_type == "regression":
            raise ConfigError(
                f"objective {self.name!r} compares probability distributions and regression outputs "
                "have none; use 'kd' (MSE on the outputs) for regression tasks"
            )
        self.temperature = check_positive("temperature", temperature)
        self.positions = check_positions(positions)

    def _weights(self) -> dict[str, float]:
        return {}

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        s_logits = student.require_logits(self.name)
        if teacher.topk is not None:  # a cached teacher: top-k + tail (minidisc.objectives.topk)
            from minidisc.objectives.topk import topk_divergence

            mask = divergence_positions(batch, self.task_type, s_logits, self.positions)
            loss = topk_divergence(
                s_logits, teacher.topk, mask, kind=self.kind, temperature=self.temperature, **self._weights()
            )
            return loss, self.parts(**{self.name: loss})
        t_logits = teacher.require_logits(self.name)
        if s_logits.shape != t_logits.shape:
            raise ConfigError(
                f"student logits {tuple(s_logits.shape)} and teacher logits {tuple(t_logits.shape)} "
                "differ; student and teacher need the same label set/vocabulary"
            )
        mask = divergence_positions(batch, self.task_type, s_logits, self.positions)
        loss = lm_divergence(
            s_logits, t_logits, mask, kind=self.kind, temperature=self.temperature, **self._weights()
        )
        return loss, self.parts(**{self.name: loss})

    def extra_repr(self) -> str:
        weights = "".join(f", {k}={v}" for k, v in self._weights().items())
        return f"task_type={self.task_type!r}, temperature={self.temperature}{weights}"


class ForwardKLObjective(DivergenceObjective):
    """Forward KL ``τ²·KL(p ‖ q)`` on next-token distributions, label-free (causal LMs;
    see :class:`DivergenceObjective`). ``kd`` with ``alpha=1`` computes the same
    divergence, averaged over every real token instead of the next-token positions."""

    name = "forward_kl"
    description = OBJECTIVE_DESCRIPTIONS["forward_kl"]
    kind = "forward_kl"


class ReverseKLObjective(DivergenceObjective):
    """Reverse KL ``τ²·KL(q ‖ p)`` (mode-seeking; MiniLLM, Gu et al. 2024), label-free
    (causal LMs; see :class:`DivergenceObjective`)."""

    name = "reverse_kl"
    description = OBJECTIVE_DESCRIPTIONS["reverse_kl"]
    kind = "reverse_kl"


class JSDObjective(DivergenceObjective):
    """Generalized JSD(β) ``τ²·[β·KL(p ‖ m) + (1−β)·KL(q ‖ m)]``, ``m = β·p + (1−β)·q``
    (GKD, Agarwal et al. 2024, eq. 3), label-free (causal LMs; see
    :class:`DivergenceObjective`).

    Args:
        beta: β in (0, 1) (default 0.5: the symmetric Jensen–Shannon divergence, at most
            ``ln 2``).
    """

    name = "jsd"
    description = OBJECTIVE_DESCRIPTIONS["jsd"]
    kind = "jsd"

    def __init__(
        self,
        *,
        task_type: str = "causal_lm",
        temperature: float = 1.0,
        beta: float = 0.5,
        positions: str = "auto",
    ) -> None:
        super().__init__(task_type=task_type, temperature=temperature, positions=positions)
        if not 0.0 < float(beta) < 1.0:
            raise ConfigError(f"beta must be in (0, 1) (JSD(beta) is 0 at both ends), got {beta}")
        self.beta = float(beta)

    def _weights(self) -> dict[str, float]:
        return {"beta": self.beta}


class _SkewObjective(DivergenceObjective):
    def __init__(
        self,
        *,
        task_type: str = "causal_lm",
        temperature: float = 1.0,
        alpha: float = 0.1,
        positions: str = "auto",
    ) -> None:
        super().__init__(task_type=task_type, temperature=temperature, positions=positions)
        if not 0.0 <= float(alpha) < 1.0:
            raise ConfigError(f"alpha must be in [0, 1) (alpha = 1 makes the loss 0), got {alpha}")
        self.alpha = float(alpha)

    def _weights(self) -> dict[str, float]:
        return {"alpha": self.alpha}


class SkewKLObjective(_SkewObjective):
    """α-skew KL ``τ²·KL(p ‖ α·p + (1−α)·q)`` (DistiLLM, Ko et al. 2024, eq. 3),
    label-free (causal LMs; see :class:`DivergenceObjective`).

    Args:
        alpha: α in [0, 1) (default 0.1, the paper's); 0 is the forward KL.
    """

    name = "skew_kl"
    description = OBJECTIVE_DESCRIPTIONS["skew_kl"]
    kind = "skew_kl"


class SkewReverseKLObjective(_SkewObjective):
    """α-skew reverse KL ``τ²·KL(q ‖ (1−α)·p + α·q)`` (DistiLLM, Ko et al. 2024, eq. 4),
    label-free (causal LMs; see :class:`DivergenceObjective`).

    Args:
        alpha: α in [0, 1) (default 0.1, the paper's); 0 is the reverse KL.
    """

    name = "skew_reverse_kl"
    description = OBJECTIVE_DESCRIPTIONS["skew_reverse_kl"]
    kind = "skew_reverse_kl"
