"""The edge runtime: a TFLite classifier with numpy, OpenCV and a LiteRT interpreter.

Never imports TensorFlow unless no other interpreter is installed and
TensorFlow is. Small functions around the interpreter, in the spirit of Coral's
pycoral adapters: load, feed uint8 RGB, read dequantized probabilities.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.artifacts import sha256_file
from edge_signs.edge.tflite_file import find_head, read_graph
from edge_signs.errors import EdgeSignsError
from edge_signs.preprocess import InputQuantization, Roi, frame_to_rgb, quantize_input

# Import path of the Interpreter class and the distribution that provides it, in order of preference.
INTERPRETERS = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite.python.interpreter", "tensorflow"),  # tf.lite.Interpreter's own module
)
# The output names of a file that also gives the penultimate features (trainer/quantize.py writes them).
PROBS_OUTPUT, FEATURES_OUTPUT = "probs", "features"
INSTALL_HINT = "pip install 'edge-signs[pi]'  (ai-edge-litert; or tflite-runtime 2.14 on older Pi images)"


@dataclass(frozen=True)
class Backend:
    interpreter_class: type
    name: str  # distribution name, e.g. "ai-edge-litert"
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (and without raising)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked or half-installed package
        return False


def _version(dist: str) -> str:
    # TensorFlow ships under several distribution names (tensorflow, tensorflow-cpu, ...).
    for name in (dist, f"{dist}-cpu", f"{dist}-aarch64"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def find_backend() -> Backend:
    """The first installed TFLite interpreter: ai-edge-litert, tflite-runtime, then TensorFlow's own."""
    for module_name, dist in INTERPRETERS:
        top = module_name.split(".")[0]
        if not is_installed(top):
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if not hasattr(module, "Interpreter"):  # a build without the interpreter
            continue
        backend = Backend(module.Interpreter, dist, _version(dist))
        check_numpy_abi(backend)
        return backend
    raise EdgeSignsError(f"no TFLite interpreter is installed: {INSTALL_HINT}")


NUMPY1_FIX = "pip install 'numpy<2' 'opencv-python-headless<4.12', or install edge-signs with the [pi-tflite] extra (docs/raspberry-pi.md)"


def check_numpy_abi(backend: Backend) -> None:
    """tflite-runtime (2.14 is the last) was built for numpy 1: with numpy 2 every model load fails
    with a page of numpy's advice and a SystemError. Say it in one line before that happens."""
    if backend.name != "tflite-runtime" or backend.version == "unknown":
        return
    numpy_major = int(np.__version__.split(".")[0])
    if numpy_major >= 2 and tuple(int(p) for p in backend.version.split(".")[:2] if p.isdigit()) <= (2, 14):
        raise EdgeSignsError(f"{backend} was built for numpy 1, and this Python has numpy {np.__version__}: {NUMPY1_FIX}, "
                             f"or pip install ai-edge-litert, which works with numpy 2")


_OP_VERSION = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)' version '(\d+)'")


def _explain_load_error(path: Path, backend: Backend, exc: Exception) -> EdgeSignsError:
    text = str(exc)
    match = _OP_VERSION.search(text)
    if match:
        op, version = match.groups()
        return EdgeSignsError(
            f"{path}: uses op {op} version {version}, which {backend} does not know (the file comes from a newer converter); "
            f"upgrade the runtime (pip install -U ai-edge-litert) or convert with a TensorFlow no newer than the runtime"
        )
    first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return EdgeSignsError(f"{path}: {backend} could not load this model ({first_line})")


def check_tflite_file(path: str | Path) -> Path:
    """A readable TFLite flatbuffer, or a one-line error that says what it is instead."""
    path = Path(path)
    if not path.is_file():
        raise EdgeSignsError(f"{path}: model file not found (expected a .tflite file from 'edge-signs quantize')")
    with open(path, "rb") as f:
        head = f.read(8)
    if head[4:8] != b"TFL3":
        if head[:2] == b"PK" or head[:4] == b"\x89HDF":
            raise EdgeSignsError(f"{path}: a Keras model, not TFLite; convert it with 'edge-signs quantize {path}'")
        raise EdgeSignsError(f"{path}: not a TFLite model (no TFL3 flatbuffer identifier)")
    return path


def sidecar_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def read_sidecar(model_path: str | Path, *, check_model: bool = True) -> dict:
    """The metadata `edge-signs quantize` wrote beside the model; {} when there is none.

    Refused with a one-line error: metadata that is not JSON, labels that are not
    the classes' names in the model's output order (a permuted list would report the
    wrong sign), and, with ``check_model``, metadata written for another file (its
    ``tflite_sha256`` differs from the model's).
    """
    path = sidecar_path(model_path)
    if not path.is_file():
        return {}
    fix = "re-run 'edge-signs quantize', or delete it"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise EdgeSignsError(f"{path}: corrupt metadata sidecar ({exc}); {fix}") from None
    if not isinstance(meta, dict):
        raise EdgeSignsError(f"{path}: metadata sidecar is not a JSON object; {fix}")
    labels = meta.get("labels", list(config.LABELS))
    if not isinstance(labels, list) or [str(x) for x in labels] != list(config.LABELS) or not all(isinstance(x, str) for x in labels):
        raise EdgeSignsError(f"{path}: labels {labels!r} are not the classes in the model's output order ({list(config.LABELS)}); {fix}")
    expected = meta.get("tflite_sha256")
    if check_model and expected is not None:
        actual = sha256_file(model_path)
        if actual != expected:
            raise EdgeSignsError(f"{path}: metadata of another model (its tflite_sha256 {str(expected)[:12]}... is not {Path(model_path).name}'s "
                                 f"{actual[:12]}...); copy the model together with its own .json, or {fix}")
    return meta


def detect_format(tensor_dtypes: list[np.dtype], input_dtype: np.dtype) -> str:
    """What a TFLite file really is, from its tensors rather than its name.

    full-integer int8: integer input and no float tensors at all; float16: float16
    weights; dynamic-range: int8 weights but float activations (not an int8 model).
    """
    dtypes = {np.dtype(d) for d in tensor_dtypes}
    floats = {d for d in dtypes if np.issubdtype(d, np.floating)}
    if np.issubdtype(np.dtype(input_dtype), np.integer) and not floats:
        return "int8"
    if np.dtype(np.float16) in dtypes:
        return "float16"
    if np.dtype(np.int8) in dtypes:
        return "dynamic-range"
    return "float32"


@dataclass
class Prediction:
    index: int  # argmax class
    label: str
    confidence: float
    probs: np.ndarray  # float32 (num_classes,)
    inference_ms: float


class Classifier:
    """A SIGNS classifier in a TFLite file, fed uint8 RGB images or camera frames.

    A file with two outputs names them in its signature: ``probs`` (what is
    classified) and ``features`` (the penultimate layer, the last layer's input:
    what a personal head is fitted on). ``features=True`` asks for them from any
    int8 or float file: from that output where there is one, else from the last
    layer's input tensor, which the interpreter then keeps (no arena reuse, no
    default delegate: slower, so only when asked).
    """

    def __init__(self, model_path: str | Path, *, threads: int = config.THREADS, backend: Backend | None = None, check_metadata: bool = True,
                 features: bool = False):
        self.path = check_tflite_file(model_path)
        self.backend = backend or find_backend()
        self.threads = threads
        self.interpreter = self._load(preserve=False)
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        expected_in = (1, config.IMAGE_SIZE, config.IMAGE_SIZE, config.CHANNELS)
        if len(inputs) != 1 or tuple(inputs[0]["shape"]) != expected_in:
            raise EdgeSignsError(f"{self.path}: input shape {[tuple(d['shape']) for d in inputs]}, expected {expected_in}: not a SIGNS classifier")
        self._in = inputs[0]
        self._out, self._features = self._pick_outputs(outputs)
        if features and self._features is None:
            self.interpreter = self._load(preserve=True)
            self._features = self._last_layer_input()
        in_scale, in_zero = self._in["quantization"]
        self.input_quant = InputQuantization(np.dtype(self._in["dtype"]), float(in_scale), int(in_zero))
        out_scale, out_zero = self._out["quantization"]
        self._out_scale, self._out_zero = float(out_scale), int(out_zero)
        self.metadata = read_sidecar(self.path, check_model=check_metadata)
        self.labels = tuple(self.metadata.get("labels", config.LABELS))
        self.format = detect_format([d["dtype"] for d in self.interpreter.get_tensor_details()], self._in["dtype"])

    def _load(self, *, preserve: bool):
        extra = {"experimental_preserve_all_tensors": True} if preserve else {}
        try:
            with warnings.catch_warnings():  # the interpreter's "for debugging only": here it is what was asked for
                warnings.simplefilter("ignore", UserWarning)
                interpreter = self.backend.interpreter_class(model_path=str(self.path), num_threads=self.threads, **extra)
            interpreter.allocate_tensors()
        except (RuntimeError, ValueError, SystemError) as exc:
            raise _explain_load_error(self.path, self.backend, exc) from None
        return interpreter

    def _pick_outputs(self, outputs: list[dict]) -> tuple[dict, dict | None]:
        """(probabilities, features or None): one output is the probabilities; two are told apart by their signature names."""
        expected = f"expected (1, {config.NUM_CLASSES}): not a SIGNS classifier"
        shapes = [tuple(d["shape"]) for d in outputs]
        if len(outputs) == 1:
            if shapes[0] != (1, config.NUM_CLASSES):
                raise EdgeSignsError(f"{self.path}: output shape {shapes}, {expected}")
            return outputs[0], None
        names = read_graph(self.path.read_bytes()).output_names if len(outputs) == 2 else {}
        by_index = {d["index"]: d for d in outputs}
        probs, feats = by_index.get(names.get(PROBS_OUTPUT)), by_index.get(names.get(FEATURES_OUTPUT))
        if probs is None or feats is None or tuple(probs["shape"]) != (1, config.NUM_CLASSES) or len(feats["shape"]) != 2:
            raise EdgeSignsError(f"{self.path}: outputs {sorted(names) or shapes}, {expected} (or two outputs named "
                                 f"'{PROBS_OUTPUT}' (1, {config.NUM_CLASSES}) and '{FEATURES_OUTPUT}' (1, N))")
        return probs, feats

    def _last_layer_input(self) -> dict:
        head = find_head(read_graph(self.path.read_bytes()), self._out["index"])
        return next(d for d in self.interpreter.get_tensor_details() if d["index"] == head.features.index)

    @property
    def has_features(self) -> bool:
        return self._features is not None

    @property
    def feature_size(self) -> int:
        if self._features is None:
            raise EdgeSignsError(f"{self.path}: features were not asked for (Classifier(..., features=True))")
        return int(np.prod(self._features["shape"][1:]))

    def describe(self) -> str:
        q = self.input_quant
        feed = "raw uint8 pixels" if q.takes_raw_pixels else (f"{q.dtype.name} (scale {q.scale:.6g}, zero point {q.zero_point})" if q.is_quantized else q.dtype.name)
        return f"{self.path.name}: {self.format}, input {feed}, {self.backend}, {self.threads} thread(s)"

    def set_input(self, rgb: np.ndarray) -> None:
        """uint8 RGB (64, 64, 3) -> the input tensor, quantized as the model records."""
        self.interpreter.set_tensor(self._in["index"], quantize_input(rgb, self.input_quant)[np.newaxis])

    def invoke(self) -> float:
        """Run the model on the current input; milliseconds taken."""
        t0 = time.perf_counter()
        self.interpreter.invoke()
        return (time.perf_counter() - t0) * 1e3

    def output_probs(self) -> np.ndarray:
        out = self.interpreter.get_tensor(self._out["index"])[0]
        if self._out_scale > 0 and np.issubdtype(out.dtype, np.integer):
            return (out.astype(np.float32) - self._out_zero) * np.float32(self._out_scale)
        return out.astype(np.float32)

    def output_features(self) -> np.ndarray:
        """The penultimate features of the last invoke, dequantized: float32 (feature_size,)."""
        size = self.feature_size
        raw = self.interpreter.get_tensor(self._features["index"]).reshape(size)
        scale, zero = self._features["quantization"]
        if scale > 0 and np.issubdtype(raw.dtype, np.integer):
            return (raw.astype(np.float32) - np.float32(zero)) * np.float32(scale)
        return raw.astype(np.float32)

    def predict_rgb(self, rgb: np.ndarray) -> Prediction:
        self.set_input(rgb)
        ms = self.invoke()
        probs = self.output_probs()
        i = int(np.argmax(probs))
        return Prediction(i, self.labels[i], float(probs[i]), probs, ms)

    def predict_frame(self, frame: np.ndarray, roi: Roi = Roi()) -> Prediction:
        """A camera frame (BGR, BGRA or gray, any size) through the one preprocessing path."""
        return self.predict_rgb(frame_to_rgb(frame, roi))

    def predict_batch(self, images: np.ndarray) -> np.ndarray:
        """uint8 RGB (N, 64, 64, 3) -> probabilities (N, num_classes), one invoke per image."""
        out = np.empty((len(images), config.NUM_CLASSES), np.float32)
        for i, rgb in enumerate(images):
            self.set_input(rgb)
            self.interpreter.invoke()
            out[i] = self.output_probs()
        return out

    def features_batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (N, 64, 64, 3) -> (probabilities (N, num_classes), features (N, feature_size)), one invoke per image."""
        probs = np.empty((len(images), config.NUM_CLASSES), np.float32)
        feats = np.empty((len(images), self.feature_size), np.float32)
        for i, rgb in enumerate(images):
            self.set_input(rgb)
            self.interpreter.invoke()
            probs[i], feats[i] = self.output_probs(), self.output_features()
        return probs, feats
