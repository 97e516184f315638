"""Objective names → classes, with option checking for configs and the CLI."""

from __future__ import annotations

import inspect
from typing import Any

from minidisc.errors import ConfigError
from minidisc.objectives.base import Objective, check_task_type
from minidisc.objectives.causal import (
    ForwardKLObjective,
    JSDObjective,
    ReverseKLObjective,
    SkewKLObjective,
    SkewReverseKLObjective,
)
from minidisc.objectives.hidden import CosineObjective, HiddenMSEObjective
from minidisc.objectives.logit import DistilBERTObjective, KDObjective
from minidisc.objectives.minidisc_loss import MiniDiscObjective
from minidisc.objectives.minilm import MiniLMObjective, MiniLMv2Objective
from minidisc.objectives.pkd import PKDObjective
from minidisc.objectives.tinybert import TinyBERTObjective

OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls
    for cls in (
        KDObjective,
        MiniDiscObjective,
        PKDObjective,
        HiddenMSEObjective,
        CosineObjective,
        TinyBERTObjective,
        MiniLMObjective,
        MiniLMv2Objective,
        DistilBERTObjective,
        ForwardKLObjective,
        ReverseKLObjective,
        JSDObjective,
        SkewKLObjective,
        SkewReverseKLObjective,
    )
}

_NOT_OPTIONS = ("self", "task_type", "student_config", "teacher_config")


def objective_descriptions() -> dict[str, str]:
    """``{name: one-line description}`` of every objective, for ``--help``."""
    return {name: cls.description for name, cls in OBJECTIVES.items()}


def objective_options(name: str) -> dict[str, Any]:
    """``{option: default}`` accepted by the objective ``name``.

    Raises:
        ConfigError: unknown name.
    """
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters
    return {
        k: p.default
        for k, p in params.items()
        if k not in _NOT_OPTIONS and p.kind is p.KEYWORD_ONLY
    }


def _lookup(name: str) -> type[Objective]:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ConfigError(
            f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}"
        ) from None


def build_objective(
    name: str,
    *,
    task_type: str = "classification",
    student_config: Any = None,
    teacher_config: Any = None,
    **options: Any,
) -> Objective:
    """Create the objective ``name``.

    Pass the student's and teacher's HF configs whenever they are known: objectives that
    compare hidden states create their learnable projections from them when the widths
    differ (the trainer must then optimise ``objective.parameters()``), and head-count
    mismatches are reported before training starts.

    Args:
        name: one of :data:`OBJECTIVES` (``kd``, ``minidisc``, ``pkd``, ``hidden_mse``,
            ``cosine``, ``tinybert``, ``minilm``, ``minilmv2``, ``distilbert``; for causal LMs
            ``forward_kl``, ``reverse_kl``, ``jsd``, ``skew_kl``, ``skew_reverse_kl``).
        task_type: ``classification``, ``regression``, ``token_classification``,
            ``masked_lm`` or ``causal_lm``.
        student_config, teacher_config: ``transformers`` configs (optional).
        **options: objective-specific options (see :func:`objective_options`).

    Raises:
        ConfigError: unknown name, task type or option, or an invalid option value.
    """
    cls = _lookup(name)
    check_task_type(task_type)
    valid = objective_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        listing = ", ".join(valid) if valid else "(none)"
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for objective {name!r}; valid options: {listing}"
        )
    params = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"task_type": task_type, **options}
    if "student_config" in params:
        kwargs["student_config"] = student_config
        kwargs["teacher_config"] = teacher_config
    return cls(**kwargs)
