"""The one preprocessing path: camera frames of any layout and size, ROIs, and input quantization.

predict_frame is checked on the committed tiny models (tests/fixtures), without TensorFlow.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge.runtime import Classifier
from edge_signs.errors import EdgeSignsError
from edge_signs.preprocess import (
    InputQuantization,
    Roi,
    frame_to_rgb,
    quantize_input,
    square_resize,
    to_bgr,
    to_model_input,
)


def test_frames_of_any_layout_give_the_same_prediction(tiny_models, signs):
    clf = Classifier(tiny_models["float32"])
    rgb = signs.test.x[7]
    bgr = rgb[..., ::-1].copy()
    reference = clf.predict_rgb(rgb).probs
    assert np.allclose(clf.predict_frame(bgr).probs, reference, atol=1e-6)
    bgra = np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)])
    assert np.allclose(clf.predict_frame(bgra).probs, reference, atol=1e-6)
    gray = bgr.mean(axis=2).astype(np.uint8)
    for frame in (gray, gray[..., None]):
        pred = clf.predict_frame(frame)
        assert pred.probs.shape == (config.NUM_CLASSES,) and abs(pred.probs.sum() - 1) < 1e-3
    # a wide camera frame: the hand in a square at the right, found by the ROI
    wide = np.zeros((120, 240, 3), np.uint8)
    wide[:, 120:] = cv2.resize(bgr, (120, 120), interpolation=cv2.INTER_LINEAR)
    pred = clf.predict_frame(wide, Roi(size=1.0, cx=0.75, cy=0.5))
    assert np.allclose(pred.probs, clf.predict_rgb(frame_to_rgb(wide[:, 120:])).probs, atol=1e-6)
    assert not np.allclose(pred.probs, clf.predict_frame(wide).probs, atol=1e-6)  # the centred square differs


def test_predict_frame_layouts(tiny_models):
    clf = Classifier(tiny_models["int8"])
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (480, 640), dtype=np.uint8)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    reference = clf.predict_frame(bgr).probs
    for frame in (gray, gray[..., np.newaxis], bgra):
        pred = clf.predict_frame(frame)
        assert pred.probs.shape == (config.NUM_CLASSES,) and pred.probs.dtype == np.float32
        assert pred.label in config.LABELS and 0 <= pred.confidence <= 1
        np.testing.assert_array_equal(pred.probs, reference)  # same pixels, same answer, whatever the layout


def test_predict_frame_with_roi_on_another_size(tiny_models, signs):
    """A test image placed where a non-default ROI looks, in a 400x600 frame of noise, gives the image's own answer."""
    clf = Classifier(tiny_models["int8"])
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    roi = Roi(size=0.64, cx=0.3, cy=0.6)  # a 256 px square: 4x the model's 64
    x0, y0, x1, y1 = roi.box(400, 600)
    assert (x1 - x0, y1 - y0) == (256, 256) and (x0, y0) != ((600 - 256) // 2, (400 - 256) // 2)
    rgb = signs.test.x[7]
    frame[y0:y1, x0:x1] = cv2.resize(rgb[..., ::-1], (256, 256), interpolation=cv2.INTER_NEAREST)
    pred = clf.predict_frame(frame, roi)
    assert pred.probs.shape == (config.NUM_CLASSES,) and pred.probs.dtype == np.float32
    np.testing.assert_array_equal(pred.probs, clf.predict_rgb(rgb).probs)


def test_roi_box_is_square_and_clamped():
    assert Roi().box(480, 640) == (80, 0, 560, 480)  # the largest centred square
    assert Roi(0.5).box(480, 640) == (200, 120, 440, 360)
    assert Roi(0.5, cx=1.0, cy=0.0).box(480, 640) == (400, 0, 640, 240)  # pushed back inside the frame
    x0, y0, x1, y1 = Roi(0.3, 0.2, 0.9).box(100, 300)
    assert x1 - x0 == y1 - y0 == 30 and 0 <= x0 and x1 <= 300 and 0 <= y0 and y1 <= 100


def test_frame_to_rgb_swaps_channels_and_resizes():
    bgr = np.zeros((240, 320, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's order
    rgb = frame_to_rgb(bgr)
    assert rgb.shape == (config.IMAGE_SIZE, config.IMAGE_SIZE, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 2] == 200).all() and (rgb[..., :2] == 0).all()
    assert square_resize(bgr).shape == (64, 64, 3)
    small = np.full((32, 32), 7, np.uint8)  # enlarged, gray -> three equal channels
    assert (frame_to_rgb(small) == 7).all()
    assert to_bgr(bgr) is bgr  # BGR frames are not copied


def test_bad_frames_are_rejected():
    with pytest.raises(EdgeSignsError, match="uint8"):
        frame_to_rgb(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(EdgeSignsError, match="shape"):
        frame_to_rgb(np.zeros((10, 10, 5), np.uint8))
    with pytest.raises(EdgeSignsError, match="got nothing"):
        frame_to_rgb(None)


def test_input_quantization_paths(signs):
    rgb = signs.test.x[0]
    raw = InputQuantization(np.dtype(np.uint8), 1 / 255, 0)
    assert raw.takes_raw_pixels
    assert np.array_equal(quantize_input(rgb, raw), rgb)
    as_float = quantize_input(rgb, InputQuantization(np.dtype(np.float32)))
    assert np.array_equal(as_float, to_model_input(rgb))
    int8 = InputQuantization(np.dtype(np.int8), 1 / 255, -128)
    q = quantize_input(rgb, int8)
    assert q.dtype == np.int8 and np.array_equal(q.astype(int) + 128, rgb.astype(int))


def test_model_input_is_pixels_over_255():
    x = to_model_input(np.array([[0, 51, 255]], np.uint8))
    assert x.dtype == np.float32 and np.allclose(x, [[0.0, 0.2, 1.0]])
