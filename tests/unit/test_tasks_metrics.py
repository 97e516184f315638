"""Official metrics against values computed by hand on small arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from minidisc.errors import DataError
from minidisc.tasks import compute_metrics, trainer_metrics

# preds vs labels: TP=2 (0, 4), FP=1 (1), TN=1 (2), FN=1 (3)
PREDS = np.array([1, 1, 0, 0, 1])
LABELS = np.array([1, 0, 0, 1, 1])


def logits_for(ids: np.ndarray, classes: int) -> np.ndarray:
    out = np.full((len(ids), classes), -1.0)
    out[np.arange(len(ids)), ids] = 2.0
    return out


def test_cola_matthews_correlation():
    # (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 − 1) / sqrt(3·3·2·2) = 1/6
    got = compute_metrics("cola", logits_for(PREDS, 2), LABELS)
    assert got["mcc"] == pytest.approx(1 / 6)
    assert got["main"] == pytest.approx(1 / 6)


def test_mrpc_f1_and_accuracy_mean():
    # precision = recall = 2/3 -> F1 = 2/3; accuracy = 3/5
    got = compute_metrics("mrpc", PREDS, LABELS)
    assert got["f1"] == pytest.approx(2 / 3)
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["main"] == pytest.approx((2 / 3 + 0.6) / 2)


def test_qqp_uses_the_positive_class_for_f1():
    # only class 0 is right: TP=0 -> F1 = 0 while accuracy = 2/4
    got = compute_metrics("qqp", np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1]))
    assert got["f1"] == 0.0 and got["accuracy"] == 0.5 and got["main"] == 0.25


def test_mnli_accuracy_from_logits_of_three_classes():
    labels = np.array([0, 1, 2, 2])
    preds = np.array([0, 1, 1, 2])
    got = compute_metrics("mnli-mm", logits_for(preds, 3), labels)
    assert got == {"accuracy": 0.75, "main": 0.75}


def test_stsb_pearson_and_spearman():
    preds = np.array([[1.0], [2.0], [3.0], [10.0]])  # (n, 1) head output
    labels = np.array([1.0, 3.0, 2.0, 4.0])
    # Pearson: dx = (-3,-2,-1,6), dy = (-1.5,.5,-.5,1.5): 13 / sqrt(50 * 5)
    # Spearman: ranks (1,2,3,4) vs (1,3,2,4): dy·dx = 4 over 5 -> 0.8
    got = compute_metrics("sts-b", preds, labels)
    assert got["pearson"] == pytest.approx(13 / math.sqrt(250))
    assert got["spearman"] == pytest.approx(0.8)
    assert got["main"] == pytest.approx((13 / math.sqrt(250) + 0.8) / 2)


def test_constant_regression_output_scores_zero_not_nan():
    got = compute_metrics("stsb", np.full(4, 2.0), np.array([1.0, 3.0, 2.0, 4.0]))
    assert got == {"pearson": 0.0, "spearman": 0.0, "main": 0.0}


def test_ner_entity_f1_ignores_minus_100():
    # tag ids: O=0 B-PER=1 I-PER=2 B-ORG=3 B-LOC=5 B-MISC=7
    ign = -100
    labels = np.array([
        [ign, 1, 2, 0, 5, ign, ign],  # PER(1-2), LOC(4)
        [ign, 0, ign, 7, ign, ign, ign],  # MISC
    ])
    preds = np.array([
        [3, 1, 2, 0, 3, 3, 3],  # PER right, ORG instead of LOC; -100 slots hold junk
        [5, 0, 5, 7, 1, 1, 1],  # MISC right
    ])
    # 2 of 3 predicted entities are right, 2 of 3 gold entities found
    got = compute_metrics("ner", logits_for(preds.reshape(-1), 9).reshape(2, 7, 9), labels)
    assert got["precision"] == pytest.approx(2 / 3)
    assert got["recall"] == pytest.approx(2 / 3)
    assert got["f1"] == pytest.approx(2 / 3)
    assert got["main"] == pytest.approx(2 / 3)


def test_ner_wrong_boundary_is_a_miss():
    # gold PER spans tokens 0-1; prediction splits it in two: no exact entity match
    got = compute_metrics("conll2003", np.array([[1, 1]]), np.array([[1, 2]]))
    assert got["f1"] == 0.0


def test_unlabelled_split_cannot_be_scored():
    with pytest.raises(DataError, match="no labels"):
        compute_metrics("sst2", np.array([0, 1]), np.array([-1, -1]))


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        compute_metrics("sst2", np.array([0, 1, 1]), np.array([0, 1]))


def test_trainer_callback_takes_the_first_item_of_a_prediction_tuple():
    class EvalPrediction:
        predictions = (logits_for(PREDS, 2), np.zeros((5, 3)))
        label_ids = LABELS

    assert trainer_metrics("mrpc")(EvalPrediction())["accuracy"] == pytest.approx(0.6)
