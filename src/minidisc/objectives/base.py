"""The ``Objective`` interface and the task-dependent pieces every objective shares.

Position selection (which positions a token-level loss averages over) is explicit:

* sequence-level tasks (``classification``, ``regression``): one row per example;
* token-level tasks: ``batch["distill_mask"]`` when present (MLM masked positions, NER
  first sub-tokens — the data pipeline decides); else, for ``token_classification`` and
  ``masked_lm``, the positions whose ``labels != -100``; else every real token
  (``attention_mask``). ``positions="all"`` forces every real token.

Gathered logits: a model may run its output head only at some positions (BERT's
pretraining code gathers the masked positions before the MLM head). The batch then
holds ``batch["logit_positions"]`` (:data:`LOGIT_POSITIONS`), the ``(B, L)`` bool
positions the head ran on, and the logits are ``(1, N, V)`` for those ``N`` positions in
row-major order. Logit and label terms select among these rows; every other key
(``attention_mask`` for hidden-state and attention terms) keeps its ``(B, L)`` shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minidisc.errors import ConfigError
from minidisc.objectives import functional as fn
from minidisc.objectives.catalog import TASK_TYPES
from minidisc.objectives.signals import Signals

SEQUENCE_TASKS = ("classification", "regression")
POSITION_MODES = ("auto", "all")
IGNORE_INDEX = -100
#: Batch key of the ``(B, L)`` positions gathered logits were computed at (module doc).
LOGIT_POSITIONS = "logit_positions"


def check_task_type(task_type: str) -> str:
    """Return ``task_type`` or raise ``ConfigError`` listing the valid ones."""
    if task_type not in TASK_TYPES:
        raise ConfigError(f"unknown task type {task_type!r}; choose one of {', '.join(TASK_TYPES)}")
    return task_type


def check_positions(positions: str) -> str:
    """Return ``positions`` or raise ``ConfigError``."""
    if positions not in POSITION_MODES:
        raise ConfigError(
            f"positions must be one of {', '.join(POSITION_MODES)}, got {positions!r}"
        )
    return positions


def check_fraction(name: str, value: float) -> float:
    """``value`` as float if in [0, 1], else ``ConfigError``."""
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be a fraction in [0, 1], got {value}")
    return float(value)


def check_positive(name: str, value: float) -> float:
    """``value`` as float if > 0, else ``ConfigError``."""
    if not float(value) > 0.0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return float(value)


def check_non_negative(name: str, value: float) -> float:
    """``value`` as float if >= 0, else ``ConfigError``."""
    if not float(value) >= 0.0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return float(value)


def real_tokens(batch: Mapping[str, Tensor], like: Tensor) -> Tensor:
    """``(B, L)`` bool of real tokens; all True when the batch has no ``attention_mask``.

    Args:
        like: a ``(B, L, …)`` tensor giving shape and device when the mask is absent.
    """
    mask = batch.get("attention_mask")
    if mask is None:
        return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    return mask.bool()


def token_positions(
    batch: Mapping[str, Tensor], task_type: str, like: Tensor, positions: str = "auto"
) -> Tensor:
    """The ``(B, L)`` bool positions a token-level loss averages over (see module doc).

    Args:
        batch: holds ``attention_mask`` and optionally ``distill_mask`` / ``labels``.
        task_type: one of :data:`TASK_TYPES` (token-level ones).
        like: a ``(B, L, …)`` tensor (shape/device fallback).
        positions: ``"auto"`` or ``"all"``.
    """
    real = real_tokens(batch, like)
    if positions == "all":
        return real
    if batch.get("distill_mask") is not None:
        return batch["distill_mask"].bool() & real
    labels = batch.get("labels")
    if (
        task_type in ("token_classification", "masked_lm")
        and labels is not None
        and labels.dim() == 2
    ):
        return (labels != IGNORE_INDEX) & real
    return real


def gathered_positions(batch: Mapping[str, Tensor]) -> Tensor | None:
    """The ``(B, L)`` bool positions of gathered logits, or ``None`` (logits laid out
    like the batch)."""
    rows = batch.get(LOGIT_POSITIONS)
    return None if rows is None else rows.bool()


def gather_selection(selected: Tensor, rows: Tensor, what: str) -> Tensor:
    """A ``(B, L)`` selection as ``(1, N)`` over the ``N`` gathered rows.

    Raises:
        ConfigError: ``selected`` includes positions the head did not run on.
    """
    if bool((selected & ~rows).any()):
        raise ConfigError(
            f"{what} selects positions where the output head did not run (logits were gathered at "
            f"{int(rows.sum())} positions only); run the head on every position, or keep positions='auto'"
        )
    return selected[rows].unsqueeze(0)


def logit_selection(
    batch: Mapping[str, Tensor], task_type: str, logits: Tensor, positions: str = "auto"
) -> Tensor:
    """Positions of ``logits`` a token-level logit term averages over: :func:`token_positions`,
    mapped onto the gathered rows when the batch has :data:`LOGIT_POSITIONS`.

    Returns:
        ``(B, L)`` bool, or ``(1, N)`` for gathered ``(1, N, V)`` logits.

    Raises:
        ConfigError: the selection needs positions that were not gathered (``positions="all"``
            with logits at the masked positions only).
    """
    rows = gathered_positions(batch)
    if rows is None:
        return token_positions(batch, task_type, logits, positions)
    selected = token_positions(batch, task_type, rows, positions)
    return gather_selection(selected, rows, f"positions={positions!r}")


def logit_distillation(
    student_logits: Tensor,
    teacher_logits: Tensor,
    batch: Mapping[str, Tensor],
    task_type: str,
    *,
    temperature: float = 1.0,
    kind: str = "kl",
    positions: str = "auto",
) -> Tensor:
    """Distillation loss on the outputs, dispatched on the task type.

    * ``regression``: ``MSE(s, t)`` over examples (temperature unused).
    * ``classification``: ``kind`` = ``"kl"`` (``T²·KL``) or ``"soft_ce"`` (``T²·soft CE``)
      per example, mean over examples.
    * token-level tasks: the same per selected position (:func:`token_positions`).

    Args:
        student_logits, teacher_logits: ``(B, C)`` or ``(B, L, C)``, same shape.

    Raises:
        ConfigError: logits of different shapes (e.g. different label sets or vocabularies).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ConfigError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ; student and teacher need the same label set/vocabulary"
        )
    teacher_logits = teacher_logits.detach()
    if task_type == "regression":
        return fn.masked_mse(student_logits, teacher_logits)
    loss_fn = fn.kl_div_with_temperature if kind == "kl" else fn.soft_cross_entropy
    mask = None
    if task_type not in SEQUENCE_TASKS:
        mask = logit_selection(batch, task_type, student_logits, positions)
    return loss_fn(student_logits, teacher_logits, temperature, mask)


def label_loss(student_logits: Tensor, batch: Mapping[str, Tensor], task_type: str) -> Tensor:
    """The ordinary supervised loss of the student on ``batch["labels"]``.

    * ``classification``: cross-entropy, labels ``(B,)``.
    * ``regression``: MSE, labels ``(B,)`` floats, logits ``(B, 1)``.
    * ``token_classification`` / ``masked_lm``: cross-entropy over positions with
      ``labels != -100``.
    * ``causal_lm``: next-token cross-entropy (logits at ``t`` predict ``labels`` at
      ``t + 1``), ``-100`` ignored.

    With gathered logits (:data:`LOGIT_POSITIONS`, token-level tasks except causal LM)
    the labels are gathered at the same positions.

    Raises:
        ValueError: the batch has no labels.
        ConfigError: labelled positions lie outside the gathered ones, or gathered causal-LM
            logits (the next-token shift needs every position).
    """
    labels = batch.get("labels")
    if labels is None:
        raise ValueError("the label loss needs batch['labels']")
    rows = gathered_positions(batch)
    if rows is not None and task_type not in SEQUENCE_TASKS:
        if task_type == "causal_lm":
            raise ConfigError("causal-LM logits cannot be gathered: the next-token shift needs every position")
        gather_selection(labels != IGNORE_INDEX, rows, "the label loss")  # every label was gathered
        labels = labels[rows].unsqueeze(0)
    logits = (
        student_logits.float()
        if student_logits.dtype in (torch.float16, torch.bfloat16)
        else student_logits
    )
    if task_type == "regression":
        return F.mse_loss(logits.reshape(-1), labels.to(logits.dtype).reshape(-1))
    if task_type == "classification":
        return F.cross_entropy(logits, labels)
    if task_type == "causal_lm":
        logits, labels = logits[:, :-1], labels[:, 1:]
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


class Objective(nn.Module):
    """A distillation objective.

    Subclasses set the class-level flags so a trainer asks :func:`forward_with_signals`
    only for what is needed, and implement :meth:`forward`. An objective may own
    parameters (projections from student to teacher width): the trainer must add
    ``objective.parameters()`` to the optimizer and discard them after distillation.

    Teacher tensors are detached inside every objective, so no gradient reaches the
    teacher even if its forward ran with grad enabled.
    """

    #: registry name and one-line description (``--help``).
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: signals the objective reads besides logits.
    needs_hidden_states: ClassVar[bool] = False
    needs_qkv: ClassVar[bool] = False
    #: whether it reads logits (False for general-distillation-only objectives).
    needs_logits: ClassVar[bool] = True
    #: positions its token-level logit terms average over (``"auto"`` or ``"all"``, see
    #: :func:`token_positions`); tells a trainer where the output head must run.
    positions: str = "auto"

    def __init__(self, *, task_type: str = "classification") -> None:
        super().__init__()
        self.task_type = check_task_type(task_type)

    def forward(
        self, student: Signals, teacher: Signals, batch: Mapping[str, Tensor]
    ) -> tuple[Tensor, dict[str, float]]:
        """Return ``(scalar loss, {part name: float value})``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"task_type={self.task_type!r}"

    @staticmethod
    def parts(**values: Any) -> dict[str, float]:
        """Detached float values for logging."""
        return {
            k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in values.items()
        }
