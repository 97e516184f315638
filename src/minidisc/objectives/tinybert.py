"""TinyBERT transformer distillation (Jiao et al., Findings of EMNLP 2020)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from minidisc.errors import ConfigError
from minidisc.objectives import functional as fn
from minidisc.objectives.base import (
    Objective,
    check_positions,
    check_positive,
    logit_distillation,
    real_tokens,
)
from minidisc.objectives.catalog import OBJECTIVE_DESCRIPTIONS
from minidisc.objectives.layers import config_heads, make_projection, project, uniform_layer_map
from minidisc.objectives.signals import Signals


def check_equal_heads(who: str, student_heads: int | None, teacher_heads: int | None) -> None:
    """``ConfigError`` when both head counts are known and differ."""
    if student_heads is not None and teacher_heads is not None and student_heads != teacher_heads:
        raise ConfigError(
            f"{who} matches attention per head and needs equal head counts; the student has "
            f"{student_heads} heads, the teacher {teacher_heads} (use minilmv2, whose relation heads "
            "do not depend on the model's head count)"
        )


class TinyBERTObjective(Objective):
    """``L_emb + Σ_m (L_attn + L_hidn) [+ L_pred]`` with the uniform map ``g(m) = m·N/M``.

    * ``L_emb = MSE(E_S·W_e, E_T)`` (eq. 6), over real tokens.
    * ``L_attn = (1/h) Σ_heads MSE(A_S, A_T)`` on pre-softmax scores ``Q·Kᵀ/√d_k``
      (eq. 3) over real (query, key) entries only; needs equal head counts.
    * ``L_hidn = MSE(H_S·W_h, H_T)`` (eq. 4), over real tokens.
    * ``L_pred``: soft CE with temperature ``t`` (eq. 10, times ``t²`` as in Hinton et al.;
      ``t = 1`` by default; MSE for regression) — task distillation only. General distillation (masked/causal LM) has none.

    ``W_e`` and ``W_h`` are learnable ``d_S → d_T`` projections, created when the configs
    say the widths differ, discarded after distillation.

    Args:
        prediction: include ``L_pred``; ``None`` = yes unless the task is masked/causal LM.
        temperature: ``t`` of ``L_pred`` (1).
        positions: ``"auto"`` or ``"all"`` for token-level ``L_pred``.
    """

    name = "tinybert"
    description = OBJECTIVE_DESCRIPTIONS["tinybert"]
    needs_hidden_states = True
    needs_qkv = True

    def __init__(
        self,
        *,
        task_type: str = "classification",
        prediction: bool | None = None,
        temperature: float = 1.0,
        positions: str = "auto",
        student_config: Any = None,
        teacher_config: Any = None,
    ) -> None:
        super().__init__(task_type=task_type)
        self.prediction = (
            task_type not in ("masked_lm", "causal_lm") if prediction is None else bool(prediction)
        )
        self.needs_logits = self.prediction
        self.temperature = check_positive("temperature", temperature)
        self.positions = check_positions(positions)
        check_equal_heads(self.name, config_heads(student_config), config_heads(teacher_config))
        self.embedding_projection = make_projection(student_config, teacher_config)
        self.hidden_projection = make_projection(student_config, teacher_config)

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        s_hidden = student.require_hidden_states(self.name)
        t_hidden = teacher.require_hidden_states(self.name)
        student.require_qkv(self.name)
        teacher.require_qkv(self.name)
        mask = real_tokens(batch, s_hidden[0])
        attention_mask = mask.long()

        t_emb = t_hidden[0].detach()
        embedding = fn.masked_mse(
            project(self.embedding_projection, s_hidden[0], t_emb, self.name), t_emb, mask
        )

        attention_terms, hidden_terms = [], []
        for m, g in uniform_layer_map(
            len(s_hidden) - 1, len(t_hidden) - 1, include_embeddings=False
        ):
            s_scores = student.attention_scores(m - 1)
            t_scores = teacher.attention_scores(g - 1).detach()
            check_equal_heads(self.name, s_scores.shape[1], t_scores.shape[1])
            attention_terms.append(
                fn.attention_score_mse(s_scores, t_scores, attention_mask, student.is_causal)
            )
            target = t_hidden[g].detach()
            hidden_terms.append(
                fn.masked_mse(
                    project(self.hidden_projection, s_hidden[m], target, self.name), target, mask
                )
            )
        attention = torch.stack(attention_terms).sum()
        hidden = torch.stack(hidden_terms).sum()
        loss = embedding + attention + hidden
        parts = {"embedding": embedding, "attention": attention, "hidden": hidden}
        if self.prediction:
            pred = logit_distillation(
                student.require_logits(self.name),
                teacher.require_logits(self.name),
                batch,
                self.task_type,
                temperature=self.temperature,
                kind="soft_ce",
                positions=self.positions,
            )
            loss = loss + pred
            parts["prediction"] = pred
        return loss, self.parts(**parts)
