"""Ground truth for videos: which frames show which sign (a labels CSV).

    start_frame,end_frame,label      0-based, inclusive; header optional
"""

from __future__ import annotations

import bisect
import csv
import os
from pathlib import Path
from typing import Optional, Sequence

from edge_signs.errors import EdgeSignsError


class LabelRanges:
    """Frame ranges with a known sign: ``lookup(frame)`` -> class index, or None (not scored)."""

    HEADER = ("start_frame", "end_frame", "label")

    def __init__(self, ranges: Sequence[tuple[int, int, int]], path: Optional[Path] = None):
        self.path = path  # the CSV they came from, for messages
        ranges = sorted(ranges)
        self._starts = [r[0] for r in ranges]  # plain lists: bisect on them allocates nothing per frame
        self._ends = [r[1] for r in ranges]
        self._labels = [r[2] for r in ranges]

    def __len__(self) -> int:
        return len(self._starts)

    def last_frame(self) -> int:
        """The last labelled frame (-1 when there are none)."""
        return max(self._ends, default=-1)

    def labelled_from(self, frame: int) -> int:
        """How many labelled frames come at or after ``frame``: what a video that ended there left unscored."""
        return sum(e - max(s, frame) + 1 for s, e in zip(self._starts, self._ends) if e >= frame)

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
    ranges: list[tuple[int, int, int, int]] = []  # start, end, label, row number (to name both rows of an overlap)
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EdgeSignsError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); save it as CSV UTF-8") from None
    for row_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if tuple(c.lower() for c in cells) == LabelRanges.HEADER:
            continue
        if len(cells) != 3:
            raise EdgeSignsError(f"{path}: row {row_no}: expected 3 columns start_frame,end_frame,label, got {len(cells)}")
        try:
            if not (cells[0].isascii() and cells[1].isascii()):
                raise ValueError
            start, end = int(cells[0]), int(cells[1])
        except ValueError:
            raise EdgeSignsError(f"{path}: row {row_no}: start_frame and end_frame must be integers, got {cells[0]!r}, {cells[1]!r}") from None
        if start < 0 or end < start:
            raise EdgeSignsError(f"{path}: row {row_no}: need 0 <= start_frame <= end_frame, got {start}, {end}")
        if cells[2] in labels:
            label = labels.index(cells[2])
        elif cells[2].isascii() and cells[2].isdigit() and int(cells[2]) < len(labels):
            label = int(cells[2])
        else:
            raise EdgeSignsError(f"{path}: row {row_no}: unknown label {cells[2]!r} (labels are {', '.join(labels)})")
        ranges.append((start, end, label, row_no))
    if not ranges:
        raise EdgeSignsError(f"{path}: no label rows (expected start_frame,end_frame,label)")
    ranges.sort()
    for (_, e0, _, r0), (s1, e1, _, r1) in zip(ranges, ranges[1:]):
        if s1 <= e0:
            first, second = sorted((r0, r1))
            raise EdgeSignsError(f"{path}: row {second}: frames {s1}..{min(e0, e1)} overlap the range of row {first}")
    return LabelRanges([r[:3] for r in ranges], path)
