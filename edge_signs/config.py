"""Every default of the toolkit, in one place.

Click options, function signatures and tests read their defaults from here so
that the CLI, the Python API and the documentation never disagree.
"""

from __future__ import annotations

import dataclasses
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


# -- your own labelled images (collect's output, or any <label>/*.jpg folder) ----------
# A file's group is its name without the last "_<number>": collect names frames
# <session>_<NNNNN>.jpg (group = session), hands-webcam names crops <photo>_<box>.jpg
# (group = photo). Held-out and validation splits never cut a group in two: frames
# of one burst are near-copies, and a split by file would score the model on
# pictures it has all but seen.
HOLDOUT_FRACTION = 0.2  # of the groups, chosen by a hash of the group name: stable as a folder grows
HOLDOUT_SALT = "edge-signs-holdout-v1"  # fixed, so evaluate finds the split fine-tuning left out without the run's seed
OWN_MIN_PER_CLASS = 10  # fewest images of each class a fine-tuning set may hold (after the held-out split)
OWN_SPLITS = ("all", "heldout", "train")  # what `evaluate --split` scores of an own folder


def keras_cache_dir() -> Path:
    """Where keras.datasets keep their downloads ($KERAS_HOME or ~/.keras)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets" / "signs"


# -- training -----------------------------------------------------------------
SEED = 0
BATCH_SIZE = 32
# `train --precision`: auto picks what the training device computes natively (trainer/precision.py).
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
DEFAULT_PRECISION = "auto"
RUNS_DIR = Path("runs")  # train / finetune without --out: runs/<command>/<name><N>, under the current folder
RUN_NAME = "run"  # --name's default
PREDICT_BATCH = 128  # Keras inference batches (evaluation, final metrics)


SCHEDULES = ("constant", "cosine")
OPTIMIZERS = ("adam", "adamw")


@dataclass(frozen=True)
class Recipe:
    """Everything that defines how a model is trained, apart from data and seed."""

    epochs: int
    learning_rate: float
    schedule: str = "constant"  # one of SCHEDULES: "cosine" has a linear warm-up
    warmup_epochs: int = 0
    optimizer: str = "adam"  # one of OPTIMIZERS
    weight_decay: float = 0.0  # decoupled (AdamW)
    l2: float = 0.0  # kernel L2 penalty
    dropout: float = 0.0  # before the classifier
    label_smoothing: float = 0.0
    augment: bool = False
    # The augmentation's geometry (trainer/augment.py): degrees of tilt, shift as a share of the side, zoom in/out.
    rotation: float = 15.0
    upright: float = 0.0  # the share of images also turned from their own lean to upright (the hand mask's long axis)
    close_up: float = 0.0  # the share of images framed on the hand (the mask's top), so that it fills the frame
    hand_size: float = 0.0  # the share whose hand is rescaled to a size drawn alike for every sign (trainer/framing.py)
    shift: float = 0.06
    zoom_in: float = 0.08
    zoom_out: float = 0.12
    # Further augmentation, off at 0: the share of SIGNS images whose wall is replaced (segment.py), the largest
    # hue turn (a share of the colour wheel; saturation is scaled with it), the share turned grey, the share
    # with a small patch erased.
    background_swap: float = 0.0
    hue: float = 0.0
    grayscale: float = 0.0
    erase: float = 0.0
    vignette: float = 0.0  # the share of images with lens shading: darker corners, a brighter middle
    hand_tone: float = 0.0  # the share whose hand alone (the mask) is made lighter or darker and tinted, the wall kept
    hand_surface: float = 0.0  # the share of 0-3s (SIGNS shows them from the back) whose hand takes another hand's surface, outline kept
    bn_momentum: float = 0.99
    freeze_stages: int = 0  # leading stages kept as they are: 1 the stem, 2 stem + stage 2, ... 5 every conv layer
    signs_mix: float = 0.0  # with your own images: the fraction of each batch drawn from SIGNS, so its signs are not forgotten
    # After the last epoch, batch-norm statistics recomputed over a few epochs' batches with the weights fixed
    # (trainer/batchnorm.py), in place of the running ones, which mostly hold the last few dozen batches.
    recalibrate_bn: bool = False
    # The last share of the epochs whose weights are averaged into the saved model (trainer/average.py; 0: the last
    # step's weights). Batch-norm statistics are then recomputed for the average, as recalibrate_bn does.
    average_last: float = 0.0
    # The first share of the epochs over which the augmentation grows from none to full (trainer/augment.py,
    # AugmentationRamp): every switch's share, the tilt, the colour ranges. 0: full from the first step.
    augment_ramp: float = 0.0
    # The last share of the epochs over which the augmentation falls from full to cooldown_strength (the same
    # scale as the ramp's), so that the weights settle on lighter batches. 0: full to the end; 0 in every recipe
    # (on the default it cost strangers' hands and gained nothing on SIGNS: docs/training.md, "Fifteen minutes").
    augment_cooldown: float = 0.0
    cooldown_strength: float = 0.5

    @property
    def needs_masks(self) -> bool:
        """Whether the augmentation needs each SIGNS image's hand mask (segment.py)."""
        return self.augment and (self.background_swap > 0 or self.upright > 0 or self.close_up > 0 or self.hand_size > 0
                                 or self.hand_tone > 0 or self.hand_surface > 0)


DEFAULT_RECIPE = "default"
# Robust to a real camera: camera-like augmentation, cosine schedule, regularized.
_CAMERA_ROBUST = Recipe(
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
)
# Other people's hands: other walls, skin and light; the hand upright, larger and off-centre.
_VARIED_AUGMENTATION = {"rotation": 30.0, "shift": 0.1, "zoom_in": 0.25, "zoom_out": 0.15, "background_swap": 0.5, "hue": 0.04,
                        "grayscale": 0.1, "erase": 0.25}
RECIPES: dict[str, Recipe] = {
    # The deeplearning.ai project as published: 20 epochs of plain Adam, no augmentation.
    "seed": Recipe(epochs=20, learning_rate=1e-3),
    # The wider augmentation with less regularization (augmentation already regularizes: with dropout 0.3 and
    # weight decay 0.05 as well, SIGNS itself was underfitted); half of the hands also turned upright; the saved
    # weights averaged over the last third of the epochs, and batch-norm statistics recomputed for them; the
    # augmentation grown from none over the first quarter of the epochs, so the signs are learnt before the walls;
    # 0-3s given other hands' surfaces (a palm among them), as strangers show them. Chosen on sld-dev, SIGNS
    # validation and robustness over three seeds (docs/training.md, "The hand's surface").
    "default": dataclasses.replace(_CAMERA_ROBUST, **_VARIED_AUGMENTATION, dropout=0.0, weight_decay=0.01, recalibrate_bn=True,
                                   upright=0.5, average_last=0.33, augment_ramp=0.25, hand_surface=0.3),
    # The earlier default: camera-like augmentation only. Best on SIGNS, worst on other people's hands.
    "camera": _CAMERA_ROBUST,
    # "varied": the default's augmentation with the camera recipe's regularization (docs/training.md's ablation).
    "varied": dataclasses.replace(_CAMERA_ROBUST, **_VARIED_AUGMENTATION),
    # `edge-signs finetune`: the camera recipe, from a trained model, on a few hundred images of your
    # own (collect's output), in minutes on a CPU. A lower learning rate and a short schedule keep what
    # SIGNS taught; 40 % of each batch from SIGNS keeps its six signs from being forgotten; the stem and
    # stage 2 stay as they are (edges and textures carry over, and backward passes stop there).
    # Each value is the one that scored best on hands-webcam's held-out photos (docs/results.md: "Your hands").
    "finetune": dataclasses.replace(_CAMERA_ROBUST, epochs=10, learning_rate=3e-4, warmup_epochs=1, freeze_stages=2, signs_mix=0.4),
}
FINETUNE_RECIPE = "finetune"
# train --select-on: the epoch kept is the best on the folder among those at least this good on SIGNS
# validation (108 images: three mistakes), so a choice made for other hands keeps SIGNS' own.
SELECT_MIN_VAL_ACCURACY = 0.97
# A training run's checkpoint (280 MB with the optimizer's state, and the averaged weights' 94 MB: 2-5 s to write,
# as the disk allows) after the first and the last epoch and otherwise at most this often: written after every 14 s
# epoch it was a fifth of the run, once a minute 27-69 s of the default's 15 minutes.
CHECKPOINT_SECONDS = 120.0
# recalibrate_bn: epochs' worth of training batches the statistics are averaged over (one gave the same models'
# scores as three, in a third of the time: docs/training.md, "Fifteen minutes").
BN_RECALIBRATION_EPOCHS = 1
STAGE_COUNT = 5  # the stem and four residual stages: what --freeze-stages counts


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
KERAS_SUFFIXES = (".keras",)  # the Keras model files `evaluate` runs (through the trainer, with TensorFlow)
INT8_TOLERANCE = 0.01  # int8 accuracy lost against float beyond which evaluate says which layers lose it
# quantize: a written file that gives the float model's class on fewer calibration images than this is reported
# as broken (healthy int8 files of the camera, varied and default recipes agree on 0.960-1.000 of them, docs/cli.md).
QUANTIZE_MIN_AGREEMENT = 0.9
DEBUG_IMAGES = 64  # images the quantization debugger runs

# -- edge runtime ---------------------------------------------------------------
# The oldest interpreter a Pi may have: tflite-runtime 2.14 (Python 3.11 aarch64 wheels,
# Raspberry Pi OS Bookworm). quantize says when a file needs something newer.
OLDEST_RUNTIME = "2.14.0"
MAX_THREADS = 4  # a Pi 4 or 5 has four cores; XNNPACK gains little beyond four threads on a 64x64 model


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_quota_cores(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """Whole cores a CPU quota allows (a container's `--cpus`: cgroup v2 cpu.max, v1 cfs quota), None without one.

    A quota does not shrink the affinity mask, so without this a container limited to 2 of a
    host's 64 cores would start 64 threads that the quota then throttles.
    """
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            fields = (cgroup_root / quota_file).read_text().split()
            if period_file:
                fields.append((cgroup_root / period_file).read_text().strip())
            quota, period = fields[0], fields[1]
            if quota in ("max", "-1"):
                return None
            return max(1, -(-int(quota) // int(period)))  # 1.5 cores' worth of time keeps 2 cores busy part-time
        except (OSError, ValueError, IndexError):
            continue
    return None


def available_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPU cores this process may use: its affinity mask (taskset, a container's cpuset), capped by a CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    quota = cpu_quota_cores(cgroup_root)
    return min(cores, quota) if quota else cores


def default_threads() -> int:
    """Interpreter threads wherever a model runs: one per available core, at most MAX_THREADS."""
    return max(1, min(MAX_THREADS, available_cores()))


THREADS = default_threads()
LATENCY_RUNS = 50
LATENCY_WARMUP = 5

# -- teach: a personal head fitted on the Pi (edge/head.py, edge/teach.py) ----------------------
TEACH_MIN_PER_SIGN = 5  # fewest frames of every sign a head is fitted on
TEACH_L2 = 0.001  # L2 penalty on the head's weights, in units of the features' mean square (docs/teach.md: best of 1e-4..1e-2 on three backbones)
TEACH_PRIOR = True  # the penalty pulls toward the original head's weights (not toward zero)
TEACH_SIGNS_PER_SIGN = 20  # SIGNS training images of each sign mixed in (when SIGNS is at hand); 0: none
TEACH_SIGNS_SHARE = 0.3  # of the loss, the mixed-in SIGNS images' share
TEACH_ITERATIONS = 500  # the solver's steps at most
TEACH_TOLERANCE = 1e-3  # it stops when the gradient's norm is this share of where it started
TEACH_SEED = 0  # which SIGNS images are mixed in, which frames --per-sign keeps

# -- live -----------------------------------------------------------------------
SMOOTHING_FRAMES = 5
CONFIDENCE_THRESHOLD = 0.6
# Ask the camera for little more than the model needs: the model sees 64x64, and every
# extra pixel is capture, copy and decode work on the Pi's four small cores.
CAMERA_WIDTH = 320
CAMERA_HEIGHT = 240
PICAMERA_MODEL_SIZE = (320, 240)  # the Pi camera's low-resolution stream for the model
FRAME_WAIT_S = 1.0  # the capture thread's "no frame now" after this long without a new frame
READ_AHEAD_FRAMES = 4  # a video file's frames decoded ahead of the loop: enough to ride out a slow decode
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

# -- events: a held sign for other programs (edge/events.py, edge/event_outputs.py, edge/mqtt.py) ----
# A hand moving from one sign to the next shows in-between finger counts for a few tenths of a
# second, which the smoothing (SMOOTHING_FRAMES) shortens but does not remove; half a second of the
# same smoothed sign is longer than that and still answers within a blink of a deliberate sign.
EVENT_HOLD_S = 0.5
EVENTS_RECENT = 5  # the last events on --serve's page and in /status
EXEC_TIMEOUT_S = 10.0  # an --exec command still running after this is killed (its process group) and named
EXEC_QUEUE = 16  # held signs waiting for --exec's worker; a full queue drops the oldest and counts it
MQTT_QUEUE = 1000  # events waiting for the broker (down or reconnecting); full: the oldest is dropped and counted
MQTT_KEEPALIVE_S = 30  # the broker publishes the last will ("offline") this long (x1.5) after the Pi goes silent
MQTT_RECONNECT_MIN_S = 1  # reconnection back-off: from this ...
MQTT_RECONNECT_MAX_S = 30  # ... doubling up to this
MQTT_CLOSE_WAIT_S = 2.0  # at the end of a run: how long queued events and "offline" may take to reach the broker
MQTT_DISCOVERY_PREFIX = "homeassistant"  # Home Assistant's MQTT discovery prefix (--ha-discovery)
MQTT_PASSWORD_ENV = "EDGE_SIGNS_MQTT_PASSWORD"  # the broker password, kept out of `ps` (instead of user:pass@ in --mqtt)

# -- live --serve: the browser page, MJPEG stream and status JSON (edge/serve.py) ---------
SERVE_HOST = "127.0.0.1"  # --serve PORT alone binds here: only this machine (ssh -L from others)
SERVE_MAX_FPS = 15.0  # JPEGs encoded per second at most, one shared by all viewers
SERVE_MAX_SIDE = 640  # longest side of a served JPEG; larger frames are scaled down first
SERVE_JPEG_QUALITY = 80
SERVE_MAX_CLIENTS = 4  # /stream.mjpg viewers at once; more get 503
TEACH_CLICK_WAIT_S = 10.0  # teach --serve: a button waits this long for the loop's next frame (a stalled camera), then is a 503
TEACH_ANSWER_WAIT_S = 2.0  # teach --serve: how long the server stays up after the run for "done"'s answer to leave
SERVE_MAX_CONNECTIONS = 32  # all open connections (viewers, status polls, routes); beyond: refused at once
SERVE_SOCKET_TIMEOUT_S = 10.0  # a client that sends or reads nothing this long is dropped and its slot freed
SERVE_HEADER_TIMEOUT_S = 5.0  # a whole request (head and body) must arrive within this, however it trickles in
SERVE_SEND_BUFFER = 256 * 1024  # kernel send buffer per viewer: what a stalled viewer can pin, at most
SERVE_STATUS_POLL_MS = 250  # how often the page asks /status
SERVE_MAX_BODY = 64 * 1024  # largest POST body a registered route accepts
SERVE_TOKEN_BYTES = 16  # secrets.token_urlsafe(16): 22 characters
SERVE_MIN_TOKEN_CHARS = 12  # a --token shorter than this is refused
SERVE_TOKEN_ENV = "EDGE_SIGNS_TOKEN"  # --token from the environment: not visible in `ps`

# -- collect: ROI crops saved as a labelled image folder (edge/collect.py) -----------------------
# Saved crops are larger than the model's 64x64 so the data outlives the model: 160 px is 2.5x the
# current input (room for a 96-160 px model later), ~8 KB as a quality-95 JPEG, and a whole
# default ROI of a 640x480 frame (480 px) is shrunk to it, never enlarged.
COLLECT_SIZE = 160
COLLECT_MAX_SIZE = 1024  # --size at most: a queue of COLLECT_QUEUE crops stays under ~400 MB (20000 px would be 1.2 GB each)
COLLECT_CAMERA_WIDTH = 640  # collect runs no model: a larger frame costs little and gives sharper crops
COLLECT_CAMERA_HEIGHT = 480
COLLECT_INTERVAL_S = 0.2  # a burst or --headless run saves one crop per this many seconds (source time)
COLLECT_COUNT = 50  # --headless: crops saved before it stops
COLLECT_COUNTDOWN_S = 3.0  # --headless: seconds counted down before the first crop
COLLECT_JPEG_QUALITY = 95
COLLECT_CSV = "collect_log.csv"  # OUT/collect_log.csv: one row per saved crop, appended
COLLECT_MIN_FREE_MB = 50  # free disk space OUT needs before a camera opens
COLLECT_STOP_FREE_MB = 10  # saving stops (named warning, exit 1) when free space falls below this
COLLECT_QUEUE = 128  # crops waiting for the writer thread (~10 MB at 160 px); full: a camera's save is dropped and counted, a file waits
COLLECT_WINDOW_NAME = "edge-signs collect"
