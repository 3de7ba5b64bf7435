"""Accuracy and loss from probabilities: the one definition Keras and TFLite results are both computed with."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_signs import metrics

PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.0, 1.0, 0.0]], np.float32)
Y = np.array([0, 1, 0, 2])


def test_accuracy_is_top1():
    assert metrics.accuracy(PROBS, Y) == 0.5  # rows 0 and 1 right; 2 and 3 wrong


def test_cross_entropy_by_hand():
    # -mean(log p_true), with p clipped at EPS (row 3 gives its true class probability 0)
    expected = -(math.log(0.7) + math.log(0.8) + math.log(0.3) + math.log(metrics.EPS)) / 4
    assert metrics.cross_entropy(PROBS, Y) == pytest.approx(expected, rel=1e-6)
    assert metrics.cross_entropy(np.eye(3, dtype=np.float32), np.arange(3)) == pytest.approx(0.0, abs=1e-6)
    assert np.isfinite(metrics.cross_entropy(np.zeros((2, 3), np.float32), np.array([0, 1])))


def test_per_class_accuracy_and_missing_classes():
    pred = PROBS.argmax(axis=1)  # [0, 1, 2, 1]
    assert metrics.per_class_accuracy(pred, Y, 4) == [0.5, 1.0, 0.0, None]  # class 3 never occurs


def test_summarize():
    assert metrics.summarize(PROBS, Y) == {"accuracy": metrics.accuracy(PROBS, Y), "loss": metrics.cross_entropy(PROBS, Y)}


def test_confusion_matrix_counts():
    y_true = np.array([0, 0, 1, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 2])
    m = metrics.confusion_matrix(y_true, y_pred, 3)
    assert m.dtype == np.int64
    np.testing.assert_array_equal(m, [[1, 1, 0], [0, 2, 1], [0, 0, 1]])
    assert m.sum() == len(y_true)


def test_confusion_matrix_empty():
    m = metrics.confusion_matrix(np.array([], int), np.array([], int), 2)
    np.testing.assert_array_equal(m, np.zeros((2, 2)))


@pytest.mark.parametrize(
    "y_true, y_pred",
    [([0, 3], [0, 1]), ([0, 1], [0, -1]), ([0, 1], [0]), ([0.5, 1], [0, 1])],
)
def test_confusion_matrix_rejects_bad_labels(y_true, y_pred):
    with pytest.raises(ValueError):
        metrics.confusion_matrix(np.array(y_true), np.array(y_pred), 3)
