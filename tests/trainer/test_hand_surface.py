"""The hand-surface augmentation (recipe field hand_surface): a hand keeps its outline and takes another hand's surface."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs.config import RECIPES  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.preprocess import to_model_input  # noqa: E402
from edge_signs.segment import hand_masks  # noqa: E402
from edge_signs.trainer import tf  # noqa: E402
from edge_signs.trainer.augment import augmenter, hand_boxes, hand_surface  # noqa: E402
from edge_signs.trainer.train import TrainOptions  # noqa: E402

WALL, SKIN = (0.9, 0.9, 0.85), (0.6, 0.4, 0.3)


def _photo(top: int, left: int, bottom: int, right: int, colours=(SKIN,)) -> np.ndarray:
    """A 64x64 RGB + mask image: a plain wall and a rectangular hand, split into vertical bands of ``colours``."""
    image = np.zeros((64, 64, 4), np.float32)
    image[..., :3] = WALL
    bands = np.array_split(np.arange(left, right), len(colours))
    for band, colour in zip(bands, colours):
        image[top:bottom, band[0]:band[-1] + 1, :3] = colour
    image[top:bottom, left:right, 3] = 1.0
    return image


def _swap(*images: np.ndarray, probability: float = 1.0) -> np.ndarray:
    """Each image's hand given the surface of the image before it in the batch."""
    return hand_surface(tf.random.Generator.from_seed(0), tf.constant(np.stack(images)), probability).numpy()


def test_the_boxes_are_the_hands_extent():
    boxes = hand_boxes(tf.constant(np.stack([_photo(10, 20, 41, 36), _photo(0, 0, 64, 64)])[..., 3:])).numpy()
    assert np.allclose(boxes[0], np.array([10, 20, 40, 35]) / 63)
    assert np.allclose(boxes[1], [0, 0, 1, 1])


def test_the_hand_takes_the_donors_surface_stretched_onto_its_own_box():
    # The donor's hand is red on its left half, blue on its right and much larger; this hand is one plain skin tone.
    donor = _photo(4, 4, 60, 60, colours=((1.0, 0.0, 0.0), (0.0, 0.0, 1.0)))
    hand = _photo(16, 24, 48, 40)
    out = _swap(donor, hand)[1]  # the second image's donor is the first
    core = (slice(19, 45), slice(27, 37))  # well inside the hand, where nothing is blended with its edge
    left, right = out[core[0], 27:31, :3], out[core[0], 33:37, :3]
    assert np.allclose(left, (1.0, 0.0, 0.0), atol=1e-4) and np.allclose(right, (0.0, 0.0, 1.0), atol=1e-4)
    assert np.array_equal(out[..., 3], hand[..., 3])  # the outline, and with it the sign, is the hand's own
    wall = hand[..., 3] == 0
    assert np.array_equal(out[wall, :3], hand[wall, :3])


def test_only_the_donors_hand_comes_along_not_its_wall():
    # The donor's hand is two green bars at the sides of its box with wall between them: there this hand keeps its own surface.
    donor = _photo(10, 10, 50, 50, colours=((0.0, 1.0, 0.0), WALL, (0.0, 1.0, 0.0)))
    donor[10:50, 24:37, 3] = 0.0
    hand = _photo(16, 16, 48, 48)
    out = _swap(donor, hand)[1]
    green = np.all(np.abs(out[..., :3] - (0.0, 1.0, 0.0)) < 1e-3, axis=-1)
    assert green[20:44, 18:24].all() and green[20:44, 41:46].all()
    middle = out[20:44, 30:35, :3]
    assert np.allclose(middle, SKIN, atol=1e-4)  # no donor wall pasted on the hand


def test_a_mask_that_was_not_trusted_neither_gives_nor_takes():
    whole = _photo(0, 0, 64, 64, colours=((0.0, 1.0, 0.0),))  # segment.py's mask where it found no wall: all ones
    hand = _photo(16, 24, 48, 40)
    out = _swap(hand, whole, hand)
    assert np.array_equal(out[1], whole) and np.array_equal(out[2], hand)  # took from no one, gave to no one


def test_on_signs_photos_the_hands_change_and_the_walls_stay(signs):
    x = signs.test.x[:32]
    rgb, masks = to_model_input(x), hand_masks(x)
    out = _swap(*np.concatenate([rgb, masks], -1))
    assert out.shape == (32, 64, 64, 4) and 0 <= out.min() and out.max() <= 1
    assert np.array_equal(out[..., 3:], masks)
    changed = 0
    for image, original, mask in zip(out[..., :3], rgb, masks[..., 0]):
        assert np.allclose(image[mask == 0], original[mask == 0], atol=1e-6)  # the wall kept, pixel for pixel
        core = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        changed += mask.min() == 0 and np.abs(image[core] - original[core]).mean() > 0.02
    assert changed >= 24  # nearly every trusted hand with a trusted neighbour
    kept = _swap(*np.concatenate([rgb, masks], -1), probability=0.0)
    assert np.array_equal(kept[..., :3], rgb)


def test_only_the_hands_that_signs_shows_from_the_back_take_a_surface(signs):
    # The same photos labelled 1 and labelled 5: the draws are the same, so only hand_surface can tell them apart.
    x = signs.train.x[:32]
    rgba = tf.constant(np.concatenate([to_model_input(x), hand_masks(x)], -1))
    recipe = dataclasses.replace(RECIPES["default"], hand_surface=1.0)
    assert recipe.needs_masks

    def augmented(label: int, share: float = 1.0):
        return augmenter(0, dataclasses.replace(recipe, hand_surface=share))(rgba, tf.one_hot([label] * 32, 6))[0].numpy()

    as_fives, as_ones = augmented(5), augmented(1)
    assert np.array_equal(as_fives, augmented(5, share=1e-9))  # a 5 keeps its palm: as if the share were nil
    assert np.abs(as_ones - as_fives).mean(axis=(1, 2, 3)).max() > 0.01  # a 1 takes another hand's surface
    assert as_ones.shape == (32, 64, 64, 3) and 0 <= as_ones.min() and as_ones.max() <= 1
    red, skin = _photo(4, 4, 60, 60, ((1.0, 0.0, 0.0),)), _photo(16, 24, 48, 40)
    out = hand_surface(tf.random.Generator.from_seed(0), tf.constant(np.stack([red, skin, red, skin])), 1.0,
                       tf.constant([False, True, False, False])).numpy()
    assert np.allclose(out[1, 32, 32, :3], (1.0, 0.0, 0.0))  # took its red donor's surface
    assert np.array_equal(out[3], skin) and np.array_equal(out[2], red)  # not to take: kept, though their donors differ
    with pytest.raises(EdgeSignsError, match="hand_surface must be a number in"):
        TrainOptions(overrides={"hand_surface": 1.5}).validate()
