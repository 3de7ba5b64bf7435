"""Accuracy and loss from predicted probabilities: one definition for Keras and TFLite.

numpy only, so a Pi computes exactly what the trainer reports.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-7  # probabilities are clipped here before the log, as Keras does


def cross_entropy(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean categorical cross-entropy of integer labels under predicted probabilities."""
    p = np.clip(probs[np.arange(len(y)), y], EPS, 1.0)
    return float(-np.mean(np.log(p)))


def nonfinite_rows(probs: np.ndarray) -> int:
    """Predictions with a NaN or infinite probability: argmax makes them class 0, so callers warn."""
    return int((~np.isfinite(probs).all(axis=-1)).sum())


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == y))


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, num_classes: int) -> list[float | None]:
    out: list[float | None] = []
    for c in range(num_classes):
        mask = y == c
        out.append(float(np.mean(pred[mask] == c)) if mask.any() else None)
    return out


def summarize(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"accuracy": accuracy(probs, y), "loss": cross_entropy(probs, y)}
