"""Charts for reports: confusion matrices and training curves.

numpy and OpenCV only -- no matplotlib -- so the same code runs on the trainer
and on a Raspberry Pi. Images are BGR uint8, written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from edge_signs.artifacts import atomic_path

FONT = cv2.FONT_HERSHEY_SIMPLEX
AA = cv2.LINE_AA
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (110, 110, 110)
GRID = (225, 225, 225)
HEAT_HIGH = (107, 48, 8)  # dark blue (BGR); low end of the ramp is white
TRAIN_COLOR = (180, 119, 31)  # blue
VAL_COLOR = (14, 127, 255)  # orange: distinct from blue for colour-blind readers too
SHIFT = 4  # sub-pixel bits for cv2 drawing, so curves are not staircased
_PANELS = (("accuracy", ("accuracy", "acc")), ("loss", ("loss",)))


# -- confusion matrix -----------------------------------------------------------


def _check_labels(matrix: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise ValueError(f"matrix {m.shape} does not match {len(labels)} labels")
    return m


def confusion_matrix_text(matrix: np.ndarray, labels: Sequence[str]) -> str:
    """A right-aligned plain-text table: header ``true\\pred``, one row per true class."""
    m = _check_labels(matrix, labels)
    corner = "true\\pred"
    cells = [[str(int(v)) for v in row] for row in m]
    width = max([len(str(lab)) for lab in labels] + [len(c) for row in cells for c in row])
    first = max(len(corner), *(len(str(lab)) for lab in labels))
    lines = [corner.ljust(first) + "".join(" " + str(lab).rjust(width) for lab in labels)]
    for lab, row in zip(labels, cells):
        lines.append(str(lab).ljust(first) + "".join(" " + c.rjust(width) for c in row))
    return "\n".join(lines) + "\n"


def _text_center(img: np.ndarray, text: str, cx: float, cy: float, scale: float,
                 color=BLACK, thickness: int = 1) -> None:
    (w, h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    cv2.putText(img, text, (int(cx - w / 2), int(cy + h / 2)), FONT, scale, color, thickness, AA)


def _text_vertical(img: np.ndarray, text: str, cx: int, cy: int, scale: float) -> None:
    """Text rotated 90 degrees counter-clockwise (cv2.putText only draws horizontally)."""
    (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    tile = np.full((h + base + 4, w + 4, 3), 255, np.uint8)
    cv2.putText(tile, text, (2, h + 2), FONT, scale, BLACK, 1, AA)
    tile = cv2.rotate(tile, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0, x0 = cy - tile.shape[0] // 2, cx - tile.shape[1] // 2
    img[y0:y0 + tile.shape[0], x0:x0 + tile.shape[1]] = np.minimum(
        img[y0:y0 + tile.shape[0], x0:x0 + tile.shape[1]], tile)


def _fit_scale(texts: Sequence[str], max_width: float, scale: float = 0.6, floor: float = 0.3) -> float:
    """Largest font scale <= ``scale`` at which every text fits ``max_width`` pixels."""
    while scale > floor and max(cv2.getTextSize(t, FONT, scale, 1)[0][0] for t in texts) > max_width:
        scale -= 0.05
    return scale


def _render_confusion(matrix: np.ndarray, labels: Sequence[str], title: str) -> np.ndarray:
    n = matrix.shape[0]
    cell = int(np.clip(360 // n, 24, 80))  # ~480 px for the 6 SIGNS classes
    labels = [str(lab) for lab in labels]
    lab_w = max(cv2.getTextSize(t, FONT, 0.55, 1)[0][0] for t in labels)
    # Column labels too wide for a cell are drawn vertically rather than shrunk to illegibility.
    vertical = _fit_scale(labels, cell - 4, 0.55) < 0.4
    left, top = 40 + lab_w + 12, 70
    foot = (lab_w + 12 if vertical else 24) + 36
    img = np.full((top + n * cell + foot, left + n * cell + 30, 3), 255, np.uint8)
    # Colour by row fraction (recall), so a rare class's errors are as visible as a common one's.
    rows = matrix.sum(axis=1, keepdims=True).astype(float)
    frac = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    num_scale = _fit_scale([str(int(v)) for v in matrix.ravel()], cell - 6, 0.6)
    high = np.array(HEAT_HIGH, float)
    for i in range(n):
        for j in range(n):
            x, y = left + j * cell, top + i * cell
            color = tuple(int(c) for c in 255 + frac[i, j] * (high - 255))
            cv2.rectangle(img, (x, y), (x + cell, y + cell), color, -1)
            ink = WHITE if frac[i, j] > 0.5 else BLACK
            _text_center(img, str(int(matrix[i, j])), x + cell / 2, y + cell / 2, num_scale, ink)
    bottom = top + n * cell
    cv2.rectangle(img, (left, top), (left + n * cell, bottom), GREY, 1)
    for k, lab in enumerate(labels):
        (w, h), _ = cv2.getTextSize(lab, FONT, 0.55, 1)
        cx = left + k * cell + cell // 2
        if vertical:
            _text_vertical(img, lab, cx, bottom + 8 + w // 2, 0.55)
        else:
            _text_center(img, lab, cx, bottom + 14, 0.55)
        cv2.putText(img, lab, (left - 8 - w, top + k * cell + (cell + h) // 2), FONT, 0.55, BLACK, 1, AA)
    _text_center(img, "predicted", left + n * cell / 2, img.shape[0] - 20, 0.6)
    _text_vertical(img, "true", 16, top + n * cell // 2, 0.6)
    if title:
        _text_center(img, title, img.shape[1] / 2, 28, _fit_scale([title], img.shape[1] - 20, 0.7), thickness=2)
    return img


def confusion_matrix_png(matrix: np.ndarray, labels: Sequence[str], path: str | os.PathLike,
                         title: str = "") -> Path:
    """Draw ``matrix`` as a heat map with counts and write it to ``path``; returns the path."""
    m = _check_labels(matrix, labels)
    return _write_image(_render_confusion(m, labels, title), path)


# -- training curves -------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, target: int = 5) -> np.ndarray:
    """Round tick values (1, 2 or 5 x 10^k steps) covering ``[lo, hi]``."""
    raw = (hi - lo) / target
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    return np.arange(math.floor(lo / step), math.ceil(hi / step) + 1) * step


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 1e-9 else "0"


def _draw_panel(img: np.ndarray, x0: int, y0: int, w: int, h: int, name: str,
                series: Sequence[tuple[str, np.ndarray, tuple]], epochs: int) -> None:
    """One chart: plot area, ticks, grid, curves and legend inside box (x0, y0, w, h)."""
    left, right, top, bottom = x0 + 64, x0 + w - 16, y0 + 40, y0 + h - 48
    cv2.putText(img, name, (left, y0 + 24), FONT, 0.65, BLACK, 2, AA)
    finite = np.concatenate([v[np.isfinite(v)] for _, v, _ in series] + [np.empty(0)])
    if finite.size == 0:  # nothing to plot: say so rather than draw empty axes
        _text_center(img, f"no {name} data", (left + right) / 2, (top + bottom) / 2, 0.6, GREY)
        return
    lo, hi = float(finite.min()), float(finite.max())
    pad = (hi - lo) * 0.05 or max(abs(hi) * 0.1, 0.05)  # flat curve or single point: open it up
    ylo, yhi = lo - pad, hi + pad
    if lo >= 0 and ylo < 0:  # losses and accuracies are never negative: keep 0 as the floor
        ylo = 0.0
    if name == "accuracy" and hi <= 1 and yhi > 1:
        yhi = 1.0
    yt = [v for v in _nice_ticks(ylo, yhi) if ylo - 1e-9 <= v <= yhi + 1e-9]
    xlo, xhi = (0.5, 1.5) if epochs == 1 else (1.0, float(epochs))
    sx = lambda e: left + (e - xlo) / (xhi - xlo) * (right - left)  # noqa: E731
    sy = lambda v: bottom - (v - ylo) / (yhi - ylo) * (bottom - top)  # noqa: E731
    for v in yt:
        y = int(round(sy(v)))
        cv2.line(img, (left, y), (right, y), GRID, 1, AA)
        (tw, th), _ = cv2.getTextSize(_fmt(v), FONT, 0.45, 1)
        cv2.putText(img, _fmt(v), (left - 6 - tw, y + th // 2), FONT, 0.45, BLACK, 1, AA)
    for e in _nice_ticks(1, max(epochs, 2), 8):
        if 1 <= e <= epochs and e == int(e):
            x = int(round(sx(e)))
            cv2.line(img, (x, top), (x, bottom), GRID, 1, AA)
            _text_center(img, str(int(e)), x, bottom + 14, 0.45)
    cv2.rectangle(img, (left, top), (right, bottom), GREY, 1)
    _text_center(img, "epoch", (left + right) / 2, bottom + 36, 0.5)
    for _label, values, color in series:
        pts = [(sx(i + 1), sy(v)) if np.isfinite(v) else None for i, v in enumerate(values)]
        _draw_series(img, pts, color, markers=epochs <= 25)
    legend_x = right
    for label, _, color in reversed(series):  # right-aligned, beside the panel title
        (tw, th), _ = cv2.getTextSize(label, FONT, 0.45, 1)
        legend_x -= tw + 30
        cv2.line(img, (legend_x, y0 + 19), (legend_x + 20, y0 + 19), color, 2, AA)
        cv2.putText(img, label, (legend_x + 24, y0 + 19 + th // 2), FONT, 0.45, BLACK, 1, AA)


def _draw_series(img: np.ndarray, pts: Sequence[tuple[float, float] | None], color: tuple,
                 markers: bool) -> None:
    """Connect consecutive finite points; a NaN/inf breaks the line instead of faking a value."""
    fix = lambda p: (int(round(p[0] * (1 << SHIFT))), int(round(p[1] * (1 << SHIFT))))  # noqa: E731
    for a, b in zip(pts, pts[1:]):
        if a is not None and b is not None:
            cv2.line(img, fix(a), fix(b), color, 2, AA, SHIFT)
    for k, p in enumerate(pts):
        isolated = (k == 0 or pts[k - 1] is None) and (k == len(pts) - 1 or pts[k + 1] is None)
        if p is not None and (markers or isolated):  # a lone point needs a marker to be seen
            cv2.circle(img, fix(p), 3 << SHIFT, color, -1, AA, SHIFT)


def _render_curves(history: Mapping[str, Sequence[float]], title: str) -> np.ndarray:
    width, height, head = 1000, 420, 36 if title else 0
    img = np.full((height, width, 3), 255, np.uint8)
    if title:
        _text_center(img, title, width / 2, 18, _fit_scale([title], width - 20, 0.7), thickness=2)
    for k, (name, keys) in enumerate(_PANELS):
        key = next((c for c in keys if c in history or f"val_{c}" in history), keys[0])
        series = [(lab, np.asarray(history[kk], dtype=float).reshape(-1), col)
                  for lab, kk, col in (("train", key, TRAIN_COLOR), ("validation", f"val_{key}", VAL_COLOR))
                  if kk in history]
        epochs = max([len(v) for _, v, _ in series] + [1])
        _draw_panel(img, k * width // 2, head, width // 2, height - head, name, series, epochs)
    return img


def training_curves_png(history: Mapping[str, Sequence[float]], path: str | os.PathLike,
                        title: str = "") -> Path:
    """Draw Keras-style ``history`` (accuracy/loss, train and ``val_``) as two panels.

    Other keys (``lr``, ...) are ignored; NaN/inf values are skipped; a missing
    metric gets a "no data" panel. Returns the path written.
    """
    return _write_image(_render_curves(history, title), path)


def _write_image(img: np.ndarray, path: str | os.PathLike) -> Path:
    """Atomically write ``img``; the suffix picks the format (.png expected)."""
    path = Path(path)
    if not cv2.haveImageWriter(str(path)):
        raise ValueError(f"OpenCV cannot write {path.name!r}: use a .png file name")
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise OSError(f"cv2.imwrite failed for {path}")
    return path
