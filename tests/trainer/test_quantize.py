"""Conversion of a real trained model to each TFLite format, calibration data, and the guards.

Tests that train or convert the one-epoch ResNet50 (``tiny_run``, ``tflite_models``) are marked slow.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs import config  # noqa: E402
from edge_signs.artifacts import sha256_file  # noqa: E402
from edge_signs.edge.runtime import Classifier, find_backend, read_sidecar  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.trainer.calibration import read_manifest  # noqa: E402
from edge_signs.trainer.quantize import load_calibration, quantize  # noqa: E402
from tests.conftest import run_cli  # noqa: E402


@pytest.mark.slow
def test_three_formats_are_written_with_honest_names(tflite_models, tiny_run):
    assert set(tflite_models) == {"float32", "float16", "int8"}
    for fmt, path in tflite_models.items():
        assert path.name == f"model_{fmt}.tflite" and path.parent == tiny_run
        assert Classifier(path).format == fmt
    sizes = {fmt: p.stat().st_size / 1e6 for fmt, p in tflite_models.items()}
    assert sizes["int8"] <= 25 and sizes["float16"] <= 48 and sizes["float32"] > 90


@pytest.mark.slow
def test_int8_file_is_integer_only(tflite_models):
    backend = find_backend()
    interp = backend.interpreter_class(model_path=str(tflite_models["int8"]))
    interp.allocate_tensors()
    inp, outs = interp.get_input_details()[0], interp.get_output_details()
    assert inp["dtype"] == np.uint8 and all(out["dtype"] == np.uint8 for out in outs)  # the probabilities and the features
    scale, zero = inp["quantization"]
    assert zero == 0 and abs(scale * 255 - 1) < 1e-4  # raw camera pixels go straight in
    boundary = {inp["index"], *(out["index"] for out in outs)}
    for t in interp.get_tensor_details():
        if t["index"] in boundary:
            continue
        assert t["dtype"] in (np.int8, np.int32), (t["name"], t["dtype"])
        if t["dtype"] == np.int32:  # biases, and the zero-padding's (4, 2) paddings operand
            assert len(t["shape"]) == 1 or tuple(t["shape"]) == (4, 2), (t["name"], t["shape"])


@pytest.mark.slow
def test_dynamic_range_file_is_not_called_int8(tiny_run, tmp_path):
    import tensorflow as tf

    from edge_signs.trainer.quantize import _converter, load_keras_classifier

    converter = _converter(load_keras_classifier(tiny_run / "model.keras"), str(tmp_path / "export"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no representative data: dynamic range
    path = tmp_path / "model_int8.tflite"  # a misleading name
    path.write_bytes(converter.convert())
    assert Classifier(path).format == "dynamic-range"


@pytest.mark.slow
def test_sidecar_round_trips(tflite_models, tiny_run):
    for fmt, path in tflite_models.items():
        meta = read_sidecar(path)
        clf = Classifier(path)
        assert meta["format"] == meta["detected_format"] == fmt
        assert meta["labels"] == list(config.LABELS) and clf.labels == config.LABELS
        assert meta["input"]["dtype"] == clf.input_quant.dtype.name
        assert meta["input"]["scale"] == pytest.approx(clf.input_quant.scale)
        assert meta["preprocessing"]["scale"] == pytest.approx(1 / 255)
        assert meta["source_model"]["sha256"] == sha256_file(tiny_run / "model.keras")
        assert meta["tflite_sha256"] == sha256_file(path)
        assert meta["converter"]["tensorflow"]
    int8 = read_sidecar(tflite_models["int8"])
    assert int8["input"]["takes_raw_pixels"] is True
    assert int8["calibration"]["sha256"] == sha256_file(config.calibration_manifest())
    assert int8["calibration"]["images"] == len(read_manifest(config.calibration_manifest()))


@pytest.mark.slow
def test_every_format_gives_the_2048_features_its_last_layer_reads(tflite_models, signs):
    from edge_signs.edge.head_file import read_site
    from edge_signs.edge.teach import agreement

    x = signs.test.x[:40]
    for fmt, path in tflite_models.items():
        clf = Classifier(path)
        assert clf.has_features and clf.feature_size == 2048, fmt
        assert read_sidecar(path)["features"] == {"output": "features", "size": 2048, "meaning": "the last layer's input"}
    probs, feats = Classifier(tflite_models["int8"]).features_batch(x)
    assert agreement(probs, read_site(tflite_models["int8"]).original().predict(feats)) >= 0.95


@pytest.mark.slow
def test_int8_agrees_with_float32_on_real_images(tflite_models, signs):
    x = signs.test.x[:40]
    p32 = Classifier(tflite_models["float32"]).predict_batch(x)
    p8 = Classifier(tflite_models["int8"]).predict_batch(x)
    assert np.abs(p32 - p8).max() < 0.25  # dequantized probabilities stay close


@pytest.mark.slow
def test_each_file_records_how_often_it_gives_the_float_models_class(tflite_models, tiny_run, signs):
    import keras

    from edge_signs.preprocess import to_model_input

    images = load_calibration(data=signs).images
    float_classes = keras.models.load_model(tiny_run / "model.keras", compile=False).predict(to_model_input(images), verbose=0).argmax(1)
    for fmt in ("float16", "int8"):
        recorded = read_sidecar(tflite_models[fmt])["float_agreement"]
        own = Classifier(tflite_models[fmt]).predict_batch(images).argmax(1)
        assert recorded["images"] == len(images)
        assert recorded["share"] == pytest.approx(float(np.mean(own == float_classes)))


def _small_classifier(path, loud: float):
    """A small SIGNS-shaped classifier whose class comes from three quiet channels; a fourth, which the head
    ignores, is ``loud`` for every image. Beside a channel ~1,000x larger, per-tensor int8 ranges round the quiet ones away."""
    import keras

    rng = np.random.default_rng(0)
    inputs = keras.Input((config.IMAGE_SIZE, config.IMAGE_SIZE, config.CHANNELS))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(config.NUM_CLASSES, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    kernel = rng.normal(0, 0.3, (3, 3, 3, 4)).astype("float32")
    kernel[..., 0] = loud
    head = rng.normal(0, 3.0, (4, config.NUM_CLASSES)).astype("float32")
    head[0] = 0.0
    model.get_layer("conv").set_weights([kernel, np.full(4, 0.5, "float32")])
    model.get_layer("head").set_weights([head, np.zeros(config.NUM_CLASSES, "float32")])
    model.save(path)


def test_quantize_says_when_int8_lost_the_model(tmp_path, signs):
    _small_classifier(tmp_path / "model.keras", loud=300.0)
    lines = []
    int8, = quantize(tmp_path / "model.keras", ["int8"], data=signs, log=lines.append)
    agreement = read_sidecar(int8)["float_agreement"]
    assert agreement["share"] < config.QUANTIZE_MIN_AGREEMENT
    warning = [line for line in lines if line.startswith("warning: model_int8.tflite agrees with model.keras on only")]
    assert len(warning) == 1 and "edge-signs evaluate model.keras model_int8.tflite" in warning[0]


def test_quantize_is_quiet_when_int8_keeps_the_model(tmp_path, signs):
    _small_classifier(tmp_path / "model.keras", loud=0.3)
    lines = []
    int8, = quantize(tmp_path / "model.keras", ["int8"], data=signs, log=lines.append)
    assert read_sidecar(int8)["float_agreement"]["share"] >= config.QUANTIZE_MIN_AGREEMENT
    assert any(line.startswith("model_int8.tflite gives the float model's class on") for line in lines)
    assert not any(line.startswith("warning") for line in lines)


# -- calibration data -----------------------------------------------------------------------


def test_committed_manifest_is_stratified_training_only(signs):
    rows = read_manifest(config.calibration_manifest())
    labels = np.array([r["label"] for r in rows])
    assert len(rows) >= config.CALIBRATION_RECOMMENDED
    assert np.bincount(labels).tolist() == [len(rows) // 6] * 6
    assert all(r["file"].startswith("train/") for r in rows)
    assert len({r["index"] for r in rows}) == len(rows)
    images = load_calibration(data=signs, log=lambda m: None).images
    assert np.array_equal(images[0], signs.train.x[rows[0]["index"]])


def _manifest(tmp_path, text):
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    return path


def test_manifest_guards(tmp_path, signs):
    with pytest.raises(EdgeSignsError, match="manifest not found"):
        load_calibration(manifest=tmp_path / "missing.csv", data=signs)
    with pytest.raises(EdgeSignsError, match="header"):
        load_calibration(manifest=_manifest(tmp_path, "a,b\n1,2\n"), data=signs)
    with pytest.raises(EdgeSignsError, match="outside the training set"):
        load_calibration(manifest=_manifest(tmp_path, "index,label,file,pixels_sha256\n5000,0,x,abc\n"), data=signs)
    with pytest.raises(EdgeSignsError, match="another copy of SIGNS"):
        load_calibration(manifest=_manifest(tmp_path, "index,label,file,pixels_sha256\n0,0,x,0000000000000000\n"), data=signs)
    good = config.calibration_manifest().read_text().splitlines()
    few = _manifest(tmp_path, "\n".join(good[:3 + 10]) + "\n")  # comments + header + 10 rows
    with pytest.raises(EdgeSignsError, match=r"10 calibration image\(s\), at least 32 needed"):
        load_calibration(manifest=few, data=signs)


def test_calibration_folder_of_own_images(tmp_path, signs):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(40):  # camera-sized frames: they go through the camera path
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), cv2.resize(signs.train.x[i * 20][..., ::-1], (320, 240)))
    warnings = []
    cal = load_calibration(folder=folder, log=warnings.append)
    assert cal.images.shape == (40, 64, 64, 3)
    assert len(warnings) == 1 and "recommended" in warnings[0]
    (folder / "bad.png").write_bytes(b"not a png")
    with pytest.raises(EdgeSignsError, match=r"bad\.png: unreadable image"):
        load_calibration(folder=folder)


# -- bad input ------------------------------------------------------------------------------


def test_missing_model(tmp_path):
    result = run_cli("quantize", tmp_path / "nope.keras", "--fp16")
    assert result.returncode == 1 and "nope.keras: model file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_not_a_keras_file(tmp_path):
    bogus = tmp_path / "model.keras"
    bogus.write_text("hello")
    result = run_cli("quantize", bogus, "--fp16")
    assert result.returncode == 1 and "not a Keras model" in result.stderr
    assert not list(tmp_path.glob("*.tflite"))


def test_keras_model_of_another_task(tmp_path):
    from tensorflow import keras

    other = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    other.save(tmp_path / "other.keras")
    with pytest.raises(EdgeSignsError, match="not a SIGNS classifier"):
        quantize(tmp_path / "other.keras", ["float16"])
    assert not list(tmp_path.glob("*.tflite"))


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    model = tmp_path / "model.keras"  # the output folder is checked before the model is even loaded
    model.write_text("")
    result = run_cli("quantize", model, "--fp16", "--out", blocker / "sub")
    assert result.returncode == 1 and "not writable" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_layer_error_report_ranks_layers(tiny_run, signs):
    from edge_signs.trainer.quantize import layer_error_report

    calibration = load_calibration(data=signs, log=lambda m: None)
    calibration.images = calibration.images[:32]  # enough to rank layers; keeps the test quick
    layers = layer_error_report(tiny_run / "model.keras", calibration, signs.train.x[:8], top=5)
    assert 1 <= len(layers) <= 5
    errors = [row["rmse_over_scale"] for row in layers]
    assert errors == sorted(errors, reverse=True) and all(np.isfinite(errors))
    assert all(row["layer"] and row["op"] for row in layers)


def test_default_calibration_falls_back_for_another_copy_of_signs(signs):
    """The original course file holds other pixels in another order: same pick, with a warning."""
    from edge_signs.data import Signs, Split
    from edge_signs.trainer.calibration import default_selection

    order = np.random.default_rng(0).permutation(len(signs.train))
    other = Signs(Split(signs.train.x[order], signs.train.y[order]), signs.test, "elsewhere", "hdf5")
    warnings = []
    cal = load_calibration(data=other, log=warnings.append)
    assert len(warnings) == 1 and "another copy of SIGNS" in warnings[0] and "seeded stratified pick" in warnings[0]
    assert "seeded stratified pick" in cal.source
    assert np.array_equal(cal.images, other.train.x[default_selection(other)])
    assert np.bincount(other.train.y[default_selection(other)]).tolist() == [config.CALIBRATION_PER_CLASS] * 6
    # on the copy the manifest was written for, the pick and the manifest are the same images
    same = load_calibration(data=signs, log=lambda m: None)
    assert same.source == str(config.calibration_manifest())
    assert np.array_equal(same.images, signs.train.x[default_selection(signs)])
