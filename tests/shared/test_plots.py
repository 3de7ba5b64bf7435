"""Charts: numbers are right, images are written atomically and are not blank."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.metrics import confusion_matrix
from edge_signs.plots import (
    confusion_matrix_png,
    confusion_matrix_text,
    training_curves_png,
)

HISTORY = {
    "accuracy": [0.30, 0.55, 0.71, 0.80, 0.86],
    "val_accuracy": [0.28, 0.50, 0.66, 0.74, 0.77],
    "loss": [1.70, 1.10, 0.80, 0.60, 0.45],
    "val_loss": [1.75, 1.20, 0.95, 0.85, 0.80],
    "learning_rate": [1e-3] * 5,
}


def _read(path):
    img = cv2.imread(str(path))
    assert img is not None, f"{path} is not a readable image"
    return img


def _assert_drawn(img):
    assert img.std() > 10, "image looks blank"
    assert (img == 255).all(axis=2).mean() > 0.5, "expected a mostly white background"


def test_confusion_matrix_text():
    m = np.array([[12, 3], [0, 105]])
    text = confusion_matrix_text(m, ["cat", "dog"])
    lines = text.splitlines()
    assert lines[0].startswith("true\\pred")
    assert lines[1].split() == ["cat", "12", "3"]
    assert lines[2].split() == ["dog", "0", "105"]
    assert len({len(line) for line in lines}) == 1, "columns should be aligned"
    with pytest.raises(ValueError):
        confusion_matrix_text(m, ["only-one"])


def test_confusion_matrix_png(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, config.NUM_CLASSES, 200)
    pred = np.where(rng.random(200) < 0.8, y, rng.integers(0, config.NUM_CLASSES, 200))
    m = confusion_matrix(y, pred, config.NUM_CLASSES)
    out = confusion_matrix_png(m, config.LABELS, tmp_path / "cm.png", title="test set")
    assert out == tmp_path / "cm.png"
    img = _read(out)
    h, w = img.shape[:2]
    assert 380 <= h <= 640 and 380 <= w <= 640
    _assert_drawn(img)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png"], "temp file left behind"


def test_training_curves_png(tmp_path):
    out = training_curves_png(HISTORY, tmp_path / "curves.png", title="run 1")
    img = _read(out)
    h, w = img.shape[:2]
    assert w > h and 900 <= w <= 1100 and 380 <= h <= 520
    _assert_drawn(img)
    # Both curve colours must actually appear (train blue, validation orange).
    for bgr in [(180, 119, 31), (14, 127, 255)]:
        assert (np.abs(img.astype(int) - bgr).sum(axis=2) < 30).sum() > 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"], "temp file left behind"


def test_training_curves_change_with_history(tmp_path):
    a = _read(training_curves_png(HISTORY, tmp_path / "a.png"))
    changed = dict(HISTORY, val_loss=[1.0, 1.5, 2.0, 2.5, 3.0])
    b = _read(training_curves_png(changed, tmp_path / "b.png"))
    assert a.shape == b.shape
    assert (a != b).any(axis=2).sum() > 100


@pytest.mark.parametrize(
    "history",
    [
        {"accuracy": [0.5], "val_accuracy": [0.4], "loss": [1.2], "val_loss": [1.3]},
        {"accuracy": [0.2, math.nan, 0.6, 0.7], "loss": [math.inf, 1.0, math.nan, 0.5],
         "val_loss": [math.nan] * 4},
        {"loss": [0.9, 0.8], "lr": [0.01, 0.01]},  # accuracy panel gets "no data"
        {"accuracy": [0.5, 0.5, 0.5]},  # flat curve: y range must still open up
        {},
    ],
    ids=["one-epoch", "nan-inf", "loss-only", "flat", "empty"],
)
def test_training_curves_edge_cases(tmp_path, history):
    img = _read(training_curves_png(history, tmp_path / "c.png"))
    assert img.std() > 5
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"]


def test_single_epoch_draws_a_marker(tmp_path):
    img = _read(training_curves_png({"accuracy": [0.5]}, tmp_path / "one.png"))
    blue = (np.abs(img.astype(int) - (180, 119, 31)).sum(axis=2) < 30)
    # Below the title/legend row of the left panel: only the dot itself can be blue there.
    assert blue[40:, : img.shape[1] // 2].sum() > 15


def test_unwritable_suffix_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        training_curves_png(HISTORY, tmp_path / "curves.nope")
    assert list(tmp_path.iterdir()) == []
