"""Batch collation and metric functions that the Trainer needs for a task."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from minidisc.tasks import TaskSpec


def collator_for(task: TaskSpec, tokenizer: PreTrainedTokenizerBase) -> Any:
    """Dynamic padding to the longest sequence of each batch (labels padded with -100
    for token classification)."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    if task.task_type == "token_classification":
        return DataCollatorForTokenClassification(tokenizer)
    return DataCollatorWithPadding(tokenizer)


def metrics_fn(task: TaskSpec) -> Callable[[Any], dict[str, float]]:
    """``compute_metrics`` for the Trainer: the task's official metrics plus ``main``."""
    from minidisc.tasks import compute_metrics

    def compute(prediction: Any) -> dict[str, float]:
        logits = prediction.predictions
        if isinstance(logits, tuple):  # extra outputs (hidden states) come after the logits
            logits = logits[0]
        return compute_metrics(task, logits, prediction.label_ids)

    return compute
