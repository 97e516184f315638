"""MiniLM (Wang et al., NeurIPS 2020) and MiniLMv2 (Wang et al., Findings of ACL 2021).

Both distil the self-attention module of one teacher layer into the student's last
layer with KL(teacher ‖ student) between row-wise distributions over keys; padded keys
are excluded before every softmax and the KL is averaged over heads × real tokens.
No MLM / prediction loss is added. Layer options index attention layers from 0;
negative values count from the end (``-1`` = last layer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from minidisc.errors import ConfigError
from minidisc.objectives import functional as fn
from minidisc.objectives.base import Objective, real_tokens
from minidisc.objectives.catalog import OBJECTIVE_DESCRIPTIONS
from minidisc.objectives.layers import config_heads, config_width
from minidisc.objectives.signals import Signals
from minidisc.objectives.tinybert import check_equal_heads


def _layer(values: tuple[Tensor, ...], index: int, who: str, side: str) -> int:
    """Normalise a possibly negative attention-layer index, or ``ConfigError``."""
    count = len(values)
    if not -count <= index < count:
        raise ConfigError(
            f"{who}: {side}_layer={index} is out of range for a model with {count} layers"
        )
    return index % count


class MiniLMObjective(Objective):
    """Self-attention distribution transfer + value-relation transfer (MiniLM eqs. 7–9).

    ``L = KL(softmax(Q_T·K_Tᵀ/√d_T) ‖ softmax(Q_S·K_Sᵀ/√d_S))
        + KL(softmax(V_T·V_Tᵀ/√d_T) ‖ softmax(V_S·V_Sᵀ/√d_S))``, per head, each model
    with its own head size. Needs equal (query and key/value) head counts.

    Args:
        teacher_layer: attention layer of the teacher (-1 = last).
        student_layer: attention layer of the student (-1 = last).
    """

    name = "minilm"
    description = OBJECTIVE_DESCRIPTIONS["minilm"]
    needs_qkv = True
    needs_logits = False

    def __init__(
        self,
        *,
        task_type: str = "classification",
        teacher_layer: int = -1,
        student_layer: int = -1,
        student_config: Any = None,
        teacher_config: Any = None,
    ) -> None:
        super().__init__(task_type=task_type)
        self.teacher_layer = int(teacher_layer)
        self.student_layer = int(student_layer)
        check_equal_heads(self.name, config_heads(student_config), config_heads(teacher_config))

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        s_q, _, s_v = student.require_qkv(self.name)
        t_q, _, t_v = teacher.require_qkv(self.name)
        s_layer = _layer(s_q, self.student_layer, self.name, "student")
        t_layer = _layer(t_q, self.teacher_layer, self.name, "teacher")
        check_equal_heads(self.name, s_q[s_layer].shape[1], t_q[t_layer].shape[1])
        check_equal_heads(
            self.name + " (value heads)", s_v[s_layer].shape[1], t_v[t_layer].shape[1]
        )
        attention_mask = real_tokens(batch, s_q[s_layer].transpose(1, 2)).long()
        causal = student.is_causal
        attention = fn.attention_kl(
            student.attention_log_probs(s_layer, attention_mask),
            teacher.attention_log_probs(t_layer, attention_mask).detach(),
            attention_mask,
            causal,
        )
        value = fn.relation_kl(s_v[s_layer], t_v[t_layer].detach(), attention_mask, None, causal)
        return attention + value, self.parts(attention=attention, value_relation=value)


def _largest_divisor_at_most(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def choose_relation_heads(widths: list[int], teacher_width: int, teacher_heads: int) -> int:
    """Default number of MiniLMv2 relation heads ``A_r`` for the given Q/K/V widths.

    48 for base-size teachers, 64 for large ones (width ≥ 1024) (MiniLMv2 §3); if that
    does not divide every concatenated Q/K/V width of both models, the teacher's
    attention-head count if it does, else the largest divisor of all widths below the
    preferred value.

    Args:
        widths: concatenated widths ``H·d_head`` of the student's and teacher's Q, K, V.
        teacher_width: teacher ``hidden_size``.
        teacher_heads: teacher query-head count.
    """
    preferred = 64 if teacher_width >= 1024 else 48
    for candidate in (preferred, teacher_heads):
        if all(w % candidate == 0 for w in widths):
            return candidate
    return _largest_divisor_at_most(math.gcd(*widths), preferred)


class MiniLMv2Objective(Objective):
    """Multi-head self-attention relation distillation (MiniLMv2 eqs. 1–4).

    Q, K and V of each model are concatenated over heads ``(B, L, H·d)`` and re-split into
    ``A_r`` relation heads; the relations ``softmax(X·Yᵀ/√d_r)`` for (Q,Q), (K,K), (V,V)
    are matched with KL(teacher ‖ student); the loss is the sum of the three. Head counts
    and widths may differ between student and teacher; ``A_r`` must divide every width.

    Args:
        relation_heads: ``A_r``; ``None`` chooses 48 (base) / 64 (large teachers), see
            :func:`choose_relation_heads`.
        teacher_layer: teacher attention layer (-1 = last; an upper-middle layer is
            recommended for large teachers).
        student_layer: student attention layer (-1 = last).
    """

    name = "minilmv2"
    description = OBJECTIVE_DESCRIPTIONS["minilmv2"]
    needs_qkv = True
    needs_logits = False

    def __init__(
        self,
        *,
        task_type: str = "classification",
        relation_heads: int | None = None,
        teacher_layer: int = -1,
        student_layer: int = -1,
        student_config: Any = None,
        teacher_config: Any = None,
    ) -> None:
        super().__init__(task_type=task_type)
        if relation_heads is not None and int(relation_heads) < 1:
            raise ConfigError(f"relation_heads must be a positive integer, got {relation_heads}")
        self.relation_heads = None if relation_heads is None else int(relation_heads)
        self.teacher_layer = int(teacher_layer)
        self.student_layer = int(student_layer)
        for side, config in (("student", student_config), ("teacher", teacher_config)):
            width = config_width(config)
            if (
                self.relation_heads is not None
                and width is not None
                and width % self.relation_heads
            ):
                raise ConfigError(
                    f"relation_heads={self.relation_heads} must divide the {side} width {width}"
                )

    def resolve_relation_heads(self, student: list[Tensor], teacher: list[Tensor]) -> int:
        """``A_r`` for these Q/K/V tensors ``(B, H, L, d)``.

        Raises:
            ConfigError: an explicit ``relation_heads`` does not divide some width.
        """
        widths = [x.shape[1] * x.shape[3] for x in (*student, *teacher)]
        if self.relation_heads is not None:
            bad = sorted({w for w in widths if w % self.relation_heads})
            if bad:
                raise ConfigError(
                    f"relation_heads={self.relation_heads} does not divide the Q/K/V widths {bad}; "
                    "choose a common divisor of all student and teacher Q/K/V widths"
                )
            return self.relation_heads
        teacher_q = teacher[0]
        return choose_relation_heads(
            widths, teacher_q.shape[1] * teacher_q.shape[3], teacher_q.shape[1]
        )

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        s_qkv = student.require_qkv(self.name)
        t_qkv = teacher.require_qkv(self.name)
        s_layer = _layer(s_qkv[0], self.student_layer, self.name, "student")
        t_layer = _layer(t_qkv[0], self.teacher_layer, self.name, "teacher")
        s_x = [xs[s_layer] for xs in s_qkv]
        t_x = [xs[t_layer].detach() for xs in t_qkv]
        heads = self.resolve_relation_heads(s_x, t_x)
        attention_mask = real_tokens(batch, s_x[0].transpose(1, 2)).long()
        terms = {
            kind: fn.relation_kl(s, t, attention_mask, heads, student.is_causal)
            for kind, s, t in zip(("qq", "kk", "vv"), s_x, t_x)
        }
        loss = terms["qq"] + terms["kk"] + terms["vv"]
        return loss, self.parts(**terms)
