"""collect's window: the keys and burst pacing (pure state machines, driven by key codes and a clock) and the picture."""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from edge_signs import config
from edge_signs.edge.display import AA, AMBER, FONT, GREEN, PANEL, RED, WHITE, Canvas
from edge_signs.preprocess import Roi

ESC = 27
KEY_HELP = "keys: 0-5 save, b burst, q quit"


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
