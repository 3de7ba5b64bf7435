"""The runtime record quantize writes into each sidecar: the builtin ops and their versions, the oldest
runtime the converter says runs the file, and whether the oldest supported Pi runtime can load it.

Needs TensorFlow (edge_signs.trainer.quantize imports it) but trains and converts nothing: it reads
the committed tiny models (tests/fixtures) and copies of them edited with the TFLite schema.
"""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("tensorflow")
flatbuffers = pytest.importorskip("flatbuffers")

from edge_signs import config  # noqa: E402
from edge_signs.artifacts import sha256_file  # noqa: E402
from edge_signs.trainer.quantize import _sidecar, runtime_requirements  # noqa: E402
from edge_signs.trainer.quantize import schema as tf_schema  # noqa: E402

# What the committed tiny int8 model (tests/fixtures/make_tiny_model.py) is made of.
TINY_INT8_OPS = {"CONV_2D": 3, "FULLY_CONNECTED": 4, "MAX_POOL_2D": 2, "QUANTIZE": 1, "RESHAPE": 1, "SOFTMAX": 2}


def _edit(blob: bytes, *, min_runtime: bytes | None = None, drop_min_runtime: bool = False, conv_version: int | None = None) -> bytes:
    model = tf_schema.ModelT.InitFromObj(tf_schema.Model.GetRootAsModel(blob, 0))
    if min_runtime is not None or drop_min_runtime:
        found = [m for m in model.metadata if m.name in (b"min_runtime_version", "min_runtime_version")]
        assert found, "the fixture model records no min_runtime_version"
        if drop_min_runtime:
            model.metadata = [m for m in model.metadata if m not in found]
        else:
            model.buffers[found[0].buffer].data = list(min_runtime.ljust(16, b"\0"))
    if conv_version is not None:
        for code in model.operatorCodes:
            if max(code.builtinCode, code.deprecatedBuiltinCode) == tf_schema.BuiltinOperator.CONV_2D:
                code.version = conv_version
    builder = flatbuffers.Builder(len(blob) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_runtime_record_of_the_tiny_int8_model(tiny_models):
    needs = runtime_requirements(tiny_models["int8"].read_bytes())
    assert needs["ops"] == TINY_INT8_OPS and list(needs["ops"]) == sorted(needs["ops"])
    assert needs["min_runtime_version"] == "1.14.0"  # the converter's own figure, trailing NULs stripped
    assert needs["oldest_supported_runtime"] == config.OLDEST_RUNTIME and needs["runs_on_oldest"] is True


def test_every_format_gets_a_record(tiny_models):
    for fmt, path in tiny_models.items():
        needs = runtime_requirements(path.read_bytes())
        assert needs["ops"] and all(isinstance(v, int) and v >= 1 for v in needs["ops"].values()), fmt
        assert needs["min_runtime_version"] and needs["runs_on_oldest"] is True, fmt


def test_a_file_newer_than_the_oldest_runtime_is_flagged(tiny_models):
    blob = tiny_models["int8"].read_bytes()
    needs = runtime_requirements(_edit(blob, min_runtime=b"2.16.1"))
    assert needs["min_runtime_version"] == "2.16.1" and needs["runs_on_oldest"] is False
    assert runtime_requirements(_edit(blob, min_runtime=b"2.14.0"))["runs_on_oldest"] is True  # the oldest itself runs it
    assert runtime_requirements(_edit(blob, min_runtime=b"2.9.0"))["runs_on_oldest"] is True  # numbers, not strings: 9 < 14


def test_op_versions_and_a_missing_minimum_are_recorded_as_they_are(tiny_models):
    blob = tiny_models["int8"].read_bytes()
    needs = runtime_requirements(_edit(blob, conv_version=7))
    assert needs["ops"] == {**TINY_INT8_OPS, "CONV_2D": 7}
    needs = runtime_requirements(_edit(blob, drop_min_runtime=True))
    assert needs["min_runtime_version"] is None and needs["runs_on_oldest"] is True and needs["ops"] == TINY_INT8_OPS


def test_the_sidecar_carries_the_record(tiny_models, tmp_path):
    path = tmp_path / "model_int8.tflite"
    shutil.copy(tiny_models["int8"], path)
    meta = _sidecar(path, "int8", tmp_path / "model.keras", "0" * 64, None)
    assert meta["runtime"] == runtime_requirements(path.read_bytes())
    assert meta["tflite_sha256"] == sha256_file(path) and meta["converter"]["tensorflow"]
