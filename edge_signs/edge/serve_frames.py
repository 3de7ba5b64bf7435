"""`live --serve`'s frames: one JPEG shared by every viewer, made off the loop's thread.

The loop never waits for a viewer. ``FrameEncoder.offer`` only copies the annotated
frame into the encoder's buffer when the encoder is idle and ``SERVE_MAX_FPS`` allows
it; the encoder thread scales it to ``SERVE_MAX_SIDE`` and makes ONE JPEG, which
``FrameHub`` hands to every viewer. Each viewer's thread waits for a newer JPEG and
writes it; a viewer slower than the frame rate simply misses frames. Memory is one JPEG
per viewer at most, whatever the viewers do.

numpy, OpenCV and the standard library only: this runs on the Pi.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

import cv2
import numpy as np


class FrameHub:
    """The newest JPEG and its number. Viewers wait for a newer one; the producer never waits for them."""

    def __init__(self):
        self._cond = threading.Condition()
        self._jpeg: Optional[bytes] = None
        self._seq = 0
        self.closed = False

    def put(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg = jpeg  # the old one lives on only in a viewer still writing it
            self._seq += 1
            self._cond.notify_all()

    def wait_newer(self, seen: int, timeout: float) -> Optional[tuple[int, bytes]]:
        """The newest JPEG if it is newer than ``seen``, else None after ``timeout`` or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seen or self.closed, timeout=timeout)
            if self.closed or self._seq <= seen:
                return None
            return self._seq, self._jpeg

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class FrameEncoder:
    """Scales and JPEG-encodes frames in its own thread, at most ``max_fps`` a second.

    ``offer`` runs on the loop's thread and never blocks: it copies the frame into a
    reused buffer only when the encoder is idle and the rate allows, else it returns False.
    (OpenCV releases the GIL while it resizes and encodes, so this overlaps inference.)
    """

    def __init__(self, hub: FrameHub, max_fps: float, max_side: int, quality: int):
        self._hub = hub
        self._period = 1.0 / max_fps
        self._max_side = max_side
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        self._cond = threading.Condition()
        self._buf: Optional[np.ndarray] = None
        self._pending = False
        self._closed = False
        self._next_due = 0.0
        self.encoded = 0
        self._thread = threading.Thread(target=self._run, name="serve: encoder", daemon=True)
        self._thread.start()

    def due(self) -> bool:
        """Whether ``offer`` would take a frame now (so the loop can skip drawing one it would not)."""
        return not self._pending and time.monotonic() >= self._next_due

    def offer(self, img: np.ndarray) -> bool:
        now = time.monotonic()
        if self._pending or now < self._next_due or self._closed:
            return False
        self._next_due = now + self._period
        if self._buf is None or self._buf.shape != img.shape or self._buf.dtype != img.dtype:
            self._buf = np.empty_like(img)  # only when the frame size changes
        np.copyto(self._buf, img)  # the loop reuses its canvas: the encoder gets its own copy
        with self._cond:
            self._pending = True
            self._cond.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
            jpeg = self._encode(self._buf)  # the loop does not touch _buf while _pending
            if jpeg is not None:
                self._hub.put(jpeg)
                self.encoded += 1
            with self._cond:
                self._pending = False

    def _encode(self, img: np.ndarray) -> Optional[bytes]:
        h, w = img.shape[:2]
        scale = self._max_side / max(h, w)
        if scale < 1:
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, self._params)
        return buf.tobytes() if ok else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2.0)
