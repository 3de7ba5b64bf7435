"""Perturbations: names, shape, dtype, range, determinism and the direction of each effect,
on the real SIGNS test images."""

from __future__ import annotations

import numpy as np
import pytest

from edge_signs import config, perturb
from edge_signs.errors import EdgeSignsError

# Written out, not read from the module: the report's rows, in order. Adding, renaming or
# dropping a perturbation changes every robustness report, so it has to change this list too.
ALL = ["brightness_up", "brightness_down", "contrast_low", "contrast_high", "color_cast_warm", "color_cast_cool",
       "sensor_noise", "blur", "jpeg", "mirror", "shift", "rotate", "scale"]
RANDOM = ("sensor_noise", "shift", "rotate", "scale")


@pytest.fixture(scope="module")
def images(signs) -> np.ndarray:
    x = signs.test.x
    assert x.dtype == np.uint8 and x.shape[1:] == (config.IMAGE_SIZE, config.IMAGE_SIZE, 3)
    return x


def test_names_in_report_order():
    assert perturb.names() == ALL
    assert perturb.names() is not perturb.names()  # a fresh list: callers may not edit the table through it


@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_range_and_changes(images, name):
    before = images.copy()
    out = perturb.apply(name, images, seed=0)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert out.min() >= 0 and out.max() <= 255
    assert np.array_equal(images, before), "input was modified"
    diff = np.abs(out.astype(np.int16) - images.astype(np.int16))
    assert diff.mean() > 1.0, f"{name} barely changes the images"
    changed = diff.reshape(len(images), -1).max(axis=1) > 0
    assert changed.all(), f"{name} leaves {int((~changed).sum())} images untouched"


@pytest.mark.parametrize("name", ALL)
def test_deterministic_for_a_seed(images, name):
    a = perturb.apply(name, images, seed=3)
    b = perturb.apply(name, images, seed=3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("name", RANDOM)
def test_random_ones_depend_on_seed(images, name):
    assert not np.array_equal(perturb.apply(name, images, seed=0), perturb.apply(name, images, seed=1))


@pytest.mark.parametrize("name", [n for n in ALL if n not in RANDOM])
def test_fixed_ones_ignore_the_seed(images, name):
    assert np.array_equal(perturb.apply(name, images[:8], seed=0), perturb.apply(name, images[:8], seed=1))


@pytest.mark.parametrize("name", ALL)
def test_mild_not_destructive(images, name):
    """Realistic severity: the image stays recognisably the same picture."""
    out = perturb.apply(name, images).astype(np.float32)
    x = images.astype(np.float32)
    if name == "mirror":
        x = x[:, :, ::-1]
    corr = np.mean([np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(x, out)])
    assert corr > 0.75, f"{name}: mean correlation with the original {corr:.2f}"


def _spot_offsets(out: np.ndarray) -> np.ndarray:
    """(dx, dy) of each image's bright spot from the image centre."""
    w = out[..., 0].astype(np.float64)
    w = np.where(w > 60, w, 0.0)
    ys, xs = np.mgrid[: out.shape[1], : out.shape[2]]
    c = (out.shape[1] - 1) / 2
    return np.stack([(w * xs).sum((1, 2)) / w.sum((1, 2)) - c, (w * ys).sum((1, 2)) / w.sum((1, 2)) - c], axis=1)


def test_geometric_severities_within_bounds():
    """A bright spot 16 px right of centre moves as far as the documented ranges say."""
    spots = np.zeros((200, 64, 64, 3), np.uint8)
    spots[:, 30:34, 46:50] = 255
    base = _spot_offsets(spots)[0]

    moved = _spot_offsets(perturb.apply("shift", spots)) - base
    dist = np.hypot(*moved.T)
    assert np.abs(moved).max() <= 4.2 and dist.min() >= 1.3 and dist.max() >= 3.5

    after = _spot_offsets(perturb.apply("rotate", spots))
    angles = np.degrees(np.arctan2(after[:, 1], after[:, 0]) - np.arctan2(base[1], base[0]))
    assert np.abs(angles).max() <= 15.5 and np.abs(angles).min() >= 4.5
    assert (angles > 0).any() and (angles < 0).any()

    ratios = np.hypot(*_spot_offsets(perturb.apply("scale", spots)).T) / np.hypot(*base)
    assert 0.89 <= ratios.min() and ratios.max() <= 1.11
    assert np.abs(ratios - 1).min() >= 0.02 and (ratios < 1).any() and (ratios > 1).any()


def test_mirror_twice_is_identity(images):
    once = perturb.apply("mirror", images)
    assert not np.array_equal(once, images)
    assert np.array_equal(perturb.apply("mirror", once), images)
    assert np.array_equal(once[:, :, 0], images[:, :, -1])


def test_jpeg_keeps_channel_order():
    red = np.zeros((2, config.IMAGE_SIZE, config.IMAGE_SIZE, 3), np.uint8)
    red[..., 0] = 220
    out = perturb.apply("jpeg", red).astype(np.float32)
    r, g, b = out[..., 0].mean(), out[..., 1].mean(), out[..., 2].mean()
    assert r > 180 and g < 40 and b < 40, (r, g, b)


def test_jpeg_keeps_colours_of_real_images(images):
    out = perturb.apply("jpeg", images).astype(np.float32)
    channel_means = out.mean(axis=(0, 1, 2))
    assert np.allclose(channel_means, images.astype(np.float32).mean(axis=(0, 1, 2)), atol=3)


def test_brightness_direction(images):
    mean = images.mean()
    assert perturb.apply("brightness_up", images).mean() > mean + 20
    assert perturb.apply("brightness_down", images).mean() < mean * 0.7


def test_contrast_direction(images):
    std = images.astype(np.float32).std(axis=(1, 2, 3)).mean()
    low = perturb.apply("contrast_low", images).astype(np.float32).std(axis=(1, 2, 3)).mean()
    high = perturb.apply("contrast_high", images).astype(np.float32).std(axis=(1, 2, 3)).mean()
    assert low < std < high


def test_color_casts_direction(images):
    def red_minus_blue(x):
        x = x.astype(np.float32)
        return (x[..., 0] - x[..., 2]).mean()

    base = red_minus_blue(images)
    assert red_minus_blue(perturb.apply("color_cast_warm", images)) > base + 5
    assert red_minus_blue(perturb.apply("color_cast_cool", images)) < base - 5


def test_unknown_name_lists_known_ones(images):
    with pytest.raises(EdgeSignsError) as info:
        perturb.apply("fog", images)
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert "fog" in message
    for name in ALL:
        assert name in message


def test_bad_input_is_an_edge_signs_error():
    with pytest.raises(EdgeSignsError):
        perturb.apply("blur", np.zeros((2, 64, 64, 3), np.float32))
    with pytest.raises(EdgeSignsError):
        perturb.apply("blur", np.zeros((64, 64, 3), np.uint8))
