"""`edge-signs quantize`: float32, float16 and full-integer int8 TFLite from a trained model.

int8 is full-integer: int8 weights and activations, integer builtins only, and a
uint8 input. The model's input is pixel/255, so the calibrated input range is
[0, 1] and the uint8 input gets scale 1/255 and zero point 0: raw camera pixels
go in unchanged, with no per-frame arithmetic. The output ``probs`` is uint8
softmax (scale 1/256), dequantized by the runtime; a second output, ``features``,
is the last Dense layer's input (what `edge-signs teach` fits a personal head on).

Each file gets a JSON sidecar (``model_int8.json`` beside ``model_int8.tflite``)
that the edge runtime reads: labels, input size/type/quantization,
preprocessing, checksums of the source model and the calibration data, and the
converter version.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema  # TFLite flatbuffer reader; the package guard ran first

from edge_signs import __version__, config, preprocess
from edge_signs.artifacts import folder_lock, sha256_file
from edge_signs.data import Signs, resolve_data
from edge_signs.edge.model_files import write_pair
from edge_signs.edge.runtime import FEATURES_OUTPUT, PROBS_OUTPUT, Classifier, find_backend
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.precheck import quantize_targets
from edge_signs.trainer import keras, tf
from edge_signs.trainer.calibration import (
    check_count,
    default_selection,
    images_from_folder,
    images_from_manifest,
)
from edge_signs.trainer.model import load_keras_classifier  # evaluate imports it from here too


@dataclass
class Calibration:
    images: np.ndarray  # uint8 RGB (N, 64, 64, 3)
    source: str  # manifest path or folder
    sha256: str  # of the manifest file, or of the folder's images


def load_calibration(
    *,
    folder: str | os.PathLike | None = None,
    manifest: str | os.PathLike | None = None,
    data=None,
    minimum: int = config.CALIBRATION_MIN,
    log: Log = log_stderr,
) -> Calibration:
    """The representative images: the user's folder, a given manifest, or the committed one.

    The committed manifest (shipped in the wheel, see ``config.calibration_manifest``)
    lists images of the shared SIGNS copy. When the loaded data is another copy (the
    original course file has other pixels and order), the same seeded, stratified
    pick is made from its training set instead, with a warning. A manifest the user
    names must match.
    """
    if folder is not None:
        images = images_from_folder(folder, log=log)
        check_count(len(images), str(folder), minimum=minimum, log=log)
        return Calibration(images, str(folder), hashlib.sha256(images.tobytes()).hexdigest())
    signs = data if isinstance(data, Signs) else resolve_data(data, log=log)
    if manifest is None:
        try:
            return load_calibration(manifest=config.calibration_manifest(), data=signs, minimum=minimum, log=log)
        except EdgeSignsError as exc:
            images = signs.train.x[default_selection(signs)]
            source = f"seeded stratified pick of the training set at {signs.source} ({config.CALIBRATION_PER_CLASS} per class, seed {config.SEED})"
            log(f"warning: {exc}; calibrating on a {source} instead")
            check_count(len(images), source, minimum=minimum, log=log)
            return Calibration(images, source, hashlib.sha256(images.tobytes()).hexdigest())
    images = images_from_manifest(manifest, signs)
    check_count(len(images), str(manifest), minimum=minimum, log=log)
    return Calibration(images, str(manifest), sha256_file(manifest))


def with_features(model):
    """The classifier with a second output, ``features``: the last Dense layer's input (2,048 values for the ResNet50).

    What a personal head is fitted on (``edge-signs teach``), read with no extra work:
    the tensor is computed anyway, and outputs are told apart by these names.
    """
    head = model.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        return model
    return keras.Model(model.inputs, {PROBS_OUTPUT: model.outputs[0], FEATURES_OUTPUT: head.input}, name=model.name)


def _converter(model, workdir: str):
    # Through a SavedModel: Keras 3 variables are frozen into constants on that path.
    # A fixed batch of one: what a camera feeds, and static shapes convert best.
    spec = tf.TensorSpec((1, config.IMAGE_SIZE, config.IMAGE_SIZE, config.CHANNELS), tf.float32, name="image")
    model.export(workdir, format="tf_saved_model", input_signature=[spec], verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(workdir)


def representative_dataset(images: np.ndarray) -> Callable[[], Iterable[list[np.ndarray]]]:
    def generate():
        for rgb in images:
            yield [preprocess.to_model_input(rgb[np.newaxis])]  # the training preprocessing

    return generate


def _full_integer(converter, calibration: Calibration):
    """int8 weights and activations, integer builtins only, ranges from the calibration images."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset(calibration.images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter


def convert(model, fmt: str, calibration: Calibration | None = None, *, features: bool = True) -> bytes:
    """TFLite flatbuffer bytes of ``model`` in ``fmt`` (float32, float16 or int8); ``features``: with the second output."""
    with tempfile.TemporaryDirectory(prefix="edge-signs-export-") as workdir:
        return _convert(with_features(model) if features else model, fmt, calibration, workdir)


def _convert(model, fmt: str, calibration: Calibration | None, workdir: str) -> bytes:
    converter = _converter(model, workdir)
    if fmt == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "int8":
        if calibration is None:
            raise EdgeSignsError("int8 conversion needs calibration images")
        _full_integer(converter, calibration)
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    elif fmt != "float32":
        raise EdgeSignsError(f"format '{fmt}': unknown (expected one of {', '.join(config.FORMATS)})")
    return converter.convert()




def runtime_requirements(blob: bytes) -> dict:
    """The builtin ops (and versions) a TFLite file uses and the oldest runtime the converter says runs it.

    The converter writes ``min_runtime_version`` into the file from its table of op
    versions; the op list is recorded too, so a runtime that refuses the file can be
    matched against it.
    """
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(blob, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = {}
    for code in model.operatorCodes or []:
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), f"BUILTIN_{code.builtinCode}")
        ops[name] = max(ops.get(name, 0), int(code.version))
    minimum = ""
    for meta in model.metadata or []:
        if meta.name in (b"min_runtime_version", "min_runtime_version"):
            data = model.buffers[meta.buffer].data
            minimum = bytes(data if data is not None else b"").rstrip(b"\0").decode("ascii", "replace")
    oldest = config.OLDEST_RUNTIME
    return {"ops": dict(sorted(ops.items())), "min_runtime_version": minimum or None, "oldest_supported_runtime": oldest,
            "runs_on_oldest": not minimum or _version_tuple(minimum) <= _version_tuple(oldest)}


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def _sidecar(tflite_path: Path, fmt: str, source: Path, source_sha: str, calibration: Calibration | None, reference: np.ndarray | None = None) -> dict:
    clf = Classifier(tflite_path, check_metadata=False)  # read back what the file really is
    q = clf.input_quant
    agreement = None
    if reference is not None:
        classes = clf.predict_batch(calibration.images).argmax(axis=1)
        agreement = {"images": int(len(reference)), "share": float(np.mean(classes == reference)), "on": "the calibration images"}
    return {
        "format": fmt,
        "detected_format": clf.format,
        "labels": list(config.LABELS),
        "input": {
            "shape": [1, config.IMAGE_SIZE, config.IMAGE_SIZE, config.CHANNELS],
            "dtype": q.dtype.name,
            "scale": q.scale,
            "zero_point": q.zero_point,
            "takes_raw_pixels": q.takes_raw_pixels,
        },
        "output": {"dtype": np.dtype(clf._out["dtype"]).name, "scale": clf._out_scale, "zero_point": clf._out_zero, "meaning": "softmax probabilities"},
        "features": {"output": FEATURES_OUTPUT, "size": clf.feature_size, "meaning": "the last layer's input"} if clf.has_features else None,
        "preprocessing": preprocess.describe(),
        "source_model": {"file": source.name, "sha256": source_sha},
        "calibration": None if calibration is None else {"source": calibration.source, "sha256": calibration.sha256, "images": int(len(calibration.images))},
        "float_agreement": agreement,
        "converter": {"tensorflow": tf.__version__, "edge_signs": __version__},
        "runtime": runtime_requirements(tflite_path.read_bytes()),
        "tflite_sha256": sha256_file(tflite_path),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def quantize(
    model_path: str | os.PathLike,
    formats: Iterable[str],
    *,
    out_dir: str | os.PathLike | None = None,
    calibration_dir: str | os.PathLike | None = None,
    manifest: str | os.PathLike | None = None,
    data=None,
    min_calibration: int = config.CALIBRATION_MIN,
    log: Log = log_stderr,
) -> list[Path]:
    """Convert a trained .keras model to each format; returns the .tflite paths written."""
    model_path = Path(model_path)
    formats = list(dict.fromkeys(formats))
    targets = quantize_targets(model_path, formats, out_dir)  # before any work: writable, files not folders, not the input
    out = next(iter(targets.values())).parent
    find_backend()  # the files are read back to write their metadata: fail before converting
    model = load_keras_classifier(model_path)
    calibration = None
    if "int8" in formats:
        calibration = load_calibration(folder=calibration_dir, manifest=manifest, data=data, minimum=min_calibration, log=log)
    source_sha = sha256_file(model_path)
    # What the float model says of the calibration images: each written file is compared with it, so a
    # conversion that lost the model (int8 of a model with a few huge activation channels) is told at once.
    reference = None if calibration is None else float_classes(model, calibration.images)
    written = []
    with folder_lock(out, f"quantize into {out}"):
        for fmt, path in targets.items():
            log(f"converting {model_path.name} to {fmt}" + (f" (calibrating on {len(calibration.images)} images from {calibration.source})" if fmt == "int8" else ""))
            meta = _write_pair(convert(model, fmt, calibration), path, fmt, model_path, source_sha, calibration, reference)
            needs = meta["runtime"]
            log(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; runs on TFLite runtimes from {needs['min_runtime_version'] or 'any version'})")
            _report_agreement(path, model_path, meta["float_agreement"], log)
            if not needs["runs_on_oldest"]:
                log(f"warning: {path.name} needs a TFLite runtime >= {needs['min_runtime_version']}: tflite-runtime {needs['oldest_supported_runtime']} "
                    f"(older Pi images) cannot load it; use ai-edge-litert there")
            written.append(path)
    return written


def _write_pair(blob: bytes, path: Path, fmt: str, source: Path, source_sha: str, calibration: Calibration | None, reference: np.ndarray | None) -> dict:
    return write_pair(blob, path, f"converted {fmt}", lambda tmp: _sidecar(tmp, fmt, source, source_sha, calibration, reference))


def float_classes(model, images: np.ndarray) -> np.ndarray:
    """The Keras model's top class for each uint8 RGB image, through the one preprocessing definition."""
    return np.asarray(model.predict(preprocess.to_model_input(images), batch_size=config.PREDICT_BATCH, verbose=0)).argmax(axis=1)


def _report_agreement(path: Path, source: Path, agreement: dict | None, log: Log) -> None:
    if agreement is None:
        return
    share, images = agreement["share"], agreement["images"]
    log(f"{path.name} gives the float model's class on {share:.3f} of the {images} calibration images")
    if share < config.QUANTIZE_MIN_AGREEMENT:
        log(f"warning: {path.name} agrees with {source.name} on only {share:.0%} of the {images} calibration images "
            f"(expected at least {config.QUANTIZE_MIN_AGREEMENT:.0%}): the conversion lost what the model learnt, most often "
            f"because a few activation channels are far larger than the rest; 'edge-signs evaluate {source.name} {path.name}' "
            f"names the layers that lose it; use another format, or train again (another seed)")


# -- where int8 loses accuracy ----------------------------------------------------------------


def layer_error_report(
    model_path: str | os.PathLike,
    calibration: Calibration,
    debug_images: np.ndarray,
    *,
    top: int = 8,
) -> list[dict]:
    """The layers whose int8 outputs stray furthest from float, by TensorFlow's quantization debugger.

    Each layer's error is the RMS difference between its quantized and float
    outputs, in units of its quantization step (rmse / scale): well above ~0.3 a
    layer loses more than rounding alone explains, and is the first candidate to
    keep in float, recalibrate on better data, or regularize in training.
    """
    model = load_keras_classifier(model_path)
    with tempfile.TemporaryDirectory(prefix="edge-signs-debug-") as workdir:
        converter = _full_integer(_converter(model, workdir), calibration)
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative_dataset(debug_images))
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
    rows = []
    for row in csv.DictReader(dump.getvalue().splitlines()):
        scale = float(row.get("scale") or 0)
        mse = float(row.get("mean_squared_error") or 0)
        if scale <= 0:
            continue
        rows.append(
            {
                "layer": row.get("tensor_name", ""),
                "op": row.get("op_name", ""),
                "rmse_over_scale": float(np.sqrt(mse) / scale),
                "mean_error": float(row.get("mean_error") or 0),
                "max_abs_error": float(row.get("max_abs_error") or 0),
            }
        )
    rows.sort(key=lambda r: r["rmse_over_scale"], reverse=True)
    return rows[:top]
