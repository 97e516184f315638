"""The MiniDisc distillation loss (Zhang et al., EACL 2024 Findings; reference implementation).

``(MSE_hidden + L_logit) / 2`` with no label term:

* ``MSE_hidden``: mean over the hidden states at indices ``0, L/6, …, L``
  (:func:`~minidisc.objectives.layers.minidisc_layer_indices`, defined for any depth)
  of the MSE over real tokens.
* ``L_logit``: soft cross-entropy ``−Σ softmax(t/T)·log_softmax(s/T)·T²`` (T = 1) for
  classification and token-level tasks (over the selected positions — NER first
  sub-tokens via ``distill_mask`` or ``labels != -100``), MSE to the teacher's outputs
  for regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from minidisc.objectives import functional as fn
from minidisc.objectives.base import (
    Objective,
    check_positions,
    check_positive,
    logit_distillation,
    real_tokens,
)
from minidisc.objectives.catalog import OBJECTIVE_DESCRIPTIONS
from minidisc.objectives.layers import make_projection, minidisc_layer_pairs, project
from minidisc.objectives.signals import Signals


class MiniDiscObjective(Objective):
    """MiniDisc loss ``(MSE_hidden + L_logit)/2`` (see module doc).

    Student and teacher sub-networks have equal depth and width, so the pairs are
    ``(i, i)`` and no projection exists; a shallower (layer-dropped) student is paired
    by :func:`~minidisc.objectives.layers.minidisc_layer_pairs`, a narrower one gets a
    projection when configs are given. Without configs a narrower student is a
    sub-network that keeps the first ``d_S`` channels of its teacher's reordered residual
    stream (``SubnetSpec.hidden``, issue 15), so it is compared with the teacher's first
    ``d_S`` channels. At student = teacher the loss equals ``T²·H(teacher)/2`` (its minimum)
    for soft-CE tasks and 0 for regression.

    Args:
        temperature: ``T`` of the soft CE (1).
        positions: ``"auto"`` or ``"all"`` (token-level tasks).
    """

    name = "minidisc"
    description = OBJECTIVE_DESCRIPTIONS["minidisc"]
    needs_hidden_states = True

    def __init__(
        self,
        *,
        task_type: str = "classification",
        temperature: float = 1.0,
        positions: str = "auto",
        student_config: Any = None,
        teacher_config: Any = None,
    ) -> None:
        super().__init__(task_type=task_type)
        self.temperature = check_positive("temperature", temperature)
        self.positions = check_positions(positions)
        self.projection = make_projection(student_config, teacher_config)

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        s_hidden = student.require_hidden_states(self.name)
        t_hidden = teacher.require_hidden_states(self.name)
        mask = real_tokens(batch, s_hidden[0])
        per_layer = []
        for s_index, t_index in minidisc_layer_pairs(len(s_hidden) - 1, len(t_hidden) - 1):
            target = t_hidden[t_index].detach()
            width = s_hidden[s_index].shape[-1]
            if self.projection is None and width < target.shape[-1]:  # a width-cut sub-network
                target = target[..., :width]
            per_layer.append(
                fn.masked_mse(
                    project(self.projection, s_hidden[s_index], target, self.name), target, mask
                )
            )
        hidden = torch.stack(per_layer).mean()
        logit = logit_distillation(
            student.require_logits(self.name),
            teacher.require_logits(self.name),
            batch,
            self.task_type,
            temperature=self.temperature,
            kind="soft_ce",
            positions=self.positions,
        )
        return (hidden + logit) / 2.0, self.parts(hidden_mse=hidden, logit=logit)
