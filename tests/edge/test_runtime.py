"""The edge runtime around the interpreter: loading, formats, backends, sidecars and clear errors.

Runs on the committed tiny models (tests/fixtures), without TensorFlow.
"""

from __future__ import annotations

import importlib.machinery
import json
import shutil
import sys
import types
import zipfile

import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge.runtime import Backend, Classifier, detect_format, find_backend, is_installed, read_sidecar
from edge_signs.errors import EdgeSignsError


def _bump_op_version(blob: bytes, version: int = 99) -> bytes:
    """The same model, claiming an op version no runtime has: what a newer converter's file looks like."""
    flatbuffers = pytest.importorskip("flatbuffers")
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")  # the TFLite schema, shipped with LiteRT

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(blob, 0))
    conv = schema.BuiltinOperator.CONV_2D
    bumped = 0
    for code in model.operatorCodes:
        if max(code.builtinCode, code.deprecatedBuiltinCode) == conv:
            code.version = version
            bumped += 1
    assert bumped, "the fixture model has no CONV_2D"
    builder = flatbuffers.Builder(len(blob) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_newer_converter_op_version_is_explained(tiny_models, tmp_path):
    newer = tmp_path / "newer_int8.tflite"
    newer.write_bytes(_bump_op_version(tiny_models["int8"].read_bytes()))
    with pytest.raises(EdgeSignsError) as err:
        Classifier(newer)
    message = str(err.value)
    assert "op CONV_2D version 99" in message and find_backend().name in message
    assert "upgrade" in message and "\n" not in message


def test_formats_are_read_from_the_tensors(tiny_models, tmp_path):
    for fmt, path in tiny_models.items():
        assert Classifier(path).format == fmt
    # the name does not matter: an int8 file called float32 is still int8
    liar = tmp_path / "model_float32.tflite"
    shutil.copy(tiny_models["int8"], liar)
    assert Classifier(liar).format == "int8"


def test_detect_format_rules():
    i8, u8, i32, f32, f16 = (np.dtype(t) for t in ("int8", "uint8", "int32", "float32", "float16"))
    assert detect_format([u8, i8, i32, u8], u8) == "int8"
    assert detect_format([f32, f16], f32) == "float16"
    assert detect_format([f32, i8, i32], f32) == "dynamic-range"
    assert detect_format([f32, i32], f32) == "float32"


def test_int8_model_takes_raw_pixels_and_gives_probabilities(tiny_models, signs):
    clf = Classifier(tiny_models["int8"])
    assert clf.input_quant.dtype == np.uint8 and clf.input_quant.takes_raw_pixels
    probs = clf.predict_batch(signs.test.x[:10])
    assert probs.shape == (10, config.NUM_CLASSES) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1, atol=0.05)  # dequantized uint8 softmax: steps of 1/256
    # the float formats agree with each other to rounding, int8 to its quantization
    p32 = Classifier(tiny_models["float32"]).predict_batch(signs.test.x[:40])
    p16 = Classifier(tiny_models["float16"]).predict_batch(signs.test.x[:40])
    p8 = Classifier(tiny_models["int8"]).predict_batch(signs.test.x[:40])
    assert np.abs(p32 - p16).max() < 0.02 and np.abs(p32 - p8).max() < 0.25


def test_the_fixture_model_has_learnt_something(tiny_models, signs):
    """Better than chance (1/6), or the accuracy checks elsewhere would compare noise with noise."""
    for path in tiny_models.values():
        probs = Classifier(path).predict_batch(signs.test.x)
        assert np.mean(probs.argmax(axis=1) == signs.test.y) > 0.4, path.name


def test_predict_rgb_is_predict_batch(tiny_models, signs):
    clf = Classifier(tiny_models["int8"])
    batch = clf.predict_batch(signs.test.x[:5])
    for rgb, probs in zip(signs.test.x[:5], batch):
        pred = clf.predict_rgb(rgb)
        np.testing.assert_array_equal(pred.probs, probs)
        assert pred.index == int(probs.argmax()) and pred.label == config.LABELS[pred.index]
        assert pred.confidence == pytest.approx(float(probs.max())) and pred.inference_ms > 0


def test_backend_is_named(tiny_models):
    clf = Classifier(tiny_models["int8"])
    assert clf.backend.name in ("ai-edge-litert", "tflite-runtime", "tensorflow")
    assert str(clf.backend) in clf.describe() and "raw uint8 pixels" in clf.describe()
    assert f"{config.THREADS} thread(s)" in clf.describe() and "float32" in Classifier(tiny_models["float32"]).describe()


def test_wrong_files_are_named(tmp_path):
    with pytest.raises(EdgeSignsError, match="model file not found"):
        Classifier(tmp_path / "missing.tflite")
    keras_file = tmp_path / "model.keras"  # a .keras file is a zip archive
    with zipfile.ZipFile(keras_file, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(EdgeSignsError, match="a Keras model, not TFLite"):
        Classifier(keras_file)
    (tmp_path / "junk.tflite").write_bytes(b"0123456789abcdef")
    with pytest.raises(EdgeSignsError, match="not a TFLite model"):
        Classifier(tmp_path / "junk.tflite")


def test_sidecar_is_read_and_checked(tiny_models, tmp_path):
    meta = read_sidecar(tiny_models["int8"])
    assert meta["format"] == meta["detected_format"] == "int8" and meta["input"]["takes_raw_pixels"] is True
    assert meta["labels"] == list(config.LABELS)
    assert Classifier(tiny_models["int8"]).labels == config.LABELS
    model = tmp_path / "m.tflite"
    shutil.copy(tiny_models["float32"], model)
    assert read_sidecar(model) == {}  # no sidecar: the configured labels
    assert Classifier(model).labels == config.LABELS
    model.with_suffix(".json").write_text("{not json")
    with pytest.raises(EdgeSignsError, match="corrupt metadata sidecar"):
        Classifier(model)
    # Labels must be the classes in the model's output order: other names, ints, nested lists,
    # a permutation or a short list would report the wrong sign.
    for labels in (["zero", "one", "two", "three", "four", "five"], [0, 1, 2, 3, 4, 5], [["0"], ["1"], ["2"], ["3"], ["4"], ["5"]],
                   ["5", "4", "3", "2", "1", "0"], ["a", "b"]):
        model.with_suffix(".json").write_text(json.dumps({"labels": labels}))
        with pytest.raises(EdgeSignsError, match="not the classes in the model's output order"):
            Classifier(model)


def test_sidecar_of_another_model_is_refused(tiny_models, tmp_path):
    """A .json copied beside the wrong .tflite names another file's sha256."""
    model = tmp_path / "m_int8.tflite"
    shutil.copy(tiny_models["float32"], model)  # another model...
    shutil.copy(tiny_models["int8"].with_suffix(".json"), model.with_suffix(".json"))  # ...beside the int8 file's metadata
    with pytest.raises(EdgeSignsError, match="metadata of another model") as err:
        Classifier(model)
    assert "\n" not in str(err.value)


def test_no_interpreter_installed_names_the_fix(monkeypatch):
    for name in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(EdgeSignsError, match=r"no TFLite interpreter is installed: pip install 'edge-signs\[pi\]'"):
        find_backend()


def _fake_package(monkeypatch, top: str, module: str, interpreter: type | None) -> None:
    """Install a stand-in for ``top`` whose ``module`` has (or lacks) an Interpreter class."""
    package = types.ModuleType(top)
    package.__spec__ = importlib.machinery.ModuleSpec(top, None, is_package=True)
    monkeypatch.setitem(sys.modules, top, package)
    inner = types.ModuleType(module)
    if interpreter is not None:
        inner.Interpreter = interpreter
    monkeypatch.setitem(sys.modules, module, inner)


def test_interpreters_are_tried_in_order(monkeypatch):
    if is_installed("ai_edge_litert"):
        assert find_backend().name == "ai-edge-litert"  # first choice when installed

    class TfliteRuntimeInterpreter:
        pass

    class TensorFlowInterpreter:
        pass

    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    _fake_package(monkeypatch, "tflite_runtime", "tflite_runtime.interpreter", TfliteRuntimeInterpreter)
    _fake_package(monkeypatch, "tensorflow", "tensorflow.lite.python.interpreter", TensorFlowInterpreter)
    backend = find_backend()
    assert (backend.name, backend.interpreter_class) == ("tflite-runtime", TfliteRuntimeInterpreter)  # falls through, in order
    # a tflite_runtime without the interpreter (another build) is passed over for TensorFlow's own
    _fake_package(monkeypatch, "tflite_runtime", "tflite_runtime.interpreter", None)
    backend = find_backend()
    assert (backend.name, backend.interpreter_class) == ("tensorflow", TensorFlowInterpreter)


def test_a_given_backend_is_used(tiny_models):
    real = find_backend()
    made = []

    class Recording(real.interpreter_class):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    clf = Classifier(tiny_models["int8"], threads=3, backend=Backend(Recording, "recording", "0"))
    assert made == [{"model_path": str(tiny_models["int8"]), "num_threads": 3}]
    assert "recording 0" in clf.describe() and "3 thread(s)" in clf.describe()
