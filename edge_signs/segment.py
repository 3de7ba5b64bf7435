"""The hand of a SIGNS photo, cut from its plain wall: a mask for the background-swap augmentation.

SIGNS is one light wall: a model trained on it alone can learn "wall" as part of
every sign. The wall is plain, so the hand can be found without a segmentation
model: pixels far (in Lab colour, chroma weighted above lightness, so the hand's
own shadow on the wall stays background) from the wall's colour at the top and
the upper sides (the arm enters from below) seed OpenCV's GrabCut, which follows
the hand's edge; the largest region is kept and grown by a pixel, so a thin finger
is never cut off (a cut finger changes the label). A mask whose size is not a
hand's (the wall was not plain, or the hand fills the frame) is all ones, and that
image keeps its own background.

numpy and OpenCV only; computed once per run, on every core (GrabCut releases the GIL):
972 SIGNS images took 5.5 s on one core of a 2-core AMX Xeon and 2.9 s on both (docs/training.md).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from edge_signs import config
from edge_signs.log import Log

HAND_FRACTION = (0.06, 0.75)  # a mask outside this share of the image is not trusted
LIGHTNESS_WEIGHT = 0.15  # shadows differ from the wall in lightness, skin in colour
BORDER_PX = 3
WALL_ROWS = 0.75  # the side strips that sample the wall stop above the arm
SECONDS_PER_IMAGE = 0.006  # on one core, for the time the progress line announces (measured as above)


def wall_distance(rgb: np.ndarray) -> np.ndarray:
    """Per pixel, how far its colour is from the wall's (the median of the top and upper side strips)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    rows = int(rgb.shape[0] * WALL_ROWS)
    border = np.concatenate([lab[:BORDER_PX].reshape(-1, 3), lab[:rows, :BORDER_PX].reshape(-1, 3), lab[:rows, -BORDER_PX:].reshape(-1, 3)])
    d = lab - np.median(border, axis=0)
    return np.sqrt(LIGHTNESS_WEIGHT * d[..., 0] ** 2 + d[..., 1] ** 2 + d[..., 2] ** 2)


def hand_mask(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (H, W) in {0, 1}: 1 on the hand (and arm), 0 on the wall."""
    d8 = np.clip(wall_distance(rgb) * 4, 0, 255).astype(np.uint8)
    threshold, _ = cv2.threshold(cv2.GaussianBlur(d8, (3, 3), 0), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    seeds = np.full(rgb.shape[:2], cv2.GC_PR_BGD, np.uint8)
    seeds[d8 > threshold * 0.6] = cv2.GC_PR_FGD
    seeds[d8 > threshold * 1.5] = cv2.GC_FGD
    seeds[d8 < threshold * 0.25] = cv2.GC_BGD
    seeds[:2] = np.where(seeds[:2] == cv2.GC_FGD, cv2.GC_PR_FGD, cv2.GC_BGD)  # the top rows are wall unless clearly hand
    try:
        cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # no pixel of one kind: nothing to separate
        return np.ones(rgb.shape[:2], np.float32)
    mask = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.uint8)
    count, regions, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count > 1:
        mask = (regions == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])).astype(np.uint8)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    share = mask.mean()
    if not HAND_FRACTION[0] <= share <= HAND_FRACTION[1]:
        return np.ones(rgb.shape[:2], np.float32)
    return mask.astype(np.float32)


def hand_masks(images: np.ndarray, log: Log | None = None) -> np.ndarray:
    """Masks of a stack of uint8 RGB images (N, H, W, 3) -> float32 (N, H, W, 1)."""
    cores = config.available_cores()
    if log:
        log(f"finding the hand in {len(images)} images for the augmentation (about {len(images) * SECONDS_PER_IMAGE / cores:.0f} s)")
    with ThreadPoolExecutor(cores) as pool:
        return np.stack(list(pool.map(hand_mask, images)))[..., None]
