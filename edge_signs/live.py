"""The camera loop: frames in, smoothed hand-sign predictions out.

numpy, OpenCV and a LiteRT interpreter only -- never TensorFlow -- so it runs on
a Raspberry Pi. Every frame, whatever its source (USB webcam, Pi Camera Module,
video file or stream, or the SIGNS test set replayed as frames), goes through
``Classifier.predict_frame``: the preprocessing the model was evaluated with, so
a test-set replay here scores exactly what ``evaluate`` scores.

    source.read() -> predict_frame (raw) -> Smoother (mean of last N) -> threshold
                  -> overlay (only when shown or recorded) -> window / video / JSON lines
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Protocol, Sequence

import cv2
import numpy as np

from edge_signs import config
from edge_signs.artifacts import atomic_path, write_json
from edge_signs.errors import EdgeSignsError
from edge_signs.preprocess import Roi, to_bgr
from edge_signs.runtime import Classifier, check_tflite_file, read_sidecar

PICAMERA_HINT = (
    "--picamera needs picamera2, which this Python cannot import: on Raspberry Pi OS install it with "
    "'sudo apt install python3-picamera2' and create the venv with 'python3 -m venv --system-site-packages' so the venv sees it"
)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


# -- options and results ------------------------------------------------------------------------


@dataclass
class LiveOptions:
    """Everything `edge-signs live` can be told. Name at most one source; none means ``--camera 0``."""

    camera: Optional[int] = None  # OpenCV camera index (USB webcam)
    picamera: bool = False  # Pi Camera Module through picamera2
    video: Optional[str] = None  # file, URL or GStreamer pipeline string
    testset: bool = False  # SIGNS test images as frames, with their labels
    width: int = config.CAMERA_WIDTH
    height: int = config.CAMERA_HEIGHT
    fps: float = config.CAMERA_FPS
    roi: Roi = field(default_factory=Roi)
    smoothing: int = config.SMOOTHING_FRAMES
    threshold: float = config.CONFIDENCE_THRESHOLD
    headless: bool = False
    record: Optional[Path] = None  # annotated video, .avi (MJPG) or .mp4 (mp4v)
    max_frames: Optional[int] = None
    json_path: Optional[Path] = None  # one JSON object per frame
    labels_csv: Optional[Path] = None  # --video ground truth: start_frame,end_frame,label
    threads: int = config.THREADS
    data: Optional[Path] = None  # SIGNS folder for --testset (default: as resolve_data)
    status_interval: float = config.STATUS_INTERVAL_S  # --headless status line period, seconds (0: none)
    loop: bool = False  # start --testset / a --video file again at its end (soak tests)
    report: Optional[Path] = None  # folder for live_summary.json and confusion_matrix.png
    snapshot_dir: Path = Path(".")  # where the window's 's' key saves PNGs

    def source_kind(self) -> str:
        """Which source is named; a one-line error when the options contradict each other."""
        named = [name for name, on in (("camera", self.camera is not None), ("picamera", self.picamera),
                                       ("video", self.video is not None), ("testset", self.testset)) if on]
        if len(named) > 1:
            raise EdgeSignsError(f"name one source, not {' and '.join('--' + n for n in named)}")
        kind = named[0] if named else "camera"
        if self.labels_csv is not None and kind != "video":
            raise EdgeSignsError("--labels scores a --video; --testset brings its own labels and cameras have none")
        if self.loop and kind not in ("testset", "video"):
            raise EdgeSignsError("--loop replays --testset or a --video file; a camera does not end")
        for name, value, low in (("--smoothing", self.smoothing, 1), ("--threads", self.threads, 1), ("--width", self.width, 1),
                                 ("--height", self.height, 1), ("--max-frames", 1 if self.max_frames is None else self.max_frames, 1)):
            if value < low:
                raise EdgeSignsError(f"{name} must be at least {low}, got {value}")
        if not 0.0 <= self.threshold <= 1.0:
            raise EdgeSignsError(f"--threshold is a probability in [0, 1], got {self.threshold}")
        if not self.fps > 0:
            raise EdgeSignsError(f"--fps must be positive, got {self.fps}")
        if self.record is not None:
            record_fourcc(self.record)
        return kind


@dataclass
class FrameResult:
    """One frame's outcome. The loop reuses a single instance: copy what you keep from ``on_frame``."""

    frame: int = 0  # 0-based index of the frame in this run
    label: Optional[str] = None  # smoothed label; None ("no sign") below the confidence threshold
    index: Optional[int] = None  # its class index
    smoothed_confidence: float = 0.0
    raw_label: str = ""  # this frame alone
    raw_index: int = 0
    confidence: float = 0.0  # of raw_label
    inference_ms: float = 0.0  # invoke only
    truth: Optional[int] = None  # true class index when the source knows it

    def json_line(self, labels: Sequence[str], with_truth: bool) -> str:
        obj = {
            "frame": self.frame,
            "time": round(time.time(), 3),  # wall clock: lets tools measure start-up from outside
            "label": self.label,
            "smoothed_confidence": round(self.smoothed_confidence, 4),
            "raw_label": self.raw_label,
            "confidence": round(self.confidence, 4),
            "inference_ms": round(self.inference_ms, 3),
        }
        if with_truth:
            obj["truth"] = None if self.truth is None else labels[self.truth]
        return json.dumps(obj)


@dataclass
class LiveSummary:
    """How a run went. Accuracies count only frames whose truth is known (``scored``)."""

    frames: int
    reason: str  # why the loop ended
    source: str
    model: str  # Classifier.describe(): format, input, interpreter backend, threads
    labels: tuple[str, ...]
    seconds: float  # loop wall time
    fps: float
    median_inference_ms: float  # over the last config.STATS_WINDOW frames
    median_overhead_ms: float  # capture + preprocess + overlay + record + output, i.e. all but invoke
    startup_s: float  # run_live() called -> first prediction
    scored: int = 0
    accuracy: Optional[float] = None  # raw per-frame argmax
    smoothed_accuracy: Optional[float] = None  # a "no sign" frame counts as wrong
    no_sign: int = 0  # frames whose smoothed label was below the threshold
    confusion: Optional[np.ndarray] = None  # rows true, columns raw prediction

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k, v in d.items():  # strict JSON has no NaN
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None
        d["labels"] = list(self.labels)
        d["confusion"] = None if self.confusion is None else self.confusion.tolist()
        return d

    def text(self) -> str:
        lines = [
            f"{self.model}",
            f"{self.frames} frames from {self.source} in {self.seconds:.1f} s ({self.fps:.1f} fps); ended: {self.reason}",
            f"inference {self.median_inference_ms:.2f} ms median; per-frame overhead {self.median_overhead_ms:.2f} ms median "
            f"(capture, preprocess, overlay, record); first prediction {self.startup_s:.2f} s after start",
        ]
        if self.scored:
            correct = int(round(self.accuracy * self.scored))
            lines.append(f"accuracy {self.accuracy:.4f} ({correct}/{self.scored} frames), smoothed {self.smoothed_accuracy:.4f} "
                         f"(no sign on {self.no_sign} of {self.frames} frames)")
            from edge_signs.plots import confusion_matrix_text

            lines.append("confusion matrix, rows true, columns predicted (raw per-frame):")
            lines.append(confusion_matrix_text(self.confusion, self.labels).rstrip("\n"))
        return "\n".join(lines) + "\n"


def parse_roi(text: str) -> Roi:
    """'SIZE' or 'SIZE,CX,CY' (fractions) -> Roi, e.g. '0.6' or '0.6,0.5,0.4'."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 3):
        raise EdgeSignsError(f"--roi {text!r}: expected SIZE or SIZE,CX,CY as fractions, e.g. 0.6 or 0.6,0.5,0.4")
    size, cx, cy = (parts + [0.5, 0.5])[:3]
    if not 0 < size <= 1 or not 0 <= cx <= 1 or not 0 <= cy <= 1:
        raise EdgeSignsError(f"--roi {text!r}: SIZE must be in (0, 1] and CX, CY in [0, 1]")
    return Roi(size, cx, cy)


def record_fourcc(path: Path) -> str:
    """The codec for a --record file, chosen by its extension."""
    fourcc = config.RECORD_FOURCC.get(Path(path).suffix.lower())
    if fourcc is None:
        names = ", ".join(f"{ext} ({cc})" for ext, cc in config.RECORD_FOURCC.items())
        raise EdgeSignsError(f"--record {path}: use a file name ending in {names}")
    return fourcc


# -- ground truth for videos ------------------------------------------------------------------------


class LabelRanges:
    """Frame ranges with a known sign: ``lookup(frame)`` -> class index, or None (not scored)."""

    HEADER = ("start_frame", "end_frame", "label")

    def __init__(self, ranges: Sequence[tuple[int, int, int]]):
        ranges = sorted(ranges)
        self._starts = [r[0] for r in ranges]  # plain lists: bisect on them allocates nothing per frame
        self._ends = [r[1] for r in ranges]
        self._labels = [r[2] for r in ranges]

    def __len__(self) -> int:
        return len(self._starts)

    def lookup(self, frame: int) -> Optional[int]:
        k = bisect.bisect_right(self._starts, frame) - 1
        return self._labels[k] if k >= 0 and frame <= self._ends[k] else None


def read_label_ranges(path: str | os.PathLike, labels: Sequence[str]) -> LabelRanges:
    """Read a labels CSV: rows start_frame,end_frame,label (0-based, inclusive; header optional).

    ``label`` is a label name (e.g. "3") or class index. Any problem is a one-line
    error naming the file and row, because a silently skipped row would skew accuracy.
    """
    path = Path(path)
    if not path.is_file():
        raise EdgeSignsError(f"{path}: labels CSV not found (expected rows start_frame,end_frame,label)")
    ranges: list[tuple[int, int, int]] = []
    rows: dict[int, int] = {}  # start frame -> row number, to name both rows of an overlap
    with open(path, newline="") as f:
        for row_no, row in enumerate(csv.reader(f), start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if tuple(c.lower() for c in cells) == LabelRanges.HEADER:
                continue
            if len(cells) != 3:
                raise EdgeSignsError(f"{path}: row {row_no}: expected 3 columns start_frame,end_frame,label, got {len(cells)}")
            try:
                start, end = int(cells[0]), int(cells[1])
            except ValueError:
                raise EdgeSignsError(f"{path}: row {row_no}: start_frame and end_frame must be integers, got {cells[0]!r}, {cells[1]!r}") from None
            if start < 0 or end < start:
                raise EdgeSignsError(f"{path}: row {row_no}: need 0 <= start_frame <= end_frame, got {start}, {end}")
            if cells[2] in labels:
                label = labels.index(cells[2])
            elif cells[2].isdigit() and int(cells[2]) < len(labels):
                label = int(cells[2])
            else:
                raise EdgeSignsError(f"{path}: row {row_no}: unknown label {cells[2]!r} (labels are {', '.join(labels)})")
            ranges.append((start, end, label))
            rows[start] = row_no
    if not ranges:
        raise EdgeSignsError(f"{path}: no label rows (expected start_frame,end_frame,label)")
    ranges.sort()
    for (s0, e0, _), (s1, _, _) in zip(ranges, ranges[1:]):
        if s1 <= e0:
            raise EdgeSignsError(f"{path}: row {rows[s1]}: frames {s1}..{e0} overlap the range of row {rows[s0]}")
    return LabelRanges(ranges)


# -- frame sources ---------------------------------------------------------------------------------


class EndOfStream(Exception):
    """A source that has certainly ended (the test set ran out); distinct from a failed read."""


class FrameSource(Protocol):
    name: str  # for messages: "camera 0", "video clip.avi", ...
    live: bool  # a real-time device or stream: failed reads are retried after a short sleep
    fps: float  # frames per second, for recording
    has_truth: bool  # whether read() can return true labels
    end_reason: str  # said when reads keep failing after some frames came
    no_frames_message: str  # said when not even one frame came: a setup problem

    def read(self) -> tuple[Optional[np.ndarray], Optional[int]]:
        """(frame, true class or None); (None, None) for a failed read; EndOfStream when done."""
        ...

    def close(self) -> None: ...


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs WARN lines when a device cannot be opened; we say it better in one line."""
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def _camera_fix(index: int) -> str:
    return (f"check 'ls /dev/video*' and that your user is in the 'video' group (sudo usermod -aG video $USER, then log in again); "
            f"on Raspberry Pi OS Bookworm the Camera Module is not a V4L2 /dev/video{index} device for OpenCV: use --picamera")


class CameraSource:
    """A USB webcam (or any V4L2 device) through cv2.VideoCapture."""

    live = True
    has_truth = False

    def __init__(self, index: int, width: int, height: int, fps: float):
        self.name = f"camera {index}"
        # V4L2 directly on Linux: pip's OpenCV has nothing else, and apt's would try GStreamer first (slow, noisy).
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        with _quiet_opencv():
            cap = cv2.VideoCapture(index, api)
        if not cap.isOpened():
            cap.release()
            raise EdgeSignsError(f"camera {index} cannot be opened: {_camera_fix(index)}")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # classify the newest frame, not one queued seconds ago
        self._cap = cap
        self.fps = cap.get(cv2.CAP_PROP_FPS) or float(fps)
        self._buf: Optional[np.ndarray] = None  # read into the same array every frame
        self.end_reason = f"camera {index} stopped delivering frames ({config.READ_RETRIES} failed reads)"
        self.no_frames_message = f"camera {index} opened but delivered no frames: {_camera_fix(index)}"

    def read(self) -> tuple[Optional[np.ndarray], Optional[int]]:
        ok, frame = self._cap.read(self._buf)
        if not ok or frame is None:
            return None, None
        self._buf = frame
        return frame, None

    def close(self) -> None:
        self._cap.release()


class PiCameraSource:
    """The Raspberry Pi Camera Module through picamera2 (libcamera)."""

    live = True
    has_truth = False

    def __init__(self, width: int, height: int, fps: float, index: int = 0):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise EdgeSignsError(PICAMERA_HINT) from None
        self.name = f"Pi camera {index}"
        self.fps = float(fps)
        self._cam = None
        try:
            cam = Picamera2(index)
            self._cam = cam
            # libcamera's "RGB888" is B, G, R in memory: exactly OpenCV's BGR, no conversion needed.
            cfg = cam.create_video_configuration(main={"size": (width, height), "format": "RGB888"},
                                                 controls={"FrameRate": float(fps)})
            cam.configure(cfg)
            cam.start()
        except Exception as exc:  # noqa: BLE001 -- hardware start-up fails in many ways; all mean the same to a user
            self.close()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EdgeSignsError(f"Pi camera {index} could not be started ({first}): check the ribbon cable, "
                                 f"that 'rpicam-hello --list-cameras' lists it, and that no other program uses it") from None
        self.end_reason = f"Pi camera {index} stopped delivering frames ({config.READ_RETRIES} failed reads)"
        self.no_frames_message = f"Pi camera {index} started but delivered no frames: check 'rpicam-hello --list-cameras'"

    def read(self) -> tuple[Optional[np.ndarray], Optional[int]]:
        try:
            return self._cam.capture_array("main"), None
        except RuntimeError:
            return None, None

    def close(self) -> None:
        if self._cam is not None:
            with contextlib.suppress(Exception):
                self._cam.stop()
            with contextlib.suppress(Exception):
                self._cam.close()
            self._cam = None


def _has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


class VideoSource:
    """Anything cv2.VideoCapture opens: a file, an RTSP/HTTP URL, a GStreamer pipeline, a /dev/video path."""

    def __init__(self, spec: str, ranges: Optional[LabelRanges] = None, loop: bool = False):
        is_pipeline = "!" in spec  # GStreamer syntax: "libcamerasrc ! ... ! appsink"
        is_url = "://" in spec
        self.name = f"video {spec}"
        if is_pipeline and not _has_gstreamer():
            raise EdgeSignsError("--video: a GStreamer pipeline needs an OpenCV built with GStreamer (pip's wheels are not): "
                                 "on Raspberry Pi OS use apt's python3-opencv in a --system-site-packages venv, or use --picamera")
        if not is_pipeline and not is_url and not os.path.exists(spec):
            raise EdgeSignsError(f"{spec}: video file not found")
        with _quiet_opencv():
            cap = cv2.VideoCapture(spec, cv2.CAP_GSTREAMER if is_pipeline else cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            what = "stream" if is_url or is_pipeline else "file"
            raise EdgeSignsError(f"{spec}: OpenCV cannot open this video {what} (check the path/URL and that OpenCV's FFmpeg can decode it)")
        self._cap = cap
        self._file = not is_pipeline and not is_url and not spec.startswith("/dev/")
        self.live = not self._file  # streams and devices get a short sleep between failed reads
        self.fps = cap.get(cv2.CAP_PROP_FPS) or config.RECORD_FPS
        self.fps = self.fps if 0 < self.fps < 1000 else config.RECORD_FPS  # some streams report nonsense
        self._ranges = ranges
        self.has_truth = ranges is not None
        self._loop = loop and self._file
        self._index = 0  # frames decoded so far: the labels CSV counts the same way
        self._buf: Optional[np.ndarray] = None
        self.end_reason = "end of video" if self._file else f"{spec} stopped delivering frames ({config.READ_RETRIES} failed reads)"
        self.no_frames_message = f"{spec}: opened but no frame could be decoded"

    def read(self) -> tuple[Optional[np.ndarray], Optional[int]]:
        ok, frame = self._cap.read(self._buf)
        if (not ok or frame is None) and self._loop and self._index > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._index = 0
            ok, frame = self._cap.read(self._buf)
        if not ok or frame is None:
            return None, None
        self._buf = frame
        truth = self._ranges.lookup(self._index) if self._ranges is not None else None
        self._index += 1
        return frame, truth

    def close(self) -> None:
        self._cap.release()


class TestsetSource:
    """SIGNS test images as BGR camera frames, with their true labels."""

    __test__ = False  # not a pytest class, whatever its name says
    live = False
    has_truth = True
    # Consecutive test images are different photos: smoothing across them would mix
    # unrelated signs, so each image is smoothed on its own.
    independent_frames = True

    def __init__(self, images_rgb: np.ndarray, labels: np.ndarray, loop: bool = False, fps: float = config.RECORD_FPS):
        # Converted once, up front: frames are then views, and predict_frame's BGR->RGB restores the exact pixels.
        self._bgr = np.ascontiguousarray(images_rgb[..., ::-1])
        self._y = [int(v) for v in labels]
        self._i = 0
        self._loop = loop
        self.name = f"SIGNS test set ({len(self._y)} images{', looped' if loop else ''})"
        self.fps = fps
        self.end_reason = "end of test set"
        self.no_frames_message = "the SIGNS test set is empty"

    def read(self) -> tuple[Optional[np.ndarray], Optional[int]]:
        if self._i >= len(self._y):
            if not self._loop or not self._y:
                raise EndOfStream
            self._i = 0
        i = self._i
        self._i += 1
        return self._bgr[i], self._y[i]

    def close(self) -> None:
        pass


def open_source(options: LiveOptions, labels: Sequence[str], *, log: Callable[[str], None] = _stderr) -> FrameSource:
    """The source the options name, opened: a one-line error when it cannot be."""
    kind = options.source_kind()
    if kind == "testset":
        from edge_signs.data import resolve_data  # h5py: only needed here

        signs = resolve_data(options.data, log=log)
        return TestsetSource(signs.test.x, signs.test.y, loop=options.loop)
    if kind == "video":
        ranges = read_label_ranges(options.labels_csv, labels) if options.labels_csv is not None else None
        return VideoSource(options.video, ranges, loop=options.loop)
    if kind == "picamera":
        return PiCameraSource(options.width, options.height, options.fps)
    index = config.CAMERA_INDEX if options.camera is None else options.camera
    return CameraSource(index, options.width, options.height, options.fps)


# -- per-frame helpers -------------------------------------------------------------------------------


class Smoother:
    """Mean of the last N probability vectors, in preallocated arrays."""

    def __init__(self, frames: int, num_classes: int):
        self._buf = np.zeros((max(1, frames), num_classes), np.float32)
        self._mean = np.zeros(num_classes, np.float32)
        self._count = 0
        self._next = 0

    def reset(self) -> None:
        """Forget earlier frames: the next frame shows another scene."""
        self._count = 0
        self._next = 0

    def update(self, probs: np.ndarray) -> np.ndarray:
        """Add one frame's probabilities; the current mean (a view: valid until the next update)."""
        self._buf[self._next] = probs
        self._next = (self._next + 1) % len(self._buf)
        self._count = min(self._count + 1, len(self._buf))
        # Summing N rows afresh (not a running sum) so float error never accumulates over a day of frames.
        np.sum(self._buf[: self._count], axis=0, out=self._mean)
        self._mean /= self._count
        return self._mean


class RollingStats:
    """The last ``size`` values of a per-frame timing, for medians with bounded memory."""

    def __init__(self, size: int = config.STATS_WINDOW):
        self._buf = np.zeros(size, np.float64)
        self._n = 0

    def add(self, value: float) -> None:
        self._buf[self._n % len(self._buf)] = value
        self._n += 1

    def median(self) -> float:
        n = min(self._n, len(self._buf))
        return float(np.median(self._buf[:n])) if n else float("nan")


# -- overlay, window, recording ------------------------------------------------------------------------

FONT = cv2.FONT_HERSHEY_SIMPLEX
AA = cv2.LINE_AA
GREEN = (80, 220, 80)
RED = (60, 60, 235)
AMBER = (0, 190, 255)
WHITE = (255, 255, 255)
PANEL = (30, 30, 30)


class Overlay:
    """Draws the ROI box, the sign, FPS and inference time onto a canvas it owns (the frame is untouched)."""

    def __init__(self, roi: Roi, labels: Sequence[str]):
        self._roi = roi
        self._labels = labels
        self._canvas: Optional[np.ndarray] = None

    def render(self, frame: np.ndarray, r: FrameResult, fps: float) -> np.ndarray:
        bgr = to_bgr(frame)
        h, w = bgr.shape[:2]
        # Tiny frames (the 64x64 test set) are blown up by a whole factor so the text fits and pixels stay crisp.
        s = max(1, math.ceil(config.DISPLAY_MIN_SIDE / min(h, w)))
        shape = (h * s, w * s, 3)
        if self._canvas is None or self._canvas.shape != shape:
            self._canvas = np.empty(shape, np.uint8)  # only when the frame size changes
        if s == 1:
            np.copyto(self._canvas, bgr)
        else:
            cv2.resize(bgr, (w * s, h * s), dst=self._canvas, interpolation=cv2.INTER_NEAREST)
        img = self._canvas
        H, W = shape[:2]
        x0, y0, x1, y1 = self._roi.box(h, w)
        thick = max(1, round(W / 320))
        cv2.rectangle(img, (x0 * s, y0 * s), (x1 * s - 1, y1 * s - 1), AMBER, thick, AA)

        fs = max(0.45, W / 900)  # small text; the sign is drawn at twice this
        big = f"sign {r.label}  {r.smoothed_confidence:.0%}" if r.label is not None else "no sign"
        small = f"raw {r.raw_label} {r.confidence:.0%}"
        if r.truth is not None:
            small += f"   truth {self._labels[r.truth]}"
        stats = f"{fps:.1f} fps   {r.inference_ms:.1f} ms inference"
        (bw, bh), _ = cv2.getTextSize(big, FONT, 2 * fs, 2 * thick)
        (sw, sh), _ = cv2.getTextSize(small, FONT, fs, thick)
        pad = max(4, round(8 * fs))
        # Solid panels behind text: legible on any background, cheaper than blending.
        cv2.rectangle(img, (0, 0), (min(W, max(bw, sw) + 2 * pad), bh + sh + 3 * pad), PANEL, -1)
        cv2.putText(img, big, (pad, pad + bh), FONT, 2 * fs, GREEN if r.label is not None else AMBER, 2 * thick, AA)
        ink = WHITE if r.truth is None else (GREEN if r.raw_index == r.truth else RED)
        cv2.putText(img, small, (pad, 2 * pad + bh + sh), FONT, fs, ink, thick, AA)
        (tw, th), base = cv2.getTextSize(stats, FONT, fs, thick)
        cv2.rectangle(img, (0, H - th - base - 2 * pad), (min(W, tw + 2 * pad), H), PANEL, -1)
        cv2.putText(img, stats, (pad, H - base - pad), FONT, fs, WHITE, thick, AA)
        return img


def _check_gui() -> None:
    """A window needs an OpenCV with a GUI and a display; say how to get them, or to use --headless."""
    info = cv2.getBuildInformation()
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if gui.upper() == "NONE":
        raise EdgeSignsError("this OpenCV has no GUI (opencv-python-headless): run with --headless (and --record FILE to keep the "
                             "annotated video), or install opencv-python instead / apt's python3-opencv to get a window")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise EdgeSignsError("no display to show a window on (DISPLAY is not set, e.g. over ssh): run with --headless, "
                             "or from the Pi's desktop, or with 'ssh -X'")


class Window:
    """The preview window: q or Esc quits, s saves a snapshot PNG."""

    def __init__(self, snapshot_dir: Path, log: Callable[[str], None]):
        _check_gui()
        try:
            cv2.namedWindow(config.WINDOW_NAME, cv2.WINDOW_AUTOSIZE)
        except cv2.error as exc:
            raise EdgeSignsError(f"cannot open a window ({str(exc).strip().splitlines()[-1]}): run with --headless") from None
        self._snapshot_dir = Path(snapshot_dir)
        self._log = log
        self._visible_known: Optional[bool] = None  # does this GUI backend report WND_PROP_VISIBLE?

    def show(self, img: np.ndarray, frame: int) -> bool:
        """Show ``img``; False when the user asked to quit."""
        cv2.imshow(config.WINDOW_NAME, img)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        if key == ord("s"):
            name = f"snapshot_{time.strftime('%Y%m%d-%H%M%S')}_{frame:06d}.png"
            try:
                self._log(f"saved {save_png(img, self._snapshot_dir / name)}")
            except (EdgeSignsError, OSError) as exc:  # a lost snapshot must not end the run or its recording
                self._log(f"warning: snapshot not saved ({exc})")
        # The window's close button: without this check the loop would run on invisibly. Some GUI
        # backends always answer -1, so a window only counts as closed if it once reported itself visible.
        try:
            visible = cv2.getWindowProperty(config.WINDOW_NAME, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:  # some backends raise once the window is gone
            return False
        if self._visible_known is None:
            self._visible_known = visible
        return visible or not self._visible_known

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(config.WINDOW_NAME)
            cv2.waitKey(1)  # let the GUI thread actually remove it


def save_png(img: np.ndarray, path: Path) -> Path:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise EdgeSignsError(f"{path}: could not write the PNG")
    return path


class Recorder:
    """--record: the annotated frames as a video, moved into place only once finalized (playable)."""

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        self._fourcc = record_fourcc(self.path)
        self._fps = fps
        self._writer: Optional[cv2.VideoWriter] = None
        self._size: Optional[tuple[int, int]] = None
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.path.suffix, dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)

    def write(self, img: np.ndarray) -> None:
        if self._writer is None:  # the frame size is only known now
            self._size = (img.shape[1], img.shape[0])
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self._fourcc), self._fps, self._size)
            if not self._writer.isOpened():
                raise EdgeSignsError(f"--record {self.path}: OpenCV cannot write {self._fourcc} video here")
        if (img.shape[1], img.shape[0]) != self._size:  # a source that changed resolution mid-stream
            img = cv2.resize(img, self._size)
        self._writer.write(img)
        self.frames += 1

    def close(self, keep: bool) -> None:
        if self._writer is not None:
            self._writer.release()  # writes the index: without it the file does not play
        if keep and self.frames:
            os.chmod(self._tmp, 0o644)  # the temporary file was private; a recording is for sharing
            os.replace(self._tmp, self.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()


class _Terminated(Exception):
    """SIGTERM (systemd stop, docker stop): ends the loop like Ctrl-C, so the recording is finalized."""


@contextlib.contextmanager
def _sigterm_ends_loop() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def handler(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        # None: a handler installed outside Python, which cannot be put back; the default then.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


# -- the loop ------------------------------------------------------------------------------------------


def run_live(
    model_path: str | os.PathLike,
    options: Optional[LiveOptions] = None,
    *,
    log: Callable[[str], None] = _stderr,
    on_frame: Optional[Callable[[FrameResult], None]] = None,
) -> LiveSummary:
    """Classify frames from the chosen source until it ends, --max-frames, q/Esc, Ctrl-C or SIGTERM.

    ``on_frame`` is called after every frame with the (reused) FrameResult: a hook
    for GPIO, MQTT or measurements. User mistakes raise EdgeSignsError before any
    frame; a source that stops later ends the loop with a summary instead.
    """
    t_start = time.perf_counter()
    options = options or LiveOptions()
    options.source_kind()  # contradictions first: before opening a camera or loading a model
    check_tflite_file(model_path)
    if not options.headless:
        _check_gui()
    labels = tuple(read_sidecar(model_path).get("labels", config.LABELS))  # what Classifier will use; needed for --labels
    source = open_source(options, labels, log=log)
    with contextlib.ExitStack() as stack:
        stack.callback(source.close)
        clf = Classifier(model_path, threads=options.threads)
        labels = clf.labels
        log(f"model: {clf.describe()}")
        log(f"source: {source.name}")
        window = Window(options.snapshot_dir, log) if not options.headless else None
        if window is not None:
            stack.callback(window.close)
        json_file = None
        if options.json_path is not None:
            # Streamed, not atomic: a line per frame that another program can tail while the camera runs.
            Path(options.json_path).parent.mkdir(parents=True, exist_ok=True)
            json_file = stack.enter_context(open(options.json_path, "w", buffering=1))
        recorder = Recorder(options.record, source.fps) if options.record is not None else None
        overlay = Overlay(options.roi, labels) if (window is not None or recorder is not None) else None
        kept = False
        try:
            with _sigterm_ends_loop():
                loop = _Loop(clf, source, options, overlay, window, recorder, json_file, on_frame, log)
                summary = loop.run(t_start)
            kept = True
        finally:
            if recorder is not None:
                recorder.close(keep=kept)
    if recorder is not None and recorder.frames:
        log(f"wrote {options.record} ({recorder.frames} frames)")
    if options.report is not None:
        _write_report(summary, Path(options.report), log)
    return summary


class _Loop:
    """The per-frame work, with its state in attributes rather than in a long function."""

    def __init__(self, clf: Classifier, source: FrameSource, options: LiveOptions, overlay: Optional[Overlay],
                 window: Optional[Window], recorder: Optional[Recorder], json_file, on_frame, log):
        self.clf, self.source, self.options = clf, source, options
        self.overlay, self.window, self.recorder, self.json_file = overlay, window, recorder, json_file
        self.on_frame, self.log = on_frame, log
        self.independent_frames = getattr(source, "independent_frames", False)
        n = len(clf.labels)
        self.smoother = Smoother(options.smoothing, n)
        self.inference = RollingStats()
        self.overhead = RollingStats()
        self.confusion = np.zeros((n, n), np.int64)
        self.result = FrameResult()
        self.frames = self.scored = self.correct = self.smoothed_correct = self.no_sign = 0
        self.fps = 0.0

    def run(self, t_start: float) -> LiveSummary:
        opts, source = self.options, self.source
        failures = 0
        startup = float("nan")
        t_loop = time.perf_counter()
        t_status = t_loop
        period_ms = 0.0
        reason = ""
        try:
            while True:
                if opts.max_frames is not None and self.frames >= opts.max_frames:
                    reason = f"--max-frames {opts.max_frames} reached"
                    break
                t0 = time.perf_counter()
                try:
                    frame, truth = source.read()
                except EndOfStream:
                    reason = source.end_reason
                    break
                if frame is None:
                    failures += 1
                    if failures > config.READ_RETRIES:
                        if self.frames == 0:
                            raise EdgeSignsError(source.no_frames_message)
                        reason = source.end_reason
                        break
                    if source.live:
                        time.sleep(config.READ_RETRY_SLEEP_S)
                    continue
                failures = 0
                inference_ms = self._predict(frame, truth)
                if self.frames == 1:
                    startup = time.perf_counter() - t_start
                if not self._output(frame):
                    reason = "quit from the window"
                    break
                t1 = time.perf_counter()
                dt_ms = (t1 - t0) * 1e3
                self.overhead.add(dt_ms - inference_ms)
                # Smoothed frame period for the overlay's FPS: steady numbers, not per-frame jitter.
                period_ms = dt_ms if period_ms == 0 else 0.9 * period_ms + 0.1 * dt_ms
                self.fps = 1e3 / period_ms if period_ms > 0 else 0.0
                if opts.headless and opts.status_interval > 0 and t1 - t_status >= opts.status_interval:
                    t_status = t1
                    self.log(self._status())
        except (KeyboardInterrupt, _Terminated) as exc:
            reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "terminated (SIGTERM)"
        seconds = time.perf_counter() - t_loop
        return self._summary(reason, seconds, startup)

    def _predict(self, frame: np.ndarray, truth: Optional[int]) -> float:
        pred = self.clf.predict_frame(frame, self.options.roi)
        if self.independent_frames:
            self.smoother.reset()
        mean = self.smoother.update(pred.probs)
        k = int(mean.argmax())
        r = self.result
        r.frame = self.frames
        r.raw_index, r.raw_label, r.confidence, r.inference_ms = pred.index, pred.label, pred.confidence, pred.inference_ms
        r.smoothed_confidence = float(mean[k])
        confident = r.smoothed_confidence >= self.options.threshold
        r.index = k if confident else None
        r.label = self.clf.labels[k] if confident else None
        r.truth = truth
        self.no_sign += not confident
        if truth is not None:
            self.scored += 1
            self.correct += pred.index == truth
            self.smoothed_correct += r.index == truth
            self.confusion[truth, pred.index] += 1
        self.frames += 1
        self.inference.add(pred.inference_ms)
        return pred.inference_ms

    def _output(self, frame: np.ndarray) -> bool:
        """Overlay, window, recording, JSON line, callback. False when the user quit."""
        r = self.result
        keep_going = True
        if self.overlay is not None:  # drawn only when someone will see it
            img = self.overlay.render(frame, r, self.fps)
            if self.recorder is not None:
                self.recorder.write(img)
            if self.window is not None:
                keep_going = self.window.show(img, r.frame)
        if self.json_file is not None:
            self.json_file.write(r.json_line(self.clf.labels, self.source.has_truth) + "\n")
        if self.on_frame is not None:
            self.on_frame(r)
        return keep_going

    def _status(self) -> str:
        r = self.result
        text = (f"frame {r.frame}: {r.label if r.label is not None else 'no sign'} ({r.smoothed_confidence:.2f}), "
                f"raw {r.raw_label} ({r.confidence:.2f}) | {self.fps:.1f} fps, inference {self.inference.median():.1f} ms, "
                f"overhead {self.overhead.median():.1f} ms")
        if self.scored:
            text += f" | accuracy {self.correct / self.scored:.3f} on {self.scored}"
        return text

    def _summary(self, reason: str, seconds: float, startup: float) -> LiveSummary:
        scored = self.scored
        return LiveSummary(
            frames=self.frames,
            reason=reason,
            source=self.source.name,
            model=self.clf.describe(),
            labels=tuple(self.clf.labels),
            seconds=seconds,
            fps=self.frames / seconds if seconds > 0 else 0.0,
            median_inference_ms=self.inference.median(),
            median_overhead_ms=self.overhead.median(),
            startup_s=startup,
            scored=scored,
            accuracy=self.correct / scored if scored else None,
            smoothed_accuracy=self.smoothed_correct / scored if scored else None,
            no_sign=self.no_sign,
            confusion=self.confusion if scored else None,
        )


def _write_report(summary: LiveSummary, folder: Path, log: Callable[[str], None]) -> None:
    """live_summary.json, and confusion_matrix.png when any frame was scored."""
    write_json(folder / "live_summary.json", summary.to_dict())
    written = [folder / "live_summary.json"]
    if summary.confusion is not None:
        from edge_signs.plots import confusion_matrix_png

        title = f"live: accuracy {summary.accuracy:.3f} on {summary.scored} frames"
        written.append(confusion_matrix_png(summary.confusion, summary.labels, folder / "confusion_matrix.png", title))
    log("wrote " + ", ".join(str(p) for p in written))
