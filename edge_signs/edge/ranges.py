"""The allowed values of the number options, said once: the options check them, click shows them.

``Range.check`` is what an options class calls in ``__post_init__`` (a one-line
EdgeSignsError), and the command line builds its click types from the same object
(``edge_signs.cli``), so a bound is never written twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from edge_signs import config
from edge_signs.errors import EdgeSignsError


@dataclass(frozen=True)
class Range:
    """Numbers from ``low`` to ``high`` (either may be open-ended); finite always; whole numbers with ``integer``."""

    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"> {self.low:g}" if self.low_open else f"at least {self.low:g}"
        return f"at most {self.high:g}" if self.high is not None else "a finite number"

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high

    def check(self, flag: str, value) -> None:
        """A one-line error naming ``flag`` when ``value`` is outside the range (None is "not given": fine)."""
        if value is None or self.holds(value):
            return
        whole = self.integer and isinstance(value, float) and math.isfinite(value) and value != int(value)
        raise EdgeSignsError(f"{flag} must be {'a whole number ' if whole else ''}{self.describe()}, got {value}")


COUNT = Range(1, integer=True)  # --smoothing, --max-frames, --count, --threads, --width, --height
INDEX = Range(0, integer=True)  # --camera
RATE = Range(0, low_open=True)  # --fps
SECONDS = Range(0)  # --interval, --countdown, --status-every, --hold
PROBABILITY = Range(0, 1)  # --threshold
JPEG_QUALITY = Range(1, 100, integer=True)  # --quality
CROP_SIZE = Range(8, config.COLLECT_MAX_SIZE, integer=True)  # collect's --size, pixels
