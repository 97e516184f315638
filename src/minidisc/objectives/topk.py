"""Next-token divergences against a teacher kept as its top-k log-probabilities plus one
tail bucket (what the teacher-logit cache of causal LMs stores:
:mod:`minidisc.training.lm_teacher_cache`).

At one position the teacher's full distribution ``p = softmax(z_T/τ)`` over ``V`` words is
reduced to ``k + 1`` buckets: the ``k`` most probable words ``I`` (``p_i``, ``i ∈ I``)
and the rest merged into one tail bucket ``r = 1 − Σ_{i∈I} p_i``. The student's
``q = softmax(z_S/τ)`` (full vocabulary, with its gradient) is merged the same way:
``q_i`` for ``i ∈ I`` and ``1 − Σ_{i∈I} q_i``, the latter computed as a ``logsumexp``
over the words outside ``I`` (exact, also when ``I`` holds almost all of the mass, where
``log1p(−Σ q_i)`` would round to ``log 0``). Every divergence of
:mod:`minidisc.objectives.causal` (forward and reverse KL, JSD(β), the skewed forms) is
then computed between these two ``(k + 1)``-bucket distributions, times ``τ²``.

By the data-processing inequality the bucketed divergence is at most the full one; it
equals it when ``k = V`` (no tail: the bucket is dropped) and when both models
spread the tail mass alike. Its gradient still reaches every student logit: the tail
bucket pulls the student's total mass outside ``I`` towards the teacher's.

Temperature: the teacher's buckets are computed at one temperature ``τ`` (the cache
stores them at the temperature it was built at, and is keyed on it), because the tail
mass at another temperature depends on the tail's logits, which are not kept.
:func:`topk_divergence` refuses a student temperature other than the teacher's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from minidisc.objectives import functional as fn
from minidisc.objectives.causal import divergence_rows


@dataclass
class TopKTeacher:
    """A teacher's next-token distributions reduced to top-k + tail (module doc).

    Attributes:
        logp: ``(B, L, k)`` (or ``(N, k)``) log-probabilities ``log p_i`` of the top-k
            words at temperature ``temperature`` (float16/bfloat16/float32).
        index: ``(B, L, k)`` their vocabulary ids (any integer dtype).
        tail: ``(B, L)`` float32 ``log r``, the log of the mass outside the top-k.
        vocab_size: ``V``; with ``k = V`` there is no tail bucket.
        temperature: the ``τ`` the buckets were computed at.
    """

    logp: Tensor
    index: Tensor
    tail: Tensor
    vocab_size: int
    temperature: float = 1.0

    @property
    def k(self) -> int:
        return int(self.logp.shape[-1])

    @property
    def has_tail(self) -> bool:
        """Whether the tail bucket exists (``k < V``)."""
        return self.k < self.vocab_size

    def to(self, device: torch.device | str) -> TopKTeacher:
        return TopKTeacher(self.logp.to(device), self.index.to(device), self.tail.to(device), self.vocab_size,
                           self.temperature)

    def select(self, mask: Tensor | None) -> TopKTeacher:
        """The rows at the ``(B, L)`` bool ``mask`` (None: every row), flattened to ``(N, …)``."""
        if mask is None:
            return TopKTeacher(self.logp.reshape(-1, self.k), self.index.reshape(-1, self.k), self.tail.reshape(-1),
                               self.vocab_size, self.temperature)
        mask = mask.bool()
        return TopKTeacher(self.logp[mask], self.index[mask], self.tail[mask], self.vocab_size, self.temperature)

    def buckets(self) -> Tensor:
        """``(…, k + 1)`` float32 log-probabilities (``(…, k)`` without a tail),
        renormalised so that they sum to 1 after any rounding of stored values."""
        logp = self.logp.float()
        if self.has_tail:
            logp = torch.cat([logp, self.tail.float().unsqueeze(-1)], dim=-1)
        return logp - torch.logsumexp(logp, dim=-1, keepdim=True)


def teacher_topk(logits: Tensor, k: int, temperature: float = 1.0) -> TopKTeacher:
    """Reduce full teacher logits to top-k + tail (float32 arithmetic, no grad).

    Args:
        logits: ``(…, V)`` teacher logits.
        k: words kept, ``1 ≤ k ≤ V``.
        temperature: ``τ > 0``.

    Returns:
        A :class:`TopKTeacher` with float32 ``logp``, int64 ``index``, float32 ``tail``.

    Raises:
        ValueError: ``k`` outside ``[1, V]`` or ``τ ≤ 0``.
    """
    vocab = logits.shape[-1]
    if not 1 <= k <= vocab:
        raise ValueError(f"top-k must be between 1 and the vocabulary size {vocab}, got {k}")
    if not float(temperature) > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.no_grad():
        logp = torch.log_softmax(fn._upcast(logits.detach()).float() / temperature, dim=-1)
        values, index = logp.topk(k, dim=-1)
        tail = _tail(logp, index) if k < vocab else torch.full(values.shape[:-1], float("-inf"), device=logits.device)
    return TopKTeacher(values, index, tail, vocab, float(temperature))


def student_buckets(student_logits: Tensor, index: Tensor, temperature: float, with_tail: bool) -> Tensor:
    """The student's ``(N, k + 1)`` (``(N, k)`` without tail) log-probabilities at the
    teacher's top-k ids ``index`` ``(N, k)`` and of the rest, with gradients.

    Args:
        student_logits: ``(N, V)``.
        index: ``(N, k)`` vocabulary ids.
        temperature: ``τ``.
        with_tail: append the tail bucket (``k < V``).
    """
    logq = torch.log_softmax(fn._upcast(student_logits) / temperature, dim=-1)
    index = index.long()
    picked = logq.gather(-1, index)
    if not with_tail:
        return picked
    return torch.cat([picked, _tail(logq, index).unsqueeze(-1)], dim=-1)


def _tail(logp: Tensor, index: Tensor) -> Tensor:
    """``log Σ_{v ∉ index} exp(logp_v)``: a ``logsumexp`` over the words not in ``index``."""
    return torch.logsumexp(logp.scatter(-1, index.long(), float("-inf")), dim=-1)


def topk_divergence(
    student_logits: Tensor,
    teacher: TopKTeacher,
    mask: Tensor | None = None,
    *,
    kind: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
) -> Tensor:
    """``τ² ·`` the token-weighted mean of one divergence between the ``(k + 1)``-bucket
    distributions of teacher and student (module doc) over the selected positions.

    Args:
        student_logits: ``(B, L, V)`` next-token logits (or ``(N, V)`` rows).
        teacher: the teacher's top-k + tail at the same positions.
        mask: ``(B, L)`` bool, True where a position counts; None: every position.
        kind, beta, alpha: as :func:`minidisc.objectives.causal.lm_divergence`.
        temperature: ``τ``; must be the teacher's.

    Returns:
        A float32 scalar (0, on the student's graph, when no position is selected).

    Raises:
        ValueError: positions or vocabularies that do not match, or another temperature
            than the teacher's buckets were computed at.
    """
    if student_logits.shape[:-1] != teacher.logp.shape[:-1] or student_logits.shape[-1] != teacher.vocab_size:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} do not match the cached teacher's positions "
            f"{tuple(teacher.logp.shape[:-1])} and vocabulary {teacher.vocab_size}; student and teacher need the same "
            "vocabulary and blocks"
        )
    if abs(float(temperature) - teacher.temperature) > 1e-12:
        raise ValueError(
            f"the teacher's top-k buckets were computed at temperature {teacher.temperature}, the loss asks for "
            f"{temperature}; rebuild the teacher-logit cache at that temperature"
        )
    s = fn.select_rows(student_logits, mask)
    if s.shape[0] == 0:
        return fn._zero_like_graph(fn._upcast(student_logits))
    t = teacher.to(s.device).select(mask.to(s.device) if mask is not None else None)
    logq = student_buckets(s, t.index, temperature, t.has_tail)
    rows = divergence_rows(logq, t.buckets().to(logq.dtype), kind, beta=beta, alpha=alpha)
    return rows.mean() * temperature**2
