"""Distillation objectives and the capture of the signals they need.

Attributes load lazily (torch is imported on first use), so ``minidisc --help`` can list
the objectives from :mod:`minidisc.objectives.catalog` quickly.

Usage by a trainer::

    objective = build_objective("tinybert", task_type="classification",
                                student_config=student.config, teacher_config=teacher.config)
    optimizer = AdamW([*student.parameters(), *objective.parameters()])
    with torch.no_grad():
        t = forward_with_signals(teacher, batch, objective.needs_qkv,
                                 need_hidden_states=objective.needs_hidden_states)
    s = forward_with_signals(student, batch, objective.needs_qkv,
                             need_hidden_states=objective.needs_hidden_states)
    loss, parts = objective(s, t, batch)
"""

from __future__ import annotations

import importlib
from typing import Any

from minidisc.objectives.catalog import OBJECTIVE_DESCRIPTIONS, OBJECTIVE_NAMES, TASK_TYPES

_EXPORTS: dict[str, str] = {
    # interface and registry
    "Objective": "base",
    "label_loss": "base",
    "logit_distillation": "base",
    "token_positions": "base",
    "LOGIT_POSITIONS": "base",
    "OBJECTIVES": "registry",
    "build_objective": "registry",
    "objective_descriptions": "registry",
    "objective_options": "registry",
    # signals and capture
    "Signals": "signals",
    "forward_with_signals": "signals",
    "MODEL_INPUT_KEYS": "signals",
    "CapturedQKV": "capture",
    "capture_qkv": "capture",
    "find_attention_modules": "capture",
    # objectives
    "KDObjective": "logit",
    "DistilBERTObjective": "logit",
    "HiddenMSEObjective": "hidden",
    "CosineObjective": "hidden",
    "MiniDiscObjective": "minidisc_loss",
    "PKDObjective": "pkd",
    "TinyBERTObjective": "tinybert",
    "MiniLMObjective": "minilm",
    "MiniLMv2Objective": "minilm",
    # next-token divergences (causal LMs)
    **{
        name: "causal"
        for name in (
            "DivergenceObjective",
            "ForwardKLObjective",
            "ReverseKLObjective",
            "JSDObjective",
            "SkewKLObjective",
            "SkewReverseKLObjective",
            "DIVERGENCES",
            "lm_divergence",
            "forward_kl",
            "reverse_kl",
            "generalized_jsd",
            "skew_kl",
            "skew_reverse_kl",
            "next_token_positions",
        )
    },
    # layer maps
    "minidisc_layer_indices": "layers",
    "minidisc_layer_pairs": "layers",
    "uniform_layer_map": "layers",
    "pkd_layer_map": "layers",
    # pure tensor functions
    **{
        name: "functional"
        for name in (
            "soft_cross_entropy",
            "kl_div_with_temperature",
            "masked_mse",
            "cosine_distance",
            "normalized_squared_distance",
            "key_mask",
            "entry_mask",
            "masked_log_softmax",
            "attention_kl",
            "attention_score_mse",
            "merge_heads",
            "split_heads",
            "relation_log_probs",
            "relation_kl",
        )
    },
}

__all__ = ["OBJECTIVE_DESCRIPTIONS", "OBJECTIVE_NAMES", "TASK_TYPES", *_EXPORTS]  # noqa: PLE0604


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
