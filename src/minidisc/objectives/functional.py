"""Pure tensor functions underneath every distillation objective.

Conventions (B batch, L length, H heads, d features, C/V classes):

* Probabilities are always formed with ``log_softmax``; a log of a clamped softmax is
  never taken.
* A position *mask* is a ``(B, L)`` bool tensor, ``True`` = the position takes part.
  Averages run over selected positions only, so padding (or unselected positions)
  never dilutes or shifts a loss.
* Attention-shaped tensors are ``(B, H, L_q, L_k)``. Padded keys are excluded *before*
  every softmax (``-inf`` logits) and padded query rows are excluded from every average.

Nothing here owns parameters; the objectives in this package combine these functions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# ---------------------------------------------------------------------------
# position selection


def _upcast(x: Tensor) -> Tensor:
    """Half-precision inputs are computed in float32; float32/float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _zero_like_graph(x: Tensor) -> Tensor:
    """A scalar 0 that is still connected to ``x``'s graph (empty selections)."""
    return x.sum() * 0.0


def select_rows(x: Tensor, mask: Tensor | None) -> Tensor:
    """Rows of ``x`` at selected positions.

    Args:
        x: ``(N, C)`` per-example rows, or ``(B, L, C)`` per-position rows.
        mask: ``None`` (all rows) or a ``(B, L)`` bool mask for a 3-D ``x``
            (``(N,)`` for a 2-D ``x``).

    Returns:
        ``(n_selected, C)``.
    """
    if mask is None:
        return x.reshape(-1, x.shape[-1])
    if mask.shape != x.shape[:-1]:
        raise ValueError(
            f"position mask of shape {tuple(mask.shape)} does not fit tensor {tuple(x.shape)}"
        )
    return x[mask.bool()]


# ---------------------------------------------------------------------------
# logit losses (Hinton et al. 2015)


def soft_cross_entropy(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    """Soft cross-entropy ``−Σ_c softmax(t/T)_c · log_softmax(s/T)_c · T²``.

    Summed over classes, averaged over the selected positions. This is the MiniDisc
    logit loss [ref] and TinyBERT's prediction loss (Jiao et al. 2020, eq. 10). Its
    minimum over the student is the teacher's entropy · T² (not 0).

    Args:
        student_logits, teacher_logits: ``(N, C)`` or ``(B, L, C)``, same shape.
        temperature: ``T > 0``.
        mask: optional ``(B, L)`` bool positions (3-D logits only).

    Returns:
        A scalar tensor; 0 (still on the graph) when no position is selected.
    """
    s = select_rows(student_logits, mask)
    t = select_rows(teacher_logits, mask)
    if s.shape[0] == 0:
        return _zero_like_graph(student_logits)
    p_t = F.softmax(_upcast(t) / temperature, dim=-1)
    logp_s = F.log_softmax(_upcast(s) / temperature, dim=-1)
    return -(p_t * logp_s).sum(-1).mean() * temperature**2


def kl_div_with_temperature(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    mask: Tensor | None = None,
) -> Tensor:
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))`` summed over classes, mean over positions.

    Hinton et al. 2015 (the T² keeps gradient magnitudes independent of T). Never a
    ``.mean()`` over the (N, V) matrix: the sum runs over V, the mean over N.

    Args:
        student_logits, teacher_logits: ``(N, C)`` or ``(B, L, C)``, same shape.
        temperature: ``T > 0``.
        mask: optional ``(B, L)`` bool positions (3-D logits only).

    Returns:
        A scalar tensor, 0 when student equals teacher or no position is selected.
    """
    s = select_rows(student_logits, mask)
    t = select_rows(teacher_logits, mask)
    if s.shape[0] == 0:
        return _zero_like_graph(student_logits)
    logp_t = F.log_softmax(_upcast(t) / temperature, dim=-1)
    logp_s = F.log_softmax(_upcast(s) / temperature, dim=-1)
    return (logp_t.exp() * (logp_t - logp_s)).sum(-1).mean() * temperature**2


# ---------------------------------------------------------------------------
# hidden-state losses


def masked_mse(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over the selected positions and all features.

    Args:
        student, teacher: ``(B, L, d)`` (or any ``(..., d)`` when ``mask`` is None).
        mask: optional ``(B, L)`` bool; padded positions are left out of the mean
            (not counted as zeros).

    Returns:
        ``Σ_selected Σ_d (s − t)² / (n_selected · d)``, a scalar.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"shapes differ: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}"
        )
    s = select_rows(student, mask)
    t = select_rows(teacher, mask)
    if s.shape[0] == 0:
        return _zero_like_graph(student)
    return (_upcast(s) - _upcast(t)).pow(2).mean()


def cosine_distance(student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
    """``1 − cos(s, t)`` per position, averaged over the selected positions.

    DistilBERT's cosine embedding loss with target +1 (Sanh et al. 2019).

    Args:
        student, teacher: ``(B, L, d)`` or ``(N, d)``, same shape.
        mask: optional ``(B, L)`` bool positions.
    """
    s = select_rows(student, mask)
    t = select_rows(teacher, mask)
    if s.shape[0] == 0:
        return _zero_like_graph(student)
    return (1.0 - F.cosine_similarity(_upcast(s), _upcast(t), dim=-1)).mean()


def normalized_squared_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """Squared Euclidean distance of L2-normalised vectors, ``‖s/‖s‖₂ − t/‖t‖₂‖₂²``.

    The summand of Patient KD's intermediate loss (Sun et al. 2019, eq. 4), which sums
    over features -- not a mean over them (an MSE would be ``d`` times smaller, and the
    paper's ``β`` search 10…1000 is on the summed scale). In ``[0, 4]``.

    Args:
        student, teacher: ``(..., d)``, same shape; normalised along the last axis.

    Returns:
        ``(...)``: one distance per vector.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"shapes differ: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}"
        )
    s = F.normalize(_upcast(student), p=2, dim=-1)
    t = F.normalize(_upcast(teacher), p=2, dim=-1)
    return (s - t).pow(2).sum(-1)


# ---------------------------------------------------------------------------
# attention masks and distributions


def key_mask(attention_mask: Tensor, causal: bool = False) -> Tensor:
    """Which keys each query may attend to, for use *before* a softmax.

    Key ``j`` is allowed for query ``i`` when ``j`` is a real token (and ``j ≤ i`` for a
    causal model). The diagonal is always allowed so that no row is empty: this only
    changes rows of padded queries, which every loss excludes, and it keeps a fully
    masked row from producing NaNs (forward or backward).

    Args:
        attention_mask: ``(B, L)``, 1/True for real tokens, 0/False for padding.
        causal: add the causal (lower-triangular) restriction.

    Returns:
        ``(B, 1, L, L)`` bool.
    """
    real = attention_mask.bool()
    length = real.shape[1]
    allowed = real[:, None, None, :].expand(-1, 1, length, -1)
    eye = torch.eye(length, dtype=torch.bool, device=real.device)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
    return allowed | eye


def entry_mask(attention_mask: Tensor, causal: bool = False) -> Tensor:
    """Attention entries ``(i, j)`` that count in a loss: real query, allowed real key.

    Args:
        attention_mask: ``(B, L)``.
        causal: add the causal restriction.

    Returns:
        ``(B, 1, L, L)`` bool (no forced diagonal: padded rows are all False).
    """
    real = attention_mask.bool()
    entries = real[:, None, :, None] & real[:, None, None, :]
    if causal:
        length = real.shape[1]
        entries = entries & torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
    return entries


def masked_log_softmax(scores: Tensor, allowed: Tensor) -> Tensor:
    """``log_softmax`` over the last axis with disallowed entries excluded (``-inf``).

    Args:
        scores: ``(B, H, L_q, L_k)`` pre-softmax logits.
        allowed: bool, broadcastable to ``scores`` (e.g. from :func:`key_mask`); every
            row must keep at least one entry.

    Returns:
        Log-probabilities of ``scores``' shape; disallowed entries are ``-inf``.
    """
    return F.log_softmax(_upcast(scores).masked_fill(~allowed, float("-inf")), dim=-1)


def attention_kl(
    student_log_probs: Tensor,
    teacher_log_probs: Tensor,
    attention_mask: Tensor,
    causal: bool = False,
) -> Tensor:
    """KL(teacher ‖ student) between attention-shaped distributions.

    The KL of each (head, query) row is summed over its allowed keys, then averaged over
    heads × real query tokens (MiniLM, Wang et al. 2020, eqs. 7–8; MiniLMv2 eq. 3).

    Args:
        student_log_probs, teacher_log_probs: ``(B, H, L, L)`` from
            :func:`masked_log_softmax` with :func:`key_mask`.
        attention_mask: ``(B, L)`` real-token mask.
        causal: whether the distributions were formed with the causal restriction.

    Returns:
        A scalar tensor, 0 when the distributions agree.
    """
    if student_log_probs.shape != teacher_log_probs.shape:
        raise ValueError(
            f"attention shapes differ: student {tuple(student_log_probs.shape)} vs "
            f"teacher {tuple(teacher_log_probs.shape)} (MiniLM needs equal head counts)"
        )
    allowed = key_mask(attention_mask, causal).expand_as(student_log_probs)
    # Zero the -inf entries *before* any arithmetic so that neither the forward pass nor
    # the backward pass meets (-inf) - (-inf).
    logp_s = student_log_probs.masked_fill(~allowed, 0.0)
    logp_t = teacher_log_probs.masked_fill(~allowed, 0.0)
    p_t = logp_t.exp().masked_fill(~allowed, 0.0)
    row_kl = (p_t * (logp_t - logp_s)).sum(-1)  # (B, H, L)
    real_queries = attention_mask.bool()[:, None, :].expand_as(row_kl)
    n_rows = real_queries.sum()
    if n_rows == 0:
        return _zero_like_graph(student_log_probs)
    return row_kl.masked_fill(~real_queries, 0.0).sum() / n_rows


def attention_score_mse(
    student_scores: Tensor,
    teacher_scores: Tensor,
    attention_mask: Tensor,
    causal: bool = False,
) -> Tensor:
    """MSE between pre-softmax attention scores over real (query, key) entries only.

    TinyBERT's attention loss (Jiao et al. 2020, eq. 3):
    ``(1/h) Σ_heads MSE(A_S, A_T)`` with ``A = Q·Kᵀ/√d_k``. Masked entries are excluded
    from the mean, not merely filled with a large negative number.

    Args:
        student_scores, teacher_scores: ``(B, H, L, L)``, same head count.
        attention_mask: ``(B, L)``.
        causal: exclude future keys too.
    """
    if student_scores.shape != teacher_scores.shape:
        raise ValueError(
            f"attention shapes differ: student {tuple(student_scores.shape)} vs "
            f"teacher {tuple(teacher_scores.shape)} (TinyBERT needs equal head counts)"
        )
    entries = entry_mask(attention_mask, causal).expand_as(student_scores)
    if not entries.any():
        return _zero_like_graph(student_scores)
    diff = _upcast(student_scores)[entries] - _upcast(teacher_scores)[entries]
    return diff.pow(2).mean()


# ---------------------------------------------------------------------------
# self-attention relations (MiniLM value relation, MiniLMv2)


def merge_heads(x: Tensor) -> Tensor:
    """``(B, H, L, d) → (B, L, H·d)`` (heads concatenated in order)."""
    batch, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, heads * dim)


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``(B, L, D) → (B, num_heads, L, D/num_heads)``.

    Raises:
        ValueError: when ``num_heads`` does not divide ``D``.
    """
    batch, length, width = x.shape
    if width % num_heads:
        raise ValueError(f"{num_heads} relation heads do not divide width {width}")
    return x.reshape(batch, length, num_heads, width // num_heads).transpose(1, 2)


def relation_log_probs(x: Tensor, attention_mask: Tensor, causal: bool = False) -> Tensor:
    """Self-relation ``log_softmax(X·Xᵀ/√d)`` per head with padded keys excluded.

    Args:
        x: ``(B, h, L, d)`` per-head vectors (queries, keys or values).
        attention_mask: ``(B, L)``.
        causal: also exclude future positions.

    Returns:
        ``(B, h, L, L)`` log-probabilities.
    """
    scores = torch.matmul(_upcast(x), _upcast(x).transpose(-1, -2)) / math.sqrt(x.shape[-1])
    return masked_log_softmax(scores, key_mask(attention_mask, causal))


def relation_kl(
    student: Tensor,
    teacher: Tensor,
    attention_mask: Tensor,
    num_relation_heads: int | None = None,
    causal: bool = False,
) -> Tensor:
    """KL(teacher ‖ student) between self-attention relations of one vector kind.

    With ``num_relation_heads = A_r`` the model heads are first concatenated and re-split
    into ``A_r`` relation heads of width ``d_r`` (MiniLMv2, Wang et al. 2021, eqs. 1–3);
    with ``None`` the model's own heads are used (MiniLM value relation, eq. 9). Each
    side scales by its own ``√d``.

    Args:
        student, teacher: ``(B, H, L, d)`` per-head vectors (head counts / widths may
            differ when ``num_relation_heads`` is given).
        attention_mask: ``(B, L)``.
        num_relation_heads: ``A_r``; must divide both concatenated widths.
        causal: also exclude future positions.
    """
    if num_relation_heads is not None:
        student = split_heads(merge_heads(student), num_relation_heads)
        teacher = split_heads(merge_heads(teacher), num_relation_heads)
    return attention_kl(
        relation_log_probs(student, attention_mask, causal),
        relation_log_probs(teacher, attention_mask, causal),
        attention_mask,
        causal,
    )
