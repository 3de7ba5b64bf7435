"""The edge runtime around the interpreter: loading, formats, frames of any layout, clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.errors import EdgeSignsError
from edge_signs.edge.preprocess import InputQuantization, Roi, frame_to_rgb, quantize_input, to_model_input
from edge_signs.edge.runtime import Classifier, find_backend

pytestmark = pytest.mark.slow


def _bump_op_version(blob: bytes, version: int = 99) -> bytes:
    """The same model, claiming an op version no runtime has: what a newer converter's file looks like."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(blob, 0))
    conv = schema.BuiltinOperator.CONV_2D
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == conv:
            code.version = version
    builder = flatbuffers.Builder(len(blob) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_newer_converter_op_version_is_explained(tflite_models, tmp_path):
    pytest.importorskip("tensorflow")
    newer = tmp_path / "newer_int8.tflite"
    newer.write_bytes(_bump_op_version(tflite_models["int8"].read_bytes()))
    with pytest.raises(EdgeSignsError) as err:
        Classifier(newer)
    message = str(err.value)
    assert "op CONV_2D version 99" in message and find_backend().name in message
    assert "upgrade" in message and "\n" not in message


def test_backend_is_named(tflite_models):
    clf = Classifier(tflite_models["int8"])
    assert clf.backend.name in ("ai-edge-litert", "tflite-runtime", "tensorflow")
    assert str(clf.backend) in clf.describe() and "raw uint8 pixels" in clf.describe()


def test_wrong_files_are_named(tmp_path, tiny_run):
    with pytest.raises(EdgeSignsError, match="model file not found"):
        Classifier(tmp_path / "missing.tflite")
    with pytest.raises(EdgeSignsError, match="a Keras model, not TFLite"):
        Classifier(tiny_run / "model.keras")
    (tmp_path / "junk.tflite").write_bytes(b"0123456789abcdef")
    with pytest.raises(EdgeSignsError, match="not a TFLite model"):
        Classifier(tmp_path / "junk.tflite")


def test_frames_of_any_layout_give_the_same_prediction(tflite_models, signs):
    clf = Classifier(tflite_models["float32"])
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


def test_bad_frames_are_rejected():
    with pytest.raises(EdgeSignsError, match="uint8"):
        frame_to_rgb(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(EdgeSignsError, match="shape"):
        frame_to_rgb(np.zeros((10, 10, 5), np.uint8))


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


def test_no_interpreter_installed_names_the_fix(monkeypatch, tmp_path):
    import sys

    for name in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(EdgeSignsError, match=r"no TFLite interpreter is installed: pip install 'edge-signs\[pi\]'"):
        find_backend()


def test_interpreters_are_tried_in_order(monkeypatch):
    import sys

    from edge_signs.edge.runtime import is_installed

    assert find_backend().name == "ai-edge-litert"  # first choice when installed
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    if not (is_installed("tflite_runtime") or is_installed("tensorflow")):
        pytest.skip("only ai-edge-litert is installed here")
    expected = "tflite-runtime" if is_installed("tflite_runtime") else "tensorflow"
    assert find_backend().name == expected  # falls through, in order
