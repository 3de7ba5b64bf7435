"""`edge-signs collect`: save ROI crops from a camera or a video as a labelled image folder.

numpy and OpenCV only -- never TensorFlow -- so it runs on the Raspberry Pi that will
run the model. The sources are live's (``open_source``: --camera, --picamera, --video)
and the crop is live's ROI (``Roi.box``, preprocess.py), saved as a larger square than
the model's input (``config.COLLECT_SIZE``) so that the data outlives the model:

    OUT/<label>/<session>_<NNNNN>.jpg      label in config.LABELS; session sNNNNNNNN-NNNNNN-xxxx
    OUT/collect_log.csv                    file,label,source,roi,time,session,frame (appended)

A file's name without its last ``_<number>`` is its session: the grouped split keeps a
session's near-identical frames on one side. Three ways to run it:

- window (where one can open, or --window): keys 0-5 save the crop on screen with that label, b toggles a burst (one crop
  per --interval for the last label), q/Esc quits; per-class counts on screen.
  ``Keys`` turns key codes into actions, and tests feed it through OpenCV's waitKey.
- --label L (headless; --headless says so): a countdown, then --count crops at --interval (a Pi over SSH).
- --video FILE --labels CSV: the labelled frames of a video (live's labels CSV), each
  under its label, at --interval of video time (default: every frame).

Crops are JPEG-encoded and written by a background thread (``CropWriter``) with a
bounded queue, each through a hidden temporary file linked to a name that does not
exist yet: nothing is overwritten, and a kill never leaves half a JPEG under a real
name. Intervals are in the source's time: the wall clock for cameras and streams,
frame number / fps for video files (which are read as fast as they decode).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import fcntl
import io
import math
import os
import queue
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from edge_signs import config
from edge_signs.artifacts import check_output_dir, remove_stale_temps
from edge_signs.edge.display import AA, AMBER, FONT, GREEN, PANEL, RED, WHITE, Canvas, check_gui, window_problem
from edge_signs.edge.events import EventHub, EventOptions, open_event_hub
from edge_signs.edge.live import FrameResult, LiveOptions, RollingStats, StopRequest, open_source, stop_on_signals
from edge_signs.preprocess import Roi, to_bgr
from edge_signs.edge.sources import FrameSource, LatestFrame, PiCameraSource
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr

IMAGE_SUFFIX = ".jpg"
CSV_COLUMNS = ("file", "label", "source", "roi", "time", "session", "frame")
ESC = 27
KEY_HELP = "keys: 0-5 save, b burst, q quit"

# -- options ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectOptions:
    """Everything `edge-signs collect` can be told. Name at most one source; none means ``--camera 0``."""

    out: Path  # the dataset folder: OUT/<label>/*.jpg and OUT/collect_log.csv
    camera: Optional[int] = None
    picamera: bool = False
    video: Optional[str] = None  # file, URL or GStreamer pipeline
    labels_csv: Optional[Path] = None  # with --video: save every labelled frame under its label
    width: int = config.COLLECT_CAMERA_WIDTH
    height: int = config.COLLECT_CAMERA_HEIGHT
    fps: float = config.CAMERA_FPS
    roi: Roi = field(default_factory=Roi)
    headless: bool = False
    window: Optional[bool] = None  # True: --window (with --label, the first burst's label); None: a window only without --label
    label: Optional[str] = None  # headless: the class of every crop; --window: the first burst's label
    count: Optional[int] = None  # --headless: crops to save (default config.COLLECT_COUNT); window: crops per burst
    interval: Optional[float] = None  # seconds between burst crops (default config.COLLECT_INTERVAL_S; --labels: every frame)
    countdown: float = config.COLLECT_COUNTDOWN_S  # --headless: seconds announced before the first crop
    size: int = config.COLLECT_SIZE  # side of the saved square, pixels
    quality: int = config.COLLECT_JPEG_QUALITY
    capture_thread: bool = True  # read cameras and streams in live's newest-frame thread
    events: EventOptions = field(default_factory=EventOptions)  # the label being saved, held --hold seconds, is an event

    def live_options(self) -> LiveOptions:
        """The source part, as live understands it (so both commands open sources the same way)."""
        return LiveOptions(camera=self.camera, picamera=self.picamera, video=self.video, labels_csv=self.labels_csv,
                           width=self.width, height=self.height, fps=self.fps, roi=self.roi, headless=self.headless,
                           capture_thread=self.capture_thread)

    def mode(self) -> str:
        """'labels', 'headless' or 'window'; a one-line error when the options contradict each other."""
        self.live_options().source_kind()  # one source; --labels only with --video; sizes and fps
        if self.label is not None and self.label not in config.LABELS:
            raise EdgeSignsError(f"--label {self.label!r}: not a label (labels are {', '.join(config.LABELS)})")
        if self.count is not None and self.count < 1:
            raise EdgeSignsError(f"--count must be at least 1, got {self.count}")
        if self.interval is not None and not (math.isfinite(self.interval) and self.interval >= 0):
            raise EdgeSignsError(f"--interval must be a number of seconds >= 0, got {self.interval}")
        if not (math.isfinite(self.countdown) and self.countdown >= 0):
            raise EdgeSignsError(f"--countdown must be a number of seconds >= 0, got {self.countdown}")
        if self.size < 8:
            raise EdgeSignsError(f"--size must be at least 8 pixels, got {self.size}")
        if self.size > config.COLLECT_MAX_SIZE:
            raise EdgeSignsError(f"--size must be at most {config.COLLECT_MAX_SIZE} pixels, got {self.size} (a crop that size "
                                 f"is {3 * self.size ** 2 / 2**20:.0f} MB in memory; the model sees {config.IMAGE_SIZE} px)")
        if not 1 <= self.quality <= 100:
            raise EdgeSignsError(f"--quality is a JPEG quality in 1..100, got {self.quality}")
        if self.headless and self.window:
            raise EdgeSignsError("--headless and --window contradict each other; name one")
        if self.labels_csv is not None:
            if self.window:
                raise EdgeSignsError("--window and --labels: a labels CSV run saves every labelled frame with no window; name one")
            if self.label is not None:
                raise EdgeSignsError("--label and --labels: the labels CSV gives every frame's label; name one of them")
            if self.count is not None:
                raise EdgeSignsError("--count goes with --label; with --labels every labelled frame is saved (thin them with --interval)")
            return "labels"
        if self.headless:
            if self.label is None:
                raise EdgeSignsError(f"--headless needs --label (one of {', '.join(config.LABELS)}): the class of the crops it saves")
            return "headless"
        if self.label is not None and not self.window:
            return "headless"  # a label for every crop: nothing to press keys for
        return "window"

    def burst_interval(self) -> float:
        if self.interval is not None:
            return self.interval
        return 0.0 if self.labels_csv is not None else config.COLLECT_INTERVAL_S


# -- keys and pacing: pure state machines, driven by key codes and a clock --------------------------


class Pacer:
    """When a burst saves: one crop per ``interval`` of source time, on a fixed grid.

    A frame up to a quarter interval early counts (camera frames jitter around their
    period, and a burst at the camera's rate must take every frame); a loop that fell
    behind takes the next frame and does not try to catch up with a rush of saves.
    """

    def __init__(self, interval: float):
        self.interval = interval
        self.next: Optional[float] = None  # None: not running

    def start(self, now: float) -> None:
        self.next = now

    def stop(self) -> None:
        self.next = None

    @property
    def running(self) -> bool:
        return self.next is not None

    def due(self, now: float) -> bool:
        if self.next is None or now + 0.25 * self.interval < self.next:
            return False
        self.next = max(self.next + self.interval, now + 0.5 * self.interval)
        return True


class Keys:
    """The window's keys as a state machine: ``press(code, now)`` -> the label to save this frame, or None.

    0-5 save one crop with that label (and make it the burst's label); b starts a
    burst (saving this frame, then one per interval) or stops it; q or Esc quits; anything else is ignored with a hint in ``status``.
    ``burst_due(now)`` -> the burst's label when a crop is due on this frame.
    """

    def __init__(self, interval: float, label: Optional[str] = None, per_burst: Optional[int] = None):
        self.pacer = Pacer(interval)
        self.label = label  # the last label chosen: the burst saves with it
        self.per_burst = per_burst  # a burst stops by itself after this many crops (None: when b is pressed again)
        self.burst_saved = 0
        self.quit = False
        self.status = KEY_HELP

    @property
    def burst(self) -> bool:
        return self.pacer.running

    def press(self, code: int, now: float) -> Optional[str]:
        if code is None or code < 0:
            return None
        code &= 0xFF
        char = chr(code)
        if char in config.LABELS:
            self.label = char
            self.status = f"saved one {char}" + (f"; burst now saves {char}" if self.burst else "")
            return char
        if char in ("b", "B"):
            if self.burst:
                self.pacer.stop()
                self.status = f"burst stopped ({self.burst_saved} saved)"
            elif self.label is None:
                self.status = "press 0-5 first: the burst saves the last label chosen"
            else:
                self.burst_saved = 0
                self.pacer.start(now)
                self.status = f"burst: {self.label} every {self.pacer.interval:g} s (b stops)"
                return self._take(now)  # the frame b came on is the burst's first
            return None
        if char in ("q", "Q") or code == ESC:
            self.quit = True
            self.status = "quit"
            return None
        if code in (ord("\r"), ord("\n"), ord(" ")) or not char.isprintable():
            self.status = f"key {code} does nothing; {KEY_HELP}"
        else:
            self.status = f"key {char!r} does nothing; {KEY_HELP}"
        return None

    def burst_due(self, now: float) -> Optional[str]:
        return self._take(now) if self.label is not None else None

    def _take(self, now: float) -> Optional[str]:
        if not self.pacer.due(now):
            return None
        self.burst_saved += 1
        if self.per_burst is not None and self.burst_saved >= self.per_burst:
            self.pacer.stop()
            self.status = f"burst done ({self.burst_saved} saved)"
        return self.label


# -- names, the output folder and the writer thread ---------------------------------------------------------


def new_session() -> str:
    """A sortable session id without underscores: s20261127-114211-3fa0 (time and a random suffix)."""
    return time.strftime("s%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def check_out(out: Path) -> Path:
    """OUT writable (probed by creating a file) and with room on its disk, or a one-line error: before a camera opens."""
    out = Path(out)
    check_output_dir(out, "--out")
    base = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    try:
        free = shutil.disk_usage(base).free
    except OSError as exc:
        raise EdgeSignsError(f"--out {out}: cannot tell the free disk space ({exc.strerror or exc})") from None
    if free < config.COLLECT_MIN_FREE_MB * 2**20:
        raise EdgeSignsError(f"--out {out}: only {free / 2**20:.1f} MB free on its disk; collect needs at least "
                             f"{config.COLLECT_MIN_FREE_MB} MB (free some space or choose another --out)")
    for label in config.LABELS:  # ... and a wrong kind of thing where a class folder goes is found now, not mid-burst
        if (out / label).exists() and not (out / label).is_dir():
            raise EdgeSignsError(f"--out {out}: {out / label} is a file; the class folders OUT/{'/, OUT/'.join(config.LABELS)}/ must be folders")
    if (out / config.COLLECT_CSV).is_dir():
        raise EdgeSignsError(f"--out {out}: {out / config.COLLECT_CSV} is a folder, expected the collect log CSV")
    _check_log_writable(out / config.COLLECT_CSV, out)
    return out


def _check_log_writable(log: Path, out: Path) -> None:
    """The log lists every crop: one that cannot be appended to is found before a crop is saved, not after."""
    if not (log.exists() or log.is_symlink()):
        return  # created in OUT, whose writability check_output_dir has just probed
    try:
        os.close(os.open(log, os.O_RDWR | os.O_APPEND | (os.O_CREAT if log.is_symlink() else 0), 0o666))
    except OSError as exc:
        raise EdgeSignsError(f"--out {out}: {log} cannot be written ({exc.strerror or exc}); collect lists every crop "
                             f"there: fix it, or choose another --out") from None


def count_images(out: Path) -> dict[str, int]:
    """Images in each OUT/<label>/ (hidden temporary files aside)."""
    counts = {}
    for label in config.LABELS:
        folder = Path(out) / label
        counts[label] = sum(1 for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png") and not p.name.startswith(".")) \
            if folder.is_dir() else 0
    return counts


_TEMP = re.compile(r"^\.(?P<target>.+)\.tmp-\d+-")


def remove_stale_crops(out: Path) -> int:
    """Remove the hidden temporary files a killed collect left in OUT/<label>/ (a live writer's stay)."""
    removed = 0
    for label in config.LABELS:
        folder = Path(out) / label
        if not folder.is_dir():
            continue
        targets = {m.group("target") for p in folder.glob(".*.tmp-*") if (m := _TEMP.match(p.name))}
        for target in targets:
            removed += len(remove_stale_temps(folder / target))
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class _Save:
    crop: np.ndarray  # BGR, size x size
    label: str
    roi: tuple[int, int, int]  # x, y, side in the frame's pixels
    when: float  # time.time() when the frame was in hand
    frame: int  # the frame's number in this run (0-based)


class DiskLow(Exception):
    """Free space fell below config.COLLECT_STOP_FREE_MB."""


class CropWriter:
    """JPEG-encodes and writes crops in a background thread, and logs each in OUT/collect_log.csv.

    ``submit`` never waits for the disk unless ``block`` (a video file, which can wait);
    a camera's crop that finds the queue full is dropped and counted in ``dropped``.
    After a write error (disk full, folder gone) ``error`` says what happened and
    nothing more is written; what was written stays. ``close`` writes what is queued.
    """

    def __init__(self, out: Path, session: str, source: str, quality: int = config.COLLECT_JPEG_QUALITY,
                 *, block: bool = False, maxsize: int = config.COLLECT_QUEUE):
        self.out = Path(out)
        self.session = session
        self.source = source
        self.block = block
        self.saved = {label: 0 for label in config.LABELS}
        self.dropped = 0  # crops not queued: the queue was full
        self.lost = 0  # crops queued after a write error, not written
        self.error: Optional[str] = None
        self.last: Optional[Path] = None
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        self._mode = 0o666 & ~_umask()  # read once here: os.umask is process-wide and not thread-safe
        self._next = 0  # the next frame counter tried for a name
        self._pid = os.getpid()
        self._temps = 0
        self._folders: set[str] = set()
        self._csv_fd: Optional[int] = None
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._run, name="collect writer", daemon=True)
        self._thread.start()

    @property
    def csv_path(self) -> Path:
        return self.out / config.COLLECT_CSV

    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, item: _Save) -> bool:
        """Queue a crop; False when it was not queued (full queue, or writing has failed)."""
        if self.error is not None:
            return False
        if self.block:
            self._queue.put(item)
            return True
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def close(self) -> None:
        """Write everything queued, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._csv_fd is not None:
            os.close(self._csv_fd)
            self._csv_fd = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                self.lost += 1
                continue
            try:
                self._write(item)
            except DiskLow as exc:
                self.error = str(exc)
            except OSError as exc:
                where = f"{exc.filename}: " if exc.filename else ""
                self.error = f"{where}{exc.strerror or exc}"
            except Exception as exc:  # noqa: BLE001 -- the thread must drain the queue whatever goes wrong
                self.error = f"{type(exc).__name__}: {exc}"

    def _write(self, item: _Save) -> None:
        folder = self.out / item.label
        if item.label not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(item.label)
        free = shutil.disk_usage(folder).free
        if free < config.COLLECT_STOP_FREE_MB * 2**20:
            raise DiskLow(f"{self.out}: only {free / 2**20:.1f} MB left on its disk (collect stops below {config.COLLECT_STOP_FREE_MB} MB)")
        ok, jpeg = cv2.imencode(IMAGE_SUFFIX, item.crop, self._params)
        if not ok:
            raise EdgeSignsError("OpenCV could not encode a JPEG")
        path = self._publish(folder, jpeg.tobytes())
        try:
            self._log_row(path, item)
        except BaseException:  # a crop the log does not list is not counted, nor kept: the two always agree
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        self.saved[item.label] += 1
        self.last = path

    def _publish(self, folder: Path, data: bytes) -> Path:
        """Write ``data`` under the first free <session>_<NNNNN>.jpg: never over an existing file, never half-written."""
        # The temporary file is hidden and has no image suffix (a dataset reader skips it), and is named as
        # artifacts' temporary files are (.NAME.tmp-PID-...), so the next collect removes one a kill left.
        self._temps += 1
        tmp = folder / f".{self.session}_{self._next:05d}{IMAGE_SUFFIX}.tmp-{self._pid}-{self._temps}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self._mode)
        try:
            with os.fdopen(fd, "wb") as f:  # writes all of it (os.write may write part)
                f.write(data)
            n = self._next
            while True:
                path = folder / f"{self.session}_{n:05d}{IMAGE_SUFFIX}"
                try:
                    os.link(tmp, path)  # fails if the name exists: the no-overwrite rename
                    break
                except FileExistsError:
                    n += 1
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                        raise
                    if path.exists():  # a file system without hard links (FAT on a USB stick): check, then rename
                        n += 1
                        continue
                    os.replace(tmp, path)
                    break
            self._next = n + 1
            return path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _log_row(self, path: Path, item: _Save) -> None:
        if self._csv_fd is None:
            self._csv_fd = os.open(self.csv_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        when = datetime.datetime.fromtimestamp(item.when).astimezone().isoformat(timespec="milliseconds")
        buf = io.StringIO()
        row = csv.writer(buf, lineterminator="\n")
        row.writerow([path.relative_to(self.out).as_posix(), item.label, self.source, "{},{},{}".format(*item.roi), when,
                      self.session, item.frame])
        # One locked append per row: two collects into one OUT never interleave lines, and the header is written once.
        fcntl.flock(self._csv_fd, fcntl.LOCK_EX)
        size = None
        try:
            data = buf.getvalue().encode("utf-8")
            size = os.fstat(self._csv_fd).st_size
            if size == 0:
                data = (",".join(CSV_COLUMNS) + "\n").encode() + data
            elif os.pread(self._csv_fd, 1, size - 1) != b"\n":  # a last row cut short or edited: never glue onto it
                data = b"\n" + data
            _write_all(self._csv_fd, data)
        except OSError as exc:
            if size is not None:  # no half row left behind (the lock keeps other writers out meanwhile)
                with contextlib.suppress(OSError):
                    os.ftruncate(self._csv_fd, size)
            raise OSError(exc.errno, exc.strerror, str(self.csv_path)) from None  # os.write names no file: the message must
        finally:
            fcntl.flock(self._csv_fd, fcntl.LOCK_UN)


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write part of it (a disk filling): the rest, or an OSError."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# -- the crop, and what a person sees ------------------------------------------------------------------


def crop_square(frame: np.ndarray, roi: Roi, size: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """live's ROI of a frame (``Roi.box``) as a BGR square of ``size`` pixels, and (x, y, side) in the frame.

    Shrunk with INTER_AREA, enlarged with INTER_LINEAR: preprocess.resize_to_model's rule, at another size.
    """
    x0, y0, x1, y1 = roi.box(*frame.shape[:2])
    crop = to_bgr(frame[y0:y1, x0:x1])
    side = x1 - x0
    if side != size:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
    else:
        crop = crop.copy()  # the source reuses its buffer; the writer thread needs its own pixels
    return crop, (x0, y0, side)


class CollectView:
    """The window's picture: the frame, the ROI box, per-class counts and the burst state, on a canvas it owns."""

    def __init__(self, roi: Roi):
        self._canvas = Canvas(roi)  # live's overlay canvas: the same box, scaling and buffer

    def render(self, frame: np.ndarray, counts: dict[str, int], session: dict[str, int], keys: Keys, flash: bool) -> np.ndarray:
        colour = GREEN if flash else (RED if keys.burst else AMBER)
        img, thick = self._canvas.draw(frame, colour, 2 if flash else 1)
        W = img.shape[1]
        fs = max(0.45, W / 1000)
        lines = ["  ".join(f"{k}:{counts[k] + session[k]}" for k in config.LABELS),
                 (f"BURST {keys.label} every {keys.pacer.interval:g}s" if keys.burst else "") or keys.status]
        if keys.burst:
            lines.append(keys.status)
        pad = max(4, round(8 * fs))
        sizes = [cv2.getTextSize(t, FONT, fs, thick)[0] for t in lines]
        line_h = max(th for _, th in sizes) + pad
        cv2.rectangle(img, (0, 0), (min(W, max(tw for tw, _ in sizes) + 2 * pad), line_h * len(lines) + pad), PANEL, -1)
        for k, text in enumerate(lines):
            ink = RED if (k == 1 and keys.burst) else WHITE
            cv2.putText(img, text, (pad, line_h * (k + 1)), FONT, fs, ink, thick, AA)
        return img


class CollectWindow:
    """The preview window: shows a picture and returns the key pressed (OpenCV's code, -1 for none)."""

    def __init__(self):
        check_gui()
        try:
            cv2.namedWindow(config.COLLECT_WINDOW_NAME, cv2.WINDOW_AUTOSIZE)
        except cv2.error as exc:
            raise EdgeSignsError(f"cannot open a window ({str(exc).strip().splitlines()[-1]}): give --label L to save without one") from None
        self._visible_known: Optional[bool] = None

    def show(self, img: np.ndarray) -> int:
        cv2.imshow(config.COLLECT_WINDOW_NAME, img)
        return cv2.waitKey(1)

    def closed(self) -> bool:
        """The window's close button (a backend that never reports visibility never counts as closed)."""
        try:
            visible = cv2.getWindowProperty(config.COLLECT_WINDOW_NAME, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return True
        if self._visible_known is None:
            self._visible_known = visible
        return self._visible_known and not visible

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(config.COLLECT_WINDOW_NAME)
            cv2.waitKey(1)


# -- the run ---------------------------------------------------------------------------------------------------


@dataclass
class CollectSummary:
    """What a collect run saved, and how it went."""

    out: Path
    session: str
    source: str
    mode: str
    saved: dict[str, int]  # crops written this session, per label
    totals: dict[str, int]  # images in OUT/<label>/ now
    csv: Path
    frames: int
    seconds: float
    reason: str
    median_frame_ms: float  # read + crop + queue + window, per frame (median of the last config.STATS_WINDOW)
    dropped: int = 0  # crops not saved because the writer's queue was full
    camera_dropped: Optional[int] = None  # camera frames replaced by newer ones before the loop took them
    size: int = config.COLLECT_SIZE
    warnings: list[str] = field(default_factory=list)
    error: Optional[str] = None  # writing stopped (disk full, folder gone): the exit status is 1
    events: Optional[dict] = None  # events.EventHub.stats()
    event_lines: list[str] = field(default_factory=list)

    @property
    def total_saved(self) -> int:
        return sum(self.saved.values())

    def text(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        per = ", ".join(f"{k}: {v}" for k, v in self.saved.items() if v) or "none"
        lines = [
            f"session {self.session}: {self.frames} frames from {self.source} in {self.seconds:.1f} s ({fps:.1f} fps, "
            f"{self.median_frame_ms:.2f} ms per frame median); ended: {self.reason}",
            f"saved {self.total_saved} crops ({self.size}x{self.size} JPEG) into {self.out}: {per}",
            f"in {self.out} now: " + ", ".join(f"{k}: {v}" for k, v in self.totals.items()) + f" ({sum(self.totals.values())} images)",
        ]
        if self.total_saved:
            lines.append(f"log: {self.csv}")
        if self.camera_dropped:
            lines.append(f"camera frames replaced by newer ones before the loop took them: {self.camera_dropped}")
        lines += self.event_lines
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"


def open_collect_source(options: CollectOptions, *, log: Log = log_stderr) -> FrameSource:
    """live's sources; the Pi camera always with its full-size main stream (the crops come from it)."""
    live = options.live_options()
    if live.source_kind() == "picamera":
        source = PiCameraSource(options.width, options.height, options.fps, display=True)
        return LatestFrame(source) if options.capture_thread else source
    return open_source(live, config.LABELS, log=log)


def run_collect(
    options: CollectOptions,
    *,
    log: Log = log_stderr,
    source: Optional[FrameSource] = None,
    clock: Optional[Callable[[], float]] = None,
) -> CollectSummary:
    """Save ROI crops until the source ends, --count is reached, q/Esc, Ctrl-C or SIGTERM.

    User mistakes (contradicting options, an unwritable or full OUT, no window) raise
    EdgeSignsError before the source opens. ``source`` replaces the one the options
    name (tests, benchmarks); ``clock`` replaces the source's time (seconds).
    """
    mode = options.mode()
    out = check_out(options.out)
    options.events.check([options.video, options.labels_csv])
    if mode == "headless" and not options.headless:
        log("running headless: --label names every crop's class (--window for the keys)")
    if mode == "window" and not options.window and (problem := window_problem()) is not None:
        raise EdgeSignsError(f"{problem}: give --label L [--count N] to save crops without a window")
    if mode == "window":
        check_gui()
    stale = remove_stale_crops(out) if out.is_dir() else 0
    if stale:
        log(f"removed {stale} temporary file(s) a killed collect left in {out}")
    before = count_images(out) if out.is_dir() else {k: 0 for k in config.LABELS}
    session = new_session()
    with contextlib.ExitStack() as stack:
        src = source if source is not None else open_collect_source(options, log=log)
        stack.callback(src.close)
        log(f"source: {src.name}")
        log(f"session {session}: saving {options.size}x{options.size} crops into {out}/<label>/")
        writer = CropWriter(out, session, src.name, options.quality, block=not src.live)
        window = None
        events = None
        kept = False
        try:
            if mode == "window":
                window = CollectWindow()
                stack.callback(window.close)
            events = open_event_hub(options.events, log=log)
            with stop_on_signals() as stop:
                loop = _CollectLoop(options, mode, src, writer, window, before, log, clock, events)
                loop.run(stop)
            kept = True
        finally:
            writer.close()  # everything queued is written, whatever ended the loop
            if events is not None:
                events.close(keep=kept)
    summary = loop.summary(out, session, count_images(out))
    summary.events, summary.event_lines = events.stats(), events.lines()
    summary.warnings += events.warnings()
    if writer.error is not None:
        summary.error = f"saving stopped: {writer.error}; the {summary.total_saved} crops saved before it are kept"
    return summary


class _CollectLoop:
    def __init__(self, options: CollectOptions, mode: str, source: FrameSource, writer: CropWriter,
                 window: Optional[CollectWindow], before: dict[str, int], log: Log, clock: Optional[Callable[[], float]],
                 events: Optional[EventHub] = None):
        self.options, self.mode, self.source, self.writer, self.window, self.log = options, mode, source, writer, window, log
        self.before = before
        self.queued = {k: 0 for k in config.LABELS}
        self.count = options.count if options.count is not None else config.COLLECT_COUNT
        interval = options.burst_interval()
        self.keys = Keys(interval, options.label, per_burst=options.count)
        self.pacer = Pacer(interval)  # --headless and --labels
        self.view = CollectView(options.roi) if window is not None else None
        self.display_frame = getattr(source, "display_frame", None)
        # Video files are read as fast as they decode: their time is the frame number over the frame rate.
        self.video_time = not source.live and clock is None
        self.clock = clock or time.monotonic
        self.frames = 0
        self.flash = 0
        self.small_warned = False
        self.frame_ms = RollingStats()
        self.reason = ""
        self.seconds = 0.0
        self.warnings: list[str] = []
        self.burst_when_ended: Optional[int] = None
        self.events = events if events is not None else EventHub(options.events.hold)
        self.result = FrameResult(smoothed_confidence=1.0)  # what the events see: the label being saved (a person's, so certain)
        # Events say when as live's do (events.FrameClock): Unix time for cameras, the video's time for files.
        self.event_offset = time.time() - time.monotonic() if source.live and clock is None else 0.0

    def now(self) -> float:
        return (self.frames - 1) / (self.source.fps or config.RECORD_FPS) if self.video_time else self.clock()

    @property
    def total_queued(self) -> int:
        return sum(self.queued.values())

    def save(self, image: np.ndarray, label: str) -> bool:
        crop, roi = crop_square(image, self.options.roi, self.options.size)
        if roi[2] < self.options.size and not self.small_warned:
            self.small_warned = True
            msg = (f"small crop: the ROI is {roi[2]} px of a {image.shape[1]}x{image.shape[0]} frame, enlarged to "
                   f"{self.options.size} px; ask for a larger --width/--height or --roi SIZE for sharper crops")
            self.warnings.append(msg)
            self.log(f"warning: {msg}")
        ok = self.writer.submit(_Save(crop, label, roi, time.time(), self.frames - 1))
        if ok:
            self.queued[label] += 1
            self.flash = 3
        return ok

    def countdown(self, stop: StopRequest) -> bool:
        """--headless: announce the start; False when stopped meanwhile."""
        seconds = self.options.countdown
        if seconds <= 0:
            return True
        end = time.monotonic() + seconds
        for k in range(math.ceil(seconds), 0, -1):
            self.log(f"saving {self.count} crops of {self.options.label} in {k} ...")
            while time.monotonic() < min(end, end - k + 1):
                if stop.reason is not None:
                    return False
                time.sleep(0.05)
        self.log("go")
        return stop.reason is None

    def run(self, stop: StopRequest) -> None:
        t_loop = time.perf_counter()
        opts, mode = self.options, self.mode
        progress_every = max(1, self.count // 10)
        try:
            if mode == "headless" and not self.countdown(stop):
                self.reason = stop.reason or "stopped"
                return
            t_loop = time.perf_counter()  # the countdown is not loop time
            frames = iter(self.source)
            started = False
            truth_prev: Optional[int] = None
            while True:
                if stop.reason is not None:
                    self.reason = stop.reason
                    break
                if self.writer.error is not None:
                    self.reason = "saving failed"
                    break
                t0 = time.perf_counter()
                item = next(frames, None)
                if item is None:
                    self.reason = stop.reason or self.source.ended
                    break
                frame, truth = item
                self.frames += 1
                now = self.now()
                self._event_frame(now, truth)
                shown = self.display_frame() if self.display_frame is not None else None
                image = frame if shown is None else shown
                if mode == "headless":
                    if not started:
                        self.pacer.start(now)
                        started = True
                    if self.pacer.due(now) and self.save(image, opts.label):
                        n = self.total_queued
                        if n % progress_every == 0 or n == self.count:
                            self.log(f"saved {n}/{self.count} ({opts.label})")
                        if n >= self.count:
                            self.reason = f"--count {self.count} saved"
                            self._tick(t0)
                            break
                elif mode == "labels":
                    if truth is None:
                        truth_prev = None
                    else:
                        if truth != truth_prev:
                            self.pacer.start(now)
                            truth_prev = truth
                        if self.pacer.due(now):
                            self.save(image, config.LABELS[truth])
                else:
                    label = self.keys.burst_due(now)
                    if label is not None:
                        self.save(image, label)
                    img = self.view.render(image, self.before, self.queued, self.keys, self.flash > 0)
                    self.flash = max(0, self.flash - 1)
                    key = self.window.show(img)
                    label = self.keys.press(key, now)
                    if label is not None:
                        self.save(image, label)  # the frame on screen when the key came
                    if self.keys.quit:
                        self.reason = "quit from the window"
                        self._tick(t0)
                        break
                    if self.window.closed():
                        self.reason = "window closed"
                        break
                self._tick(t0)
        except KeyboardInterrupt:  # a second Ctrl-C, or no signal handler (not the main thread)
            self.reason = "interrupted (Ctrl-C)"
        finally:
            self.seconds = time.perf_counter() - t_loop
            if mode == "window" and self.keys.burst:
                self.burst_when_ended = self.keys.burst_saved

    def _saving(self, truth: Optional[int]) -> Optional[str]:
        """The label this frame is saved under, or None: the sign events are made of."""
        if self.mode == "labels":
            return config.LABELS[truth] if truth is not None else None
        if self.mode == "headless":
            return self.options.label
        return self.keys.label if self.keys.burst else None

    def _event_frame(self, now: float, truth: Optional[int]) -> None:
        r = self.result
        r.frame, r.source_time, r.label = self.frames - 1, now + self.event_offset, self._saving(truth)
        self.events.on_frame(r)

    def _tick(self, t0: float) -> None:
        self.frame_ms.add((time.perf_counter() - t0) * 1e3)

    def summary(self, out: Path, session: str, totals: dict[str, int]) -> CollectSummary:
        w = self.writer
        warnings = list(self.warnings)
        ended = getattr(self.source, "ended", None)
        source_stopped = bool(ended) and self.reason == ended
        if self.mode == "headless" and self.total_queued < self.count and self.reason != "saving failed":
            warnings.append(f"incomplete: {self.reason} after {w.saved[self.options.label]} of {self.count} crops; those are kept")
        if self.burst_when_ended is not None and source_stopped:
            warnings.append(f"source stopped mid-burst: {self.reason}; the {self.burst_when_ended} crops of this burst are kept")
        if w.dropped:
            warnings.append(f"dropped saves: {w.dropped} crops not saved because the writer fell {config.COLLECT_QUEUE} behind "
                            f"(a slow disk); a longer --interval or a faster card helps")
        unscored = self.source.unscored() if source_stopped and self.mode == "labels" else None
        if unscored:
            warnings.append(f"labels not reached: {unscored}")
        if w.lost:
            warnings.append(f"not written: {w.lost} queued crops after saving failed")
        return CollectSummary(
            out=out, session=session, source=self.source.name, mode=self.mode, saved=dict(w.saved), totals=totals, csv=w.csv_path,
            frames=self.frames, seconds=self.seconds, reason=self.reason, median_frame_ms=self.frame_ms.median(),
            dropped=w.dropped, camera_dropped=getattr(self.source, "dropped", None), size=self.options.size, warnings=warnings,
        )
