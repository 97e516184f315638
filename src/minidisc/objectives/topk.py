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

**Sampled tail** (``tail_samples = m > 0``). The bucketed forward KL is biased: its
gradient on a tail word ``j`` is ``q_j (1 − r / q_tail)``, which moves the student's tail
as a block and never towards the teacher's shape inside it, while the full-vocabulary
gradient is ``q_j − p_j``. Anshumann et al. (2025, "Sparse Logit Sampling", ACL) show that
top-k caches bias the student and that tokens *sampled* from the teacher give an unbiased
sparse target. Here the head stays exact and only the tail is sampled (a stratified
estimator): ``m`` words ``s_1 … s_m`` drawn with replacement from the teacher's tail
``p_j / r`` (``j ∉ I``), with their ``log p_s``. Forward KL is then estimated by

    KL̂ = Σ_{i∈I} p_i (log p_i − log q_i) + (r / m) Σ_{n=1..m} (log p_{s_n} − log q_{s_n}),

``E[KL̂] = KL(p‖q)`` over the whole vocabulary, and its gradient on every student logit is
``q_j − p̂_j`` with ``E[p̂_j] = p_j`` (``p̂`` puts ``p_i`` on the head and ``r·c_j/m`` on a
tail word drawn ``c_j`` times): the full-vocabulary gradient in expectation, with the
student's full softmax (not renormalised over the kept words). A single row's estimate
can be slightly negative. Only the forward KL has this unbiased form (the reverse KL and
JSD need ``p`` wherever the student puts mass), so other divergences refuse a sampled tail.

Temperature: the teacher's buckets are computed at one temperature ``τ`` (the cache
stores them at the temperature it was built at, and is keyed on it), because the tail
mass at another temperature depends on the tail's logits, which are not kept.
:func:`topk_divergence` refuses a student temperature other than the teacher's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from minidisc.objectives import functional as fn
from minidisc.objectives.causal import divergence_rows

#: Sampled tail words keep a finite ``log p`` (a word of probability ``e^-10000`` is one
#: of weight 0 either way), so that ``r/m · log p_s`` is 0, not NaN, when ``r`` underflows.
LOGP_FLOOR = -1e4


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
        sample_index: ``(B, L, m)`` words drawn from the tail (module doc), or None.
        sample_logp: ``(B, L, m)`` their teacher log-probabilities ``log p_s`` (finite:
            clamped at :data:`LOGP_FLOOR`), or None.
    """

    logp: Tensor
    index: Tensor
    tail: Tensor
    vocab_size: int
    temperature: float = 1.0
    sample_index: Tensor | None = None
    sample_logp: Tensor | None = None

    @property
    def k(self) -> int:
        return int(self.logp.shape[-1])

    @property
    def has_tail(self) -> bool:
        """Whether the tail bucket exists (``k < V``)."""
        return self.k < self.vocab_size

    @property
    def tail_samples(self) -> int:
        """``m``, the tail words sampled per position (0: the tail is one bucket)."""
        return 0 if self.sample_index is None else int(self.sample_index.shape[-1])

    def _map(self, fn: Callable[[Tensor], Tensor]) -> TopKTeacher:
        """The same teacher with ``fn`` applied to every per-position tensor."""
        samples = self.sample_index is not None and self.sample_logp is not None
        return TopKTeacher(fn(self.logp), fn(self.index), fn(self.tail), self.vocab_size, self.temperature,
                           fn(self.sample_index) if samples else None,  # type: ignore[arg-type]
                           fn(self.sample_logp) if samples else None)  # type: ignore[arg-type]

    def to(self, device: torch.device | str) -> TopKTeacher:
        return self._map(lambda t: t.to(device))

    def select(self, mask: Tensor | None) -> TopKTeacher:
        """The rows at the ``(B, L)`` bool ``mask`` (None: every row), flattened to ``(N, …)``."""
        lead = self.tail.dim()
        if mask is None:
            return self._map(lambda t: t.reshape(-1, *t.shape[lead:]))
        mask = mask.bool()
        return self._map(lambda t: t[mask])

    def buckets(self) -> Tensor:
        """``(…, k + 1)`` float32 log-probabilities (``(…, k)`` without a tail),
        renormalised so that they sum to 1 after any rounding of stored values."""
        logp = self.logp.float()
        if self.has_tail:
            logp = torch.cat([logp, self.tail.float().unsqueeze(-1)], dim=-1)
        return logp - torch.logsumexp(logp, dim=-1, keepdim=True)


def teacher_topk(
    logits: Tensor, k: int, temperature: float = 1.0, *, tail_samples: int = 0, seeds: Sequence[int] | None = None,
) -> TopKTeacher:
    """Reduce full teacher logits to top-k + tail (float32 arithmetic, no grad), with
    ``tail_samples`` words drawn from the tail per position (module doc).

    Args:
        logits: ``(…, V)`` teacher logits.
        k: words kept, ``1 ≤ k ≤ V``.
        temperature: ``τ > 0``.
        tail_samples: ``m ≥ 0`` tail words sampled per position (ignored when ``k = V``).
        seeds: one seed per row of the first dimension (e.g. per block, so that a block's
            samples do not depend on the batch it came in); None: one generator seeded 0.

    Returns:
        A :class:`TopKTeacher` with float32 ``logp``, int64 ``index``, float32 ``tail``
        (and int64 ``sample_index``, float32 ``sample_logp`` when ``m > 0``).

    Raises:
        ValueError: ``k`` outside ``[1, V]``, ``τ ≤ 0``, ``m < 0`` or a seed count that is
            not the number of rows.
    """
    vocab = logits.shape[-1]
    if not 1 <= k <= vocab:
        raise ValueError(f"top-k must be between 1 and the vocabulary size {vocab}, got {k}")
    if not float(temperature) > 0.0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if tail_samples < 0:
        raise ValueError(f"tail samples must be >= 0, got {tail_samples}")
    with torch.no_grad():
        logp = torch.log_softmax(fn._upcast(logits.detach()).float() / temperature, dim=-1)
        values, index = logp.topk(k, dim=-1)
        tail = _tail(logp, index) if k < vocab else torch.full(values.shape[:-1], float("-inf"), device=logits.device)
        topk = TopKTeacher(values, index, tail, vocab, float(temperature))
        if tail_samples and k < vocab:
            topk.sample_index, topk.sample_logp = _sample_tail(logp, index, tail_samples, seeds)
    return topk


def _sample_tail(logp: Tensor, index: Tensor, m: int, seeds: Sequence[int] | None) -> tuple[Tensor, Tensor]:
    """``m`` draws per position from ``p`` restricted to the words outside ``index``, and
    their ``log p`` (floored): ``(…, m)`` int64 and float32."""
    rows = logp.reshape(-1, *logp.shape[-2:]) if logp.dim() > 2 else logp.unsqueeze(0)
    picked = index.reshape(*rows.shape[:-1], index.shape[-1])
    if seeds is not None and len(seeds) != rows.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {rows.shape[0]} rows of teacher logits")
    generator = torch.Generator(device=logp.device)
    draws = []
    for r in range(rows.shape[0]):
        if seeds is not None or r == 0:
            generator.manual_seed(int(seeds[r]) if seeds is not None else 0)
        weights = rows[r].exp().scatter(-1, picked[r], 0.0)
        empty = weights.sum(-1, keepdim=True) <= 0  # every tail word underflowed: any word, weight r = 0
        weights = torch.where(empty, torch.ones_like(weights).scatter(-1, picked[r], 0.0), weights)
        draws.append(torch.multinomial(weights, m, replacement=True, generator=generator))
    sample = torch.stack(draws).reshape(*logp.shape[:-1], m)
    return sample, logp.gather(-1, sample).clamp_min(LOGP_FLOOR)


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
    if t.tail_samples and t.has_tail:
        if kind != "forward_kl":
            raise ValueError(
                f"a sampled tail estimates the forward KL only, not {kind!r}; build the teacher-logit cache without "
                "tail samples (--cache-tail-samples 0) or distil with --objective forward_kl"
            )
        return sampled_forward_kl_rows(s, t, temperature).mean() * temperature**2
    logq = student_buckets(s, t.index, temperature, t.has_tail)
    rows = divergence_rows(logq, t.buckets().to(logq.dtype), kind, beta=beta, alpha=alpha)
    return rows.mean() * temperature**2


def sampled_forward_kl_rows(student_logits: Tensor, teacher: TopKTeacher, temperature: float) -> Tensor:
    """``(N,)`` unbiased estimates of ``KL(p‖q)`` per row from the exact top-k head and the
    sampled tail (the module doc's ``KL̂``).

    Args:
        student_logits: ``(N, V)``.
        teacher: ``(N, …)`` rows with ``sample_index``/``sample_logp`` ``(N, m)``.
        temperature: ``τ`` (the teacher's).
    """
    assert teacher.sample_index is not None and teacher.sample_logp is not None
    logq = torch.log_softmax(fn._upcast(student_logits) / temperature, dim=-1)
    buckets = teacher.buckets().to(logq.dtype)  # head + tail mass, renormalised after storage rounding
    head, log_r = buckets[:, :-1], buckets[:, -1]
    head_kl = (head.exp() * (head - logq.gather(-1, teacher.index.long()))).sum(-1)
    drawn = teacher.sample_logp.to(logq.dtype) - logq.gather(-1, teacher.sample_index.long())
    return head_kl + log_r.exp() * drawn.mean(-1)
