"""Output-level objectives: vanilla KD (Hinton et al. 2015) and DistilBERT (Sanh et al. 2019)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from minidisc.objectives.layers import make_projection, project
from minidisc.objectives.signals import Signals


def _require_labels(batch: Mapping[str, Tensor], who: str, weight_name: str) -> None:
    if batch.get("labels") is None:
        raise ConfigError(
            f"{who} has a label-loss term but the batch has no 'labels'; provide labels or set {weight_name} "
            "so that the label term is off"
        )


class KDObjective(Objective):
    """Vanilla KD: ``α·τ²·KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) + (1−α)·CE(y, z_S)``.

    Hinton et al. 2015. The KL is summed over classes and averaged over examples
    (sequence tasks) or over the selected positions (token tasks; see
    :func:`minidisc.objectives.base.token_positions`). For regression the KL is replaced
    by ``MSE(z_S, z_T)`` and CE by ``MSE(z_S, y)``. With ``α = 1`` no labels are needed.

    Args:
        alpha: weight of the distillation term, a fraction in [0, 1] (default 0.5: the
            MiniDisc reference's direct-KD loss ``(soft CE + CE)/2`` up to a constant).
        temperature: ``τ > 0``.
        positions: ``"auto"`` or ``"all"`` (token-level tasks).
    """

    name = "kd"
    description = OBJECTIVE_DESCRIPTIONS["kd"]

    def __init__(
        self,
        *,
        task_type: str = "classification",
        alpha: float = 0.5,
        temperature: float = 1.0,
        positions: str = "auto",
    ) -> None:
        super().__init__(task_type=task_type)
        self.alpha = check_fraction("alpha", alpha)
        self.temperature = check_positive("temperature", temperature)
        self.positions = check_positions(positions)

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        s_logits = student.require_logits(self.name)
        kd = logit_distillation(
            s_logits,
            teacher.require_logits(self.name),
            batch,
            self.task_type,
            temperature=self.temperature,
            kind="kl",
            positions=self.positions,
        )
        if self.alpha >= 1.0:
            return kd, self.parts(kd=kd)
        _require_labels(batch, self.name, "alpha=1.0")
        ce = label_loss(s_logits, batch, self.task_type)
        loss = self.alpha * kd + (1.0 - self.alpha) * ce
        return loss, self.parts(kd=kd, label=ce)

    def extra_repr(self) -> str:
        return f"task_type={self.task_type!r}, alpha={self.alpha}, temperature={self.temperature}"


class DistilBERTObjective(Objective):
    """DistilBERT's triple loss: ``5·KD + 2·MLM + 1·cos`` with ``τ = 2`` (Sanh et al. 2019).

    KD is ``τ²·KL`` as in :class:`KDObjective` over the selected positions; MLM is the
    student's label loss (the task's label loss outside masked LM); cos is
    ``1 − cos(h_S, h_T)`` of the last hidden states over real tokens (projected to the
    teacher width if widths differ).

    Args:
        alpha_kd, alpha_mlm, alpha_cos: non-negative weights (5, 2, 1).
        temperature: ``τ`` (2).
        positions: ``"auto"`` or ``"all"`` for the KD term.
    """

    name = "distilbert"
    description = OBJECTIVE_DESCRIPTIONS["distilbert"]
    needs_hidden_states = True

    def __init__(
        self,
        *,
        task_type: str = "classification",
        alpha_kd: float = 5.0,
        alpha_mlm: float = 2.0,
        alpha_cos: float = 1.0,
        temperature: float = 2.0,
        positions: str = "auto",
        student_config: Any = None,
        teacher_config: Any = None,
    ) -> None:
        super().__init__(task_type=task_type)
        self.alpha_kd = check_non_negative("alpha_kd", alpha_kd)
        self.alpha_mlm = check_non_negative("alpha_mlm", alpha_mlm)
        self.alpha_cos = check_non_negative("alpha_cos", alpha_cos)
        self.temperature = check_positive("temperature", temperature)
        self.positions = check_positions(positions)
        self.projection = make_projection(student_config, teacher_config)

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        s_logits = student.require_logits(self.name)
        kd = logit_distillation(
            s_logits,
            teacher.require_logits(self.name),
            batch,
            self.task_type,
            temperature=self.temperature,
            kind="kl",
            positions=self.positions,
        )
        s_last = student.require_hidden_states(self.name)[-1]
        t_last = teacher.require_hidden_states(self.name)[-1].detach()
        cos = fn.cosine_distance(
            project(self.projection, s_last, t_last, self.name), t_last, real_tokens(batch, s_last)
        )
        loss = self.alpha_kd * kd + self.alpha_cos * cos
        parts = {"kd": kd, "cos": cos}
        if self.alpha_mlm > 0.0:
            _require_labels(batch, self.name, "alpha_mlm=0")
            mlm = label_loss(s_logits, batch, self.task_type)
            loss = loss + self.alpha_mlm * mlm
            parts["mlm"] = mlm
        return loss, self.parts(**parts)
