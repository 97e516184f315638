"""The constant-prediction score of a task: the floor a collapsed model sits at.

A model whose output no longer depends on its input (a *collapsed* model: e.g. a sparse
candidate that lost the path from the tokens to the head) scores what the best constant
prediction scores. For the task's own metric (:func:`minidisc.tasks.compute_metrics`):

* classification: every example predicted as the majority class of the training labels
  (accuracy = that class's share; MCC 0; F1 of the positive class 0 or ``2p/(1+p)``);
* regression: every example predicted as the mean training target (Pearson and
  Spearman are undefined for a constant and count as 0);
* token tagging: every scored token predicted as the most frequent training tag
  (entity F1 0 when that tag is ``O``).

A model *sits at* that score (:func:`at_constant_score`) when it is within
:data:`COLLAPSE_SHARE` of the teacher's margin over it (at least :data:`COLLAPSE_FLOOR`):
a regressor whose predictions vary only by noise scores a correlation near 0, not
exactly 0, so equality alone would miss it (issue 13: a 95 % candidate at 2.46 % Pearson/
Spearman beside a 90 % candidate at 78 %).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from minidisc.tasks import TaskSpec

#: A score within this share of the teacher's margin over the constant score sits at it.
COLLAPSE_SHARE = 0.05
#: ... and always within this absolute distance (a fraction: 1 point of the metric).
COLLAPSE_FLOOR = 0.01


def constant_prediction(task: TaskSpec, train_labels: Sequence[Any], labels: Sequence[Any]) -> dict[str, Any]:
    """The score of the best constant prediction (module doc) on a labelled set.

    Args:
        task: the task (its type and metric).
        train_labels: the training labels the constant is drawn from (class ids, targets,
            or per-token tag lists with -100 on unscored positions).
        labels: the labels of the set scored, in the same form.

    Returns:
        ``{"predictor": "majority class 1" | "mean target 2.71" | "tag 0", "main": m,
        **the other metrics}`` (fractions).

    Raises:
        ValueError: no training labels, or a task type without a constant prediction
            (causal LM).
    """
    from minidisc.tasks import compute_metrics
    from minidisc.tasks.registry import CLASSIFICATION, REGRESSION, TOKEN_CLASSIFICATION

    if len(train_labels) == 0:
        raise ValueError("no training labels to draw the constant prediction from")
    if task.task_type == REGRESSION:
        value = float(np.mean(np.asarray(train_labels, dtype=np.float64)))
        predictions: np.ndarray = np.full(len(labels), value)
        target: np.ndarray = np.asarray(labels, dtype=np.float64)
        predictor = f"mean target {value:.4g}"
    elif task.task_type == CLASSIFICATION:
        ids, counts = np.unique(np.asarray(train_labels, dtype=np.int64), return_counts=True)
        value = int(ids[np.argmax(counts)])  # ties: the smaller class id
        predictions, target = np.full(len(labels), value), np.asarray(labels, dtype=np.int64)
        predictor = f"majority class {_label_name(task, value)}"
    elif task.task_type == TOKEN_CLASSIFICATION:
        flat = np.concatenate([np.asarray(row, dtype=np.int64) for row in train_labels])
        ids, counts = np.unique(flat[flat != -100], return_counts=True)
        value = int(ids[np.argmax(counts)])
        target = _padded(labels)
        predictions = np.full(target.shape, value)
        predictor = f"tag {_label_name(task, value)}"
    else:
        raise ValueError(f"task type {task.task_type} has no constant prediction")
    return {"predictor": predictor, **compute_metrics(task, predictions, target)}


def collapse_floor(constant: float, teacher: float) -> float:
    """The highest score that still sits at the constant-prediction score ``constant``
    (module doc): ``constant + max(COLLAPSE_FLOOR, COLLAPSE_SHARE · (teacher − constant))``.
    Both are fractions of the same metric; ``teacher`` is the teacher's score."""
    return constant + max(COLLAPSE_FLOOR, COLLAPSE_SHARE * (teacher - constant))


def at_constant_score(score: float, constant: float, teacher: float) -> bool:
    """Whether ``score`` sits at the constant-prediction score ``constant``: at or below
    :func:`collapse_floor`."""
    return score <= collapse_floor(constant, teacher)


def _label_name(task: TaskSpec, value: int) -> str:
    names = getattr(task, "label_names", None)
    return f"{value} ({names[value]})" if names and 0 <= value < len(names) else str(value)


def _padded(rows: Sequence[Sequence[int]]) -> np.ndarray:
    """Ragged per-token label lists as one ``(n, max_len)`` array, padded with -100."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), -100, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out
