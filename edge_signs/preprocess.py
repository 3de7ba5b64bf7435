"""The single definition of preprocessing, shared by training, calibration,
evaluation and the camera loop.

numpy and OpenCV only. A mismatch between how the model was trained and how the
camera feeds it is the classic way an int8 model silently collapses, so every
path goes through these functions:

    camera frame (BGR/BGRA/gray, any size) --frame_to_rgb--> uint8 RGB 64x64
    uint8 RGB --to_model_input--> float32 in [0, 1]          (Keras, float TFLite)
    uint8 RGB --quantize_input--> the interpreter's input dtype (any TFLite file)
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_signs import config
from edge_signs.errors import EdgeSignsError


def describe() -> dict:
    """What the preprocessing is, for metadata sidecars and reports."""
    return {
        "color": "RGB",
        "size": [config.IMAGE_SIZE, config.IMAGE_SIZE],
        "resize": "cv2.INTER_AREA to shrink, cv2.INTER_LINEAR to enlarge",
        "roi": "centered square (live: settable)",
        "scale": config.INPUT_SCALE,
        "offset": config.INPUT_OFFSET,
        "formula": "input = pixel * scale + offset",
    }


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 RGB pixels (..., 64, 64, 3) -> float32 model input."""
    return images.astype(np.float32) * np.float32(config.INPUT_SCALE) + np.float32(config.INPUT_OFFSET)


def resize_to_model(rgb: np.ndarray) -> np.ndarray:
    """Resize an image to the model's size; area interpolation avoids aliasing when shrinking."""
    size = config.IMAGE_SIZE
    if rgb.shape[:2] == (size, size):
        return rgb
    shrinking = rgb.shape[0] > size or rgb.shape[1] > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(rgb, (size, size), interpolation=interp)


@dataclass(frozen=True)
class Roi:
    """A square region of interest, in fractions of the frame.

    ``size`` is the side as a fraction of the frame's shorter side; ``cx``/``cy``
    the centre as fractions of width and height. The default is the largest
    centred square.
    """

    size: float = 1.0
    cx: float = 0.5
    cy: float = 0.5

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in pixels, clamped inside the frame."""
        side = max(1, int(round(min(height, width) * min(max(self.size, 0.0), 1.0))))
        x0 = int(round(self.cx * width - side / 2))
        y0 = int(round(self.cy * height - side / 2))
        x0 = min(max(x0, 0), width - side)
        y0 = min(max(y0, 0), height - side)
        return x0, y0, x0 + side, y0 + side


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Any camera frame (gray, gray with one channel, BGR, BGRA) -> BGR uint8."""
    if frame is None or not isinstance(frame, np.ndarray) or frame.size == 0:
        raise EdgeSignsError("frame: expected an image array, got nothing")
    if frame.dtype != np.uint8:
        raise EdgeSignsError(f"frame: expected uint8 pixels, got {frame.dtype}")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    raise EdgeSignsError(f"frame: expected HxW, HxWx1, HxWx3 or HxWx4 pixels, got shape {frame.shape}")


def square_resize(image: np.ndarray, roi: Roi = Roi()) -> np.ndarray:
    """The region of interest (a square) of an image, at the model's size; channels untouched."""
    x0, y0, x1, y1 = roi.box(*image.shape[:2])
    return resize_to_model(image[y0:y1, x0:x1])


def frame_to_rgb(frame: np.ndarray, roi: Roi = Roi()) -> np.ndarray:
    """Camera frame in OpenCV's layout -> uint8 RGB at the model's size."""
    # Resize before the colour swap: fewer pixels to convert.
    return cv2.cvtColor(square_resize(to_bgr(frame), roi), cv2.COLOR_BGR2RGB)


@dataclass(frozen=True)
class InputQuantization:
    """How a TFLite input tensor wants its values: dtype and (scale, zero point)."""

    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0

    @property
    def is_quantized(self) -> bool:
        return np.issubdtype(self.dtype, np.integer) and self.scale > 0

    @property
    def takes_raw_pixels(self) -> bool:
        """True when uint8 pixels are exactly the quantized input (scale 1/255, zero point 0)."""
        return (
            self.dtype == np.uint8
            and self.zero_point == round(-config.INPUT_OFFSET / config.INPUT_SCALE)
            and abs(self.scale / config.INPUT_SCALE - 1.0) < 1e-4
        )


def quantize_input(rgb: np.ndarray, quant: InputQuantization) -> np.ndarray:
    """uint8 RGB pixels -> the values a TFLite input tensor expects."""
    if quant.takes_raw_pixels:
        return np.ascontiguousarray(rgb, dtype=np.uint8)  # the fast path the int8 export chooses
    x = to_model_input(rgb)
    if not quant.is_quantized:
        return x.astype(quant.dtype, copy=False)
    info = np.iinfo(quant.dtype)
    q = np.round(x / np.float32(quant.scale)) + quant.zero_point
    return np.clip(q, info.min, info.max).astype(quant.dtype)
