"""Patient knowledge distillation (Sun et al., EMNLP 2019)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from minidisc.errors import ConfigError
from minidisc.objectives import functional as fn
from minidisc.objectives.base import (
    Objective,
    check_fraction,
    check_non_negative,
    check_positions,
    check_positive,
    label_loss,
    logit_distillation,
    real_tokens,
)
from minidisc.objectives.catalog import OBJECTIVE_DESCRIPTIONS
from minidisc.objectives.layers import make_projection, pkd_layer_map, project
from minidisc.objectives.signals import Signals

CLS_POSITIONS = ("auto", "first", "last")


def summary_positions(attention_mask: Tensor, which: str) -> Tensor:
    """Index of the summary token per example: the first, or the last real token.

    Args:
        attention_mask: ``(B, L)``.
        which: ``"first"`` (position 0, [CLS] of encoders) or ``"last"`` (the last real
            token, the summary of a causal decoder; works with left or right padding).

    Returns:
        ``(B,)`` long.
    """
    if which == "first":
        return torch.zeros(attention_mask.shape[0], dtype=torch.long, device=attention_mask.device)
    order = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.bool().long() * (order + 1)).argmax(dim=1)


class PKDObjective(Objective):
    """``(1−α)·CE + α·L_DS + β·L_PT`` (Sun et al. 2019, eq. 5).

    * ``L_DS``: soft CE ``−Σ softmax(z_T/T)·log_softmax(z_S/T)`` (eq. 2, no ``T²``);
      MSE to the teacher's outputs for regression.
    * ``L_PT``: squared distance between the L2-normalised summary-token ([CLS]) states
      of the mapped intermediate layers (eq. 4): summed over features and over the
      mapped layers as in eq. 4, averaged over the examples of the batch (eq. 4 sums
      over the training set; a batch mean keeps ``β`` independent of the batch size).
      The student's last layer is covered by ``L_DS`` and not matched.

    Args:
        alpha: fraction in [0, 1] (0.5).
        beta: weight of ``L_PT`` (100; the paper searches 10…1000).
        temperature: ``T`` (5; the paper searches 5, 10, 20).
        strategy: ``"skip"`` (every N/M-th teacher layer) or ``"last"``.
        cls_position: ``"first"``, ``"last"`` or ``"auto"`` (last real token for causal
            models, else first).
        positions: ``"auto"`` or ``"all"`` for token-level ``L_DS``.
    """

    name = "pkd"
    description = OBJECTIVE_DESCRIPTIONS["pkd"]
    needs_hidden_states = True

    def __init__(
        self,
        *,
        task_type: str = "classification",
        alpha: float = 0.5,
        beta: float = 100.0,
        temperature: float = 5.0,
        strategy: str = "skip",
        cls_position: str = "auto",
        positions: str = "auto",
        student_config: Any = None,
        teacher_config: Any = None,
    ) -> None:
        super().__init__(task_type=task_type)
        self.alpha = check_fraction("alpha", alpha)
        self.beta = check_non_negative("beta", beta)
        self.temperature = check_positive("temperature", temperature)
        if strategy not in ("skip", "last"):
            raise ConfigError(f"PKD strategy must be 'skip' or 'last', got {strategy!r}")
        if cls_position not in CLS_POSITIONS:
            raise ConfigError(
                f"cls_position must be one of {', '.join(CLS_POSITIONS)}, got {cls_position!r}"
            )
        self.strategy = strategy
        self.cls_position = cls_position
        self.positions = check_positions(positions)
        self.projection = make_projection(student_config, teacher_config)

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        s_hidden = student.require_hidden_states(self.name)
        t_hidden = teacher.require_hidden_states(self.name)
        pairs = pkd_layer_map(len(s_hidden) - 1, len(t_hidden) - 1, self.strategy)
        which = (
            self.cls_position
            if self.cls_position != "auto"
            else ("last" if student.is_causal else "first")
        )
        rows = torch.arange(s_hidden[0].shape[0], device=s_hidden[0].device)
        index = summary_positions(real_tokens(batch, s_hidden[0]), which)
        if pairs:
            s_cls = torch.stack([s_hidden[s][rows, index] for s, _ in pairs], dim=1)  # (B, P, d_S)
            t_cls = torch.stack([t_hidden[t][rows, index] for _, t in pairs], dim=1).detach()
            distances = fn.normalized_squared_distance(project(self.projection, s_cls, t_cls, self.name), t_cls)
            patient = distances.sum(dim=1).mean()  # (B, P): sum over layers, mean over examples
        else:  # a one-layer student has no intermediate layer
            patient = s_hidden[-1].sum() * 0.0
        s_logits = student.require_logits(self.name)
        ds = logit_distillation(
            s_logits,
            teacher.require_logits(self.name),
            batch,
            self.task_type,
            temperature=self.temperature,
            kind="soft_ce",
            positions=self.positions,
        )
        # eq. 2 has no T² factor; logit_distillation's soft CE includes it.
        if self.task_type != "regression":
            ds = ds / self.temperature**2
        loss = self.alpha * ds + self.beta * patient
        parts = {"distill": ds, "patient": patient}
        if self.alpha < 1.0:
            if batch.get("labels") is None:
                raise ConfigError(
                    "pkd with alpha < 1 needs batch 'labels'; provide labels or set alpha=1.0"
                )
            ce = label_loss(s_logits, batch, self.task_type)
            loss = loss + (1.0 - self.alpha) * ce
            parts["label"] = ce
        return loss, self.parts(**parts)
