"""Official task metrics, as fractions, plus the single ``main`` number.

GLUE (Wang et al., 2019): CoLA Matthews correlation; SST-2, MNLI, QNLI, RTE, WNLI
accuracy; MRPC and QQP F1 of the positive class (1 = paraphrase / duplicate) and
accuracy; STS-B Pearson and Spearman correlation. CoNLL-2003: entity-level micro F1 as
computed by conlleval (``seqeval`` in its default mode). ``main`` is the mean of the
task's official metrics (see :mod:`minidisc.tasks.registry`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from minidisc.errors import DataError
from minidisc.tasks.registry import REGRESSION, TOKEN_CLASSIFICATION, TaskSpec, get_task
from minidisc.tasks.tokenize import IGNORE_INDEX
from minidisc.tasks.tsv import NO_LABEL


def _first(array: Any) -> np.ndarray:
    # Trainer hands over a tuple when the model returns extra outputs; logits come first.
    if isinstance(array, tuple):
        array = array[0]
    return np.asarray(array)


def _correlation(fn: Callable[..., Any], x: np.ndarray, y: np.ndarray) -> float:
    """A scipy correlation, 0.0 when undefined (a constant input): a collapsed
    regressor carries no rank/linear information, and NaN would break model selection."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(fn(x, y)[0])
    return 0.0 if np.isnan(value) else value


def _sequence_metrics(spec: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=-1)
    predictions = predictions.reshape(-1).astype(np.int64)
    labels = labels.reshape(-1).astype(np.int64)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    values = {"accuracy": float(accuracy_score(labels, predictions))}
    if "mcc" in spec.metric_names:
        values["mcc"] = float(matthews_corrcoef(labels, predictions))
    if "macro_f1" in spec.metric_names:  # files given by the user (--metric macro-f1)
        values["macro_f1"] = float(f1_score(labels, predictions, average="macro", zero_division=0))
    if "f1" in spec.metric_names:
        values["f1"] = float(f1_score(labels, predictions, pos_label=1, zero_division=0))
    return values


def _regression_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr

    predictions = predictions.astype(np.float64).reshape(-1)  # (n, 1) head output -> (n,)
    labels = labels.astype(np.float64).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    return {
        "pearson": _correlation(pearsonr, predictions, labels),
        "spearman": _correlation(spearmanr, predictions, labels),
    }


def _entity_metrics(spec: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score

    if predictions.ndim == 3:
        predictions = predictions.argmax(axis=-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} do not match labels {labels.shape}")
    names = spec.label_names or ()
    y_true: list[list[str]] = []
    y_pred: list[list[str]] = []
    for pred_row, label_row in zip(predictions, labels):
        keep = label_row != IGNORE_INDEX  # first sub-token of each word only
        y_true.append([names[i] for i in label_row[keep]])
        y_pred.append([names[i] for i in pred_row[keep]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns when a class has no predictions
        return {
            "f1": float(f1_score(y_true, y_pred)),
            "precision": float(precision_score(y_true, y_pred)),
            "recall": float(recall_score(y_true, y_pred)),
        }


def compute_metrics(task: str | TaskSpec, predictions: Any, labels: Any) -> dict[str, float]:
    """Official metrics of a task, each a fraction, plus ``main``.

    Args:
        task: task name or spec.
        predictions: classification: logits ``(n, num_labels)`` or class ids ``(n,)``;
            regression: scores ``(n,)`` or ``(n, 1)``; NER: logits ``(n, seq, num_labels)``
            or tag ids ``(n, seq)``. A tuple (Trainer's extra outputs) uses its first item.
        labels: ``(n,)`` class ids / scores; NER ``(n, seq)`` with -100 on positions that
            are not scored (special tokens, continuation sub-tokens, padding).

    Returns:
        Classification: ``accuracy`` plus ``mcc`` (CoLA) or ``f1`` (MRPC, QQP);
        regression: ``pearson``, ``spearman`` (0.0 if a side is constant); NER: ``f1``,
        ``precision``, ``recall`` (entity level). Always ``main`` = mean of the task's
        ``metric_names``.

    Raises:
        DataError: the labels are the -1 of an unlabelled test split.
        ValueError: predictions and labels disagree in shape, or are empty.
    """
    spec = get_task(task)
    predictions = _first(predictions)
    labels = _first(labels)
    if labels.size == 0:
        raise ValueError("no labels to score")
    if spec.task_type == TOKEN_CLASSIFICATION:
        values = _entity_metrics(spec, predictions, labels)
    else:
        if np.all(labels == NO_LABEL):
            raise DataError(
                f"split has no labels (all -1, a GLUE test file); score task {spec.name} "
                "on dev or test_labeled"
            )
        if spec.task_type == REGRESSION:
            values = _regression_metrics(predictions, labels)
        else:
            values = _sequence_metrics(spec, predictions, labels)
    values["main"] = float(np.mean([values[name] for name in spec.metric_names]))
    return values


def trainer_metrics(task: str | TaskSpec) -> Callable[[Any], dict[str, float]]:
    """``compute_metrics`` callback for ``transformers.Trainer`` (takes an ``EvalPrediction``)."""
    spec = get_task(task)

    def metrics(eval_prediction: Any) -> dict[str, float]:
        return compute_metrics(spec, eval_prediction.predictions, eval_prediction.label_ids)

    return metrics
