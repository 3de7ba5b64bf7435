"""Reading image files for datasets: what a file really is, and what is wrong with a damaged one.

numpy and OpenCV only (shared by both worlds). A file's format is read from its first
bytes, not its name: a PNG named .jpg is read as the PNG it is, and named. A JPEG is
decoded with libjpeg's warnings caught -- libjpeg decodes a damaged or truncated file
into grey or garbled pixels and only prints "Corrupt JPEG data" or "Premature end of
JPEG file" on stderr, which no one reads while a thousand files load -- so such a file
is refused, naming the file and libjpeg's reason. Bytes after a complete JPEG's
end-of-image marker (a faulty copy, a tool that appended metadata) are ignored, and named.

``class_folder_images`` lists a class folder's images and names everything it skips.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator, Optional

import cv2
import numpy as np

from edge_signs.errors import EdgeSignsError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
JPEG_END = b"\xff\xd9"  # the end-of-image marker every complete JPEG ends with
_MAGIC = ((b"\xff\xd8", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
          (b"P5", "PGM"), (b"P6", "PPM"))
_BY_SUFFIX = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP",
              ".ppm": "PPM", ".pgm": "PGM"}


def sniff_format(data: bytes) -> Optional[str]:
    """'JPEG', 'PNG', ... from a file's first bytes; None when they name no format read here."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


# -- libjpeg's warnings, caught -------------------------------------------------------------------------------

_STDERR_LOCK = threading.Lock()
_sink: Optional[IO[bytes]] = None


@contextlib.contextmanager
def _stderr_lines() -> Iterator[list[str]]:
    """What C code (libjpeg, through OpenCV) prints on stderr meanwhile, as lines; anything not libjpeg's is passed on."""
    global _sink
    lines: list[str] = []
    with _STDERR_LOCK:
        if _sink is None:
            _sink = tempfile.TemporaryFile()
        _sink.seek(0)
        _sink.truncate()
        with contextlib.suppress(AttributeError, ValueError, OSError):
            sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(_sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            _sink.seek(0)
            for line in _sink.read().decode("utf-8", "replace").splitlines():
                if "JPEG" in line:
                    lines.append(line.strip())
                elif line.strip():
                    os.write(2, (line + "\n").encode("utf-8", "replace"))  # another thread's or library's: not ours to hide


def _decode_jpeg(path: Path, data: bytes, notes: Optional[list[str]]) -> np.ndarray:
    end = data.rfind(JPEG_END)
    if end < 0:
        raise EdgeSignsError(f"{path}: truncated JPEG (no end-of-image marker); re-copy or delete the file")
    with _stderr_lines() as warnings:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    truncated = [w for w in warnings if "Premature end" in w]
    if truncated:
        raise EdgeSignsError(f"{path}: truncated JPEG (libjpeg: {truncated[0]}); re-copy or delete the file")
    if warnings:
        raise EdgeSignsError(f"{path}: damaged JPEG (libjpeg: {warnings[0]}); its pixels would be garbled: re-copy or delete the file")
    trailing = len(data) - end - len(JPEG_END)
    if bgr is not None and trailing and notes is not None and data[end + 2:].strip(b"\x00\r\n "):
        notes.append(f"warning: {path}: {trailing} bytes after the JPEG's end-of-image marker (ignored: the image itself is complete)")
    return bgr


def read_image_bgr(path: str | os.PathLike, notes: Optional[list[str]] = None) -> np.ndarray:
    """Any image file OpenCV reads, as 8-bit BGR (the layout of a camera frame); what is odd about it goes to ``notes``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EdgeSignsError(f"{path}: unreadable image ({exc.strerror or exc})") from None
    kind = sniff_format(data)
    named = _BY_SUFFIX.get(path.suffix.lower())
    if kind is not None and named is not None and kind != named and notes is not None:
        notes.append(f"warning: {path}: a {kind} file named {path.suffix}; read as the {kind} it is")
    if kind == "JPEG" or (kind is None and named == "JPEG"):
        bgr = _decode_jpeg(path, data, notes)
    else:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None or bgr.size == 0:
        what = f"a {kind} file OpenCV could not decode (damaged or cut short?)" if kind else "OpenCV could not decode it"
        raise EdgeSignsError(f"{path}: unreadable image ({what})")
    return bgr


# -- class folders --------------------------------------------------------------------------------------------


def is_image_name(name: str) -> bool:
    """An image file's name by its suffix (any case), hidden files aside: what every folder reader counts as an image."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")


def class_folder_images(folder: Path, notes: list[str]) -> list[Path]:
    """The image files of a class folder, sorted; every other entry is skipped and named in ``notes``."""
    images: list[Path] = []
    skipped: dict[str, list[str]] = {}
    for entry in sorted(folder.iterdir()):
        try:
            mode = entry.stat().st_mode  # links followed
        except OSError as exc:  # a dangling link, a link loop
            skipped.setdefault(f"broken link(s) ({exc.strerror})" if exc.strerror else "broken link(s)", []).append(entry.name)
            continue
        if stat.S_ISDIR(mode):
            skipped.setdefault("folder(s) (class folders are not read recursively)", []).append(entry.name)
        elif not stat.S_ISREG(mode):
            skipped.setdefault("special file(s)", []).append(entry.name)
        elif entry.name.startswith(".") and ".tmp-" in entry.name:
            continue  # a temporary file of a writer (collect) that is not done with it
        elif not is_image_name(entry.name):
            skipped.setdefault("file(s) that are not images" if not entry.name.startswith(".") else "hidden file(s)", []).append(entry.name)
        else:
            images.append(entry)
    for what, names in skipped.items():
        notes.append(f"warning: {folder}: skipped {len(names)} {what}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")
    return images
