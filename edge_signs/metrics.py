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


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts as an int64 ``(num_classes, num_classes)`` array: rows true, columns predicted.

    Raises ``ValueError`` for mismatched shapes or labels outside ``[0, num_classes)``:
    silently dropping them would make accuracy look better than it is.
    """
    t = np.asarray(y_true).reshape(-1)
    p = np.asarray(y_pred).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for name, a in (("y_true", t), ("y_pred", p)):
        if a.size and (not np.all(np.equal(np.mod(a, 1), 0)) or a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} must hold integers in [0, {num_classes}), got {a.min()}..{a.max()}")
    flat = t.astype(np.int64) * num_classes + p.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)
