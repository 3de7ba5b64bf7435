"""Every default of the toolkit, in one place.

Click options, function signatures and tests read their defaults from here so
that the CLI, the Python API and the documentation never disagree.
"""

from __future__ import annotations

import importlib.resources
import os
from dataclasses import dataclass
from pathlib import Path

# -- the task ---------------------------------------------------------------
IMAGE_SIZE = 64  # SIGNS images are 64x64 RGB
CHANNELS = 3
NUM_CLASSES = 6
LABELS = ("0", "1", "2", "3", "4", "5")  # fingers shown

# -- preprocessing (see preprocess.py: the single definition) ----------------
# model input = pixel * INPUT_SCALE + INPUT_OFFSET, RGB order, 64x64.
INPUT_SCALE = 1.0 / 255.0
INPUT_OFFSET = 0.0

# -- data ---------------------------------------------------------------------
DATA_ENV_VAR = "EDGE_SIGNS_DATA"
H5_FILES = ("train_signs.h5", "test_signs.h5")
# Pinned public mirror of the course files, verified by git blob sha1
# (sha1(b"blob <size>\0" + content)); see ../shared/datasets/signs/README.md.
MIRROR_COMMIT = "5f3841211c2a37f7ea9afbda0d7e38f072a60ddd"
MIRROR_BASE_URL = f"https://raw.githubusercontent.com/DrAlexSanz/CNN-in-TF/{MIRROR_COMMIT}/"
MIRROR_BLOB_SHA1 = {
    "train_signs.h5": "15904fbeb148848aea50d42c96a539b7bd11c4e5",
    "test_signs.h5": "ac34131b87c829b90f5c0913f90d509f1c1f8ed0",
}
VAL_FRACTION = 0.1  # stratified, seeded; carved from the training set
# Fewest images of each class a split may hold: training needs two (one can be held
# out for validation), a test set one. Both layouts are held to the same rule.
MIN_IMAGES_PER_CLASS = {"train": 2, "test": 1}


def keras_cache_dir() -> Path:
    """Where keras.datasets keep their downloads ($KERAS_HOME or ~/.keras)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "signs"


# -- training -----------------------------------------------------------------
SEED = 0
BATCH_SIZE = 32
PREDICT_BATCH = 128  # Keras inference batches (evaluation, final metrics)


@dataclass(frozen=True)
class Recipe:
    """Everything that defines how a model is trained, apart from data and seed."""

    epochs: int
    learning_rate: float
    schedule: str = "constant"  # "constant" or "cosine" (with linear warm-up)
    warmup_epochs: int = 0
    optimizer: str = "adam"  # "adam" or "adamw"
    weight_decay: float = 0.0  # decoupled (AdamW)
    l2: float = 0.0  # kernel L2 penalty
    dropout: float = 0.0  # before the classifier
    label_smoothing: float = 0.0
    augment: bool = False
    bn_momentum: float = 0.99


DEFAULT_RECIPE = "default"
RECIPES: dict[str, Recipe] = {
    # The deeplearning.ai project as published: 20 epochs of plain Adam, no augmentation.
    "seed": Recipe(epochs=20, learning_rate=1e-3),
    # Robust to a real camera: camera-like augmentation, cosine schedule, regularized.
    "default": Recipe(
        epochs=60,
        learning_rate=1e-3,
        schedule="cosine",
        warmup_epochs=2,
        optimizer="adamw",
        weight_decay=0.05,
        dropout=0.3,
        label_smoothing=0.1,
        augment=True,
        bn_momentum=0.9,
    ),
}


# -- quantization ---------------------------------------------------------------
CALIBRATION_PACKAGE = "edge_signs.calibration_data"  # calibration/ of the repository, as the wheel ships it
CALIBRATION_MANIFEST_NAME = "manifest.csv"
CHECKOUT_CALIBRATION_MANIFEST = Path(__file__).resolve().parent.parent / "calibration" / CALIBRATION_MANIFEST_NAME


def calibration_manifest() -> Path:
    """The committed calibration manifest: package data when installed, calibration/ in a checkout."""
    try:
        packaged = Path(str(importlib.resources.files(CALIBRATION_PACKAGE) / CALIBRATION_MANIFEST_NAME))
    except ModuleNotFoundError:  # a checkout on sys.path without an install
        return CHECKOUT_CALIBRATION_MANIFEST
    return packaged if packaged.is_file() else CHECKOUT_CALIBRATION_MANIFEST


CALIBRATION_PER_CLASS = 50  # manifest written by tools/make_calibration_manifest.py
CALIBRATION_MIN = 32  # fewer images than this: error (ranges too noisy)
CALIBRATION_RECOMMENDED = 200  # fewer: warning
FORMATS = ("float32", "float16", "int8")
INT8_TOLERANCE = 0.01  # int8 accuracy lost against float beyond which evaluate says which layers lose it
DEBUG_IMAGES = 64  # images the quantization debugger runs

# -- edge runtime ---------------------------------------------------------------
# The oldest interpreter a Pi may have: tflite-runtime 2.14 (Python 3.11 aarch64 wheels,
# Raspberry Pi OS Bookworm). quantize says when a file needs something newer.
OLDEST_RUNTIME = "2.14.0"
THREADS = 1
LATENCY_RUNS = 50
LATENCY_WARMUP = 5

# -- live -----------------------------------------------------------------------
SMOOTHING_FRAMES = 5
CONFIDENCE_THRESHOLD = 0.6
# Ask the camera for little more than the model needs: the model sees 64x64, and every
# extra pixel is capture, copy and decode work on the Pi's four small cores.
CAMERA_WIDTH = 320
CAMERA_HEIGHT = 240
PICAMERA_MODEL_SIZE = (320, 240)  # the Pi camera's low-resolution stream for the model
FRAME_WAIT_S = 1.0  # the capture thread's "no frame now" after this long without a new frame
CAMERA_FPS = 30
READ_RETRIES = 10  # consecutive failed reads before a camera is given up on
READ_RETRY_SLEEP_S = 0.05  # pause between failed reads of a live camera or stream (files are not waited on)
CAMERA_INDEX = 0  # `edge-signs live` with no source named opens this OpenCV camera
STATUS_INTERVAL_S = 5.0  # --headless: a status line this often (0: none)
STATS_WINDOW = 2048  # medians of inference/overhead ms are over the last this many frames (bounded memory)
DISPLAY_MIN_SIDE = 320  # smaller frames (the 64x64 test set) are upscaled to this for the overlay
RECORD_FPS = 15.0  # --record frame rate when the source does not say (test set, some streams)
RECORD_FOURCC = {".avi": "MJPG", ".mp4": "mp4v"}  # --record container by extension -> codec
WINDOW_NAME = "edge-signs live"

# -- live --serve: the browser page, MJPEG stream and status JSON (edge/serve.py) ---------
SERVE_HOST = "127.0.0.1"  # --serve PORT alone binds here: only this machine (ssh -L from others)
SERVE_MAX_FPS = 15.0  # JPEGs encoded per second at most, one shared by all viewers
SERVE_MAX_SIDE = 640  # longest side of a served JPEG; larger frames are scaled down first
SERVE_JPEG_QUALITY = 80
SERVE_MAX_CLIENTS = 4  # /stream.mjpg viewers at once; more get 503
SERVE_MAX_CONNECTIONS = 32  # all open connections (viewers, status polls, routes); beyond: refused at once
SERVE_SOCKET_TIMEOUT_S = 10.0  # a client that sends or reads nothing this long is dropped and its slot freed
SERVE_SEND_BUFFER = 256 * 1024  # kernel send buffer per viewer: what a stalled viewer can pin, at most
SERVE_STATUS_POLL_MS = 250  # how often the page asks /status
SERVE_MAX_BODY = 64 * 1024  # largest POST body a registered route accepts
SERVE_TOKEN_BYTES = 16  # secrets.token_urlsafe(16): 22 characters
SERVE_MIN_TOKEN_CHARS = 12  # a --token shorter than this is refused
SERVE_TOKEN_ENV = "EDGE_SIGNS_TOKEN"  # --token from the environment: not visible in `ps`
