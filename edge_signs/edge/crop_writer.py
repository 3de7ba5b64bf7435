"""collect's crops on disk: the output folder's checks, the crop itself and the writer thread.

    OUT/<label>/<session>_<NNNNN>.jpg      label in config.LABELS; session sNNNNNNNN-NNNNNN-xxxx
    OUT/collect_log.csv                    file,label,source,roi,time,session,frame (appended)

Crops are JPEG-encoded and written by a background thread (``CropWriter``) with a
bounded queue, each through a hidden temporary file linked to a name that does not
exist yet: nothing is overwritten, and a kill never leaves half a JPEG under a real
name. `teach --save` keeps its frames the same way.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import fcntl
import io
import os
import queue
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from edge_signs import config
from edge_signs.artifacts import check_output_dir, remove_stale_temps
from edge_signs.errors import EdgeSignsError
from edge_signs.preprocess import Roi, to_bgr

IMAGE_SUFFIX = ".jpg"
CSV_COLUMNS = ("file", "label", "source", "roi", "time", "session", "frame")


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
class Crop:
    """One crop on its way to the writer."""

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

    def submit(self, item: Crop) -> bool:
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

    def _write(self, item: Crop) -> None:
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

    def _log_row(self, path: Path, item: Crop) -> None:
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
