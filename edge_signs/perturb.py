"""Camera-like perturbations for the robustness report.

numpy and OpenCV only. Each perturbation takes a uint8 RGB batch
``(N, 64, 64, 3)`` and a ``numpy.random.Generator`` and returns a new batch of
the same shape and dtype; the input is never modified. Severities are fixed and
mild on purpose: what a cheap webcam in another room does to a picture, not an
adversarial attack. Random perturbations draw their parameters per image from
the generator, so ``apply(name, images, seed)`` is deterministic for a seed.

All of them work in float32 and end with a clip to 0..255 and a round to uint8.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from edge_signs.errors import EdgeSignsError

Perturbation = Callable[[np.ndarray, np.random.Generator], np.ndarray]

# -- severities -----------------------------------------------------------------
BRIGHTNESS_OFFSET = 40.0  # levels added by brightness_up
BRIGHTNESS_GAIN = 0.6  # gain of brightness_down
CONTRAST_LOW = 0.6  # contrast_low: factor around the image mean
CONTRAST_HIGH = 1.4  # contrast_high: factor around the image mean
WARM_GAINS = (1.15, 1.0, 0.85)  # R, G, B gains of color_cast_warm
COOL_GAINS = (0.85, 1.0, 1.15)  # R, G, B gains of color_cast_cool
NOISE_SIGMA = 8.0  # levels, sensor_noise
BLUR_SIGMA = 1.0  # pixels, blur
JPEG_QUALITY = 30  # cv2.IMWRITE_JPEG_QUALITY, jpeg
# Random geometric ones draw a magnitude in [min, max] and a random sign or
# direction, so no image gets a near-identity draw that would dilute the report.
SHIFT_PX = (1.5, 4.0)  # shift distance in pixels (max about 6% of 64), any direction
ANGLE_DEG = (5.0, 15.0)  # |rotation| in degrees, either way
ZOOM = (0.03, 0.10)  # |zoom - 1|: factors in 0.90..0.97 or 1.03..1.10


class UnknownPerturbation(EdgeSignsError, KeyError):
    """A perturbation name that is not in PERTURBATIONS."""

    __str__ = Exception.__str__  # KeyError would quote the message


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 255.0)).astype(np.uint8)


def _f32(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32)


# -- photometric ------------------------------------------------------------------


def brightness_up(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Over-exposure: add BRIGHTNESS_OFFSET (40) levels to every pixel."""
    return _to_uint8(_f32(images) + BRIGHTNESS_OFFSET)


def brightness_down(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Under-exposure: multiply every pixel by BRIGHTNESS_GAIN (0.6)."""
    return _to_uint8(_f32(images) * BRIGHTNESS_GAIN)


def _contrast(images: np.ndarray, factor: float) -> np.ndarray:
    x = _f32(images)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)  # per image, over all channels: no colour shift
    return _to_uint8(mean + factor * (x - mean))


def contrast_low(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Washed out: scale each image's deviations from its mean by CONTRAST_LOW (0.6)."""
    return _contrast(images, CONTRAST_LOW)


def contrast_high(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Punchy: scale each image's deviations from its mean by CONTRAST_HIGH (1.4)."""
    return _contrast(images, CONTRAST_HIGH)


def _gains(images: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    return _to_uint8(_f32(images) * np.asarray(gains, dtype=np.float32))


def color_cast_warm(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Wrong white balance, warm (tungsten-like): R, G, B gains WARM_GAINS (1.15, 1.0, 0.85)."""
    return _gains(images, WARM_GAINS)


def color_cast_cool(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Wrong white balance, cool (shade-like): R, G, B gains COOL_GAINS (0.85, 1.0, 1.15)."""
    return _gains(images, COOL_GAINS)


def sensor_noise(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise, independent per pixel and channel, sigma NOISE_SIGMA (8 levels)."""
    noise = rng.normal(0.0, NOISE_SIGMA, size=images.shape).astype(np.float32)
    return _to_uint8(_f32(images) + noise)


def blur(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slight defocus: Gaussian blur with sigma BLUR_SIGMA (1 px), reflected border."""
    x = _f32(images)
    out = np.stack([cv2.GaussianBlur(im, (0, 0), BLUR_SIGMA, borderType=cv2.BORDER_REFLECT_101) for im in x])
    return _to_uint8(out)


def jpeg(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Heavy compression: JPEG encode at JPEG_QUALITY (30) and decode, channel order kept (RGB in, RGB out)."""
    out = np.empty_like(images)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for i, im in enumerate(images):
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(im, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise EdgeSignsError("jpeg: OpenCV could not encode the image")
        out[i] = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out


# -- geometric ----------------------------------------------------------------------


def mirror(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Horizontal flip: a left hand instead of a right one."""
    return images[:, :, ::-1].copy()


def _warp(images: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
    """Per-image affine warp, bilinear, border replicated (the background is plain)."""
    h, w = images.shape[1:3]
    x = _f32(images)
    out = np.stack(
        [cv2.warpAffine(im, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for im, m in zip(x, matrices)]
    )
    return _to_uint8(out)


def _signed(rng: np.random.Generator, bounds: tuple[float, float], n: int) -> np.ndarray:
    """n magnitudes uniform in bounds, each with a random sign."""
    return rng.uniform(*bounds, size=n) * rng.choice((-1.0, 1.0), size=n)


def _centre(images: np.ndarray) -> tuple[float, float]:
    h, w = images.shape[1:3]
    return (w - 1) / 2.0, (h - 1) / 2.0


def shift(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Off-centre hand: translate SHIFT_PX (1.5..4 px, so at most 4 px in x and y) in a random direction, border replicated."""
    n = len(images)
    dist, theta = rng.uniform(*SHIFT_PX, size=n), rng.uniform(0.0, 2 * np.pi, size=n)
    d = np.stack([dist * np.cos(theta), dist * np.sin(theta)], axis=1)
    return _warp(images, [np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]]) for dx, dy in d])


def rotate(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tilted camera or hand: rotate about the centre by ANGLE_DEG (5..15 deg) either way, border replicated."""
    c = _centre(images)
    angles = _signed(rng, ANGLE_DEG, len(images))
    return _warp(images, [cv2.getRotationMatrix2D(c, float(a), 1.0) for a in angles])


def scale(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Hand nearer or farther: zoom about the centre by 1 +- ZOOM (0.90..0.97 or 1.03..1.10), border replicated."""
    c = _centre(images)
    factors = 1.0 + _signed(rng, ZOOM, len(images))
    return _warp(images, [cv2.getRotationMatrix2D(c, 0.0, float(f)) for f in factors])


PERTURBATIONS: dict[str, Perturbation] = {
    f.__name__: f
    for f in (
        brightness_up,
        brightness_down,
        contrast_low,
        contrast_high,
        color_cast_warm,
        color_cast_cool,
        sensor_noise,
        blur,
        jpeg,
        mirror,
        shift,
        rotate,
        scale,
    )
}


def names() -> list[str]:
    """The perturbation names, in report order."""
    return list(PERTURBATIONS)


def apply(name: str, images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Apply one perturbation to a uint8 RGB batch (N, H, W, 3); deterministic for a seed."""
    try:
        fn = PERTURBATIONS[name]
    except KeyError:
        raise UnknownPerturbation(f"unknown perturbation '{name}' (known: {', '.join(PERTURBATIONS)})") from None
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise EdgeSignsError(f"perturb: expected uint8 RGB images (N, H, W, 3), got {images.dtype} {images.shape}")
    return fn(images, np.random.default_rng(seed))
