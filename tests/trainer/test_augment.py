"""Augmentation for other people's hands: the hand's mask, the background swap, colour, erasing,
and training with --extra folders and --select-on choosing the epoch (a real, tiny run)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs.config import RECIPES  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.preprocess import to_model_input  # noqa: E402
from edge_signs.segment import hand_mask, hand_masks  # noqa: E402
from edge_signs.trainer import tf  # noqa: E402
from edge_signs.trainer.augment import HAND_GAIN, HAND_TINT, augmenter, colour_fields, hand_tone, rotate, swap_background  # noqa: E402
from edge_signs.trainer.extra import describe_choice, replaces  # noqa: E402
from edge_signs.trainer.framing import close_up, resize_hand  # noqa: E402
from edge_signs.trainer.train import TrainOptions, train  # noqa: E402
from tests.conftest import HANDS_DIR, REPO, SLD_DEV_DIR, run_cli  # noqa: E402

VARIED = RECIPES["varied"]
WEBCAM = HANDS_DIR / "train"
SLD_DEV = SLD_DEV_DIR


def test_the_hand_is_found_on_signs_walls(signs):
    masks = hand_masks(signs.test.x)
    share = masks.mean(axis=(1, 2, 3))
    trusted = share < 1.0
    assert masks.shape == (120, 64, 64, 1) and set(np.unique(masks)) <= {0.0, 1.0}
    assert trusted.mean() >= 0.9  # a plain wall: nearly every photo separates
    assert 0.15 <= np.median(share[trusted]) <= 0.45  # a hand and forearm, not the wall
    # The wall is what the mask leaves: the top corners (the arm enters from below) are background.
    assert masks[trusted][:, :4, :4].mean() < 0.1
    # The hand is skin-coloured, the wall is not: more red than blue inside the mask, less outside.
    rgb = signs.test.x[trusted].astype(np.float32)
    inside = masks[trusted][..., 0] == 1
    warmth = rgb[..., 0] - rgb[..., 2]
    assert warmth[inside].mean() > warmth[~inside].mean() + 10


def _lean_degrees(mask: np.ndarray) -> float:
    """How far the hand-and-arm mask's long axis is from upright, in degrees (0: upright, 90: level)."""
    m = cv2.moments(mask.astype(np.uint8))
    axis = 0.5 * np.degrees(np.arctan2(2 * m["mu11"], m["mu20"] - m["mu02"]))  # from the x axis, either way
    return 90 - abs(axis)


def test_upright_turns_signs_leaning_hands_upright_mirrored_or_not(signs):
    x = signs.train.x[np.isin(signs.train.y, [1, 2])][:48]
    masks = hand_masks(x)
    before = np.array([_lean_degrees(m) for m in masks[..., 0]])
    only_upright = dataclasses.replace(RECIPES["camera"], rotation=0.0, shift=0.0, zoom_in=0.0, zoom_out=0.0, upright=1.0)
    assert only_upright.needs_masks
    out, _ = augmenter(0, only_upright)(tf.constant(np.concatenate([to_model_input(x), masks], -1)), tf.zeros(len(x)))
    out = out.numpy()
    assert out.shape == (48, 64, 64, 3) and 0 <= out.min() and out.max() <= 1
    after = np.array([_lean_degrees(m) for m in hand_masks(np.round(out * 255).astype(np.uint8))[..., 0]])
    leaning = before > 20
    assert leaning.mean() > 0.3  # many of SIGNS' 1s and 2s lean
    # each turned its own way (the mirrored ones too), and one already upright is left so
    assert np.median(after[leaning]) < 12 and np.median(after[~leaning]) < 12
    # rotate() turns counter-clockwise as seen: a vertical bar turned 90 degrees is level
    bar = np.zeros((1, 64, 64, 1), np.float32)
    bar[0, 8:56, 30:34] = 1
    level = rotate(tf.constant(bar), tf.constant([90.0])).numpy()[0, ..., 0]
    assert level[30:34, 8:56].mean() > 0.9 and level[8:28, 30:34].mean() < 0.1


def test_close_up_frames_the_hand_so_that_it_fills_the_frame(signs):
    x = signs.test.x[:48]
    masks = hand_masks(x)
    masks[0] = 1.0  # a photo whose wall was not found: no hand to frame
    rgba = np.concatenate([to_model_input(x), masks], -1)
    out = close_up(tf.constant(rgba), tf.ones(48, tf.bool), tf.fill([48], 1.2)).numpy()
    assert out.shape == rgba.shape and np.allclose(out[0], rgba[0])
    trusted = masks.mean(axis=(1, 2, 3)) < 1.0
    trusted[0] = False
    before, after = masks[trusted].mean(axis=(1, 2, 3)), (out[trusted][..., 3] > 0.5).mean(axis=(1, 2))
    assert np.median(after / before) > 1.3  # hand and forearm: a quarter of the frame; framed, the hand fills more
    assert (out[trusted][:, :2, :, 3] > 0.5).mean() < 0.05  # the fingertips are inside, not cut by the top edge
    # the wrist and arm go off the bottom edge, as in a close-up from a camera
    assert np.median((out[trusted][:, -3:, :, 3] > 0.5).mean(axis=(1, 2))) > 0.1
    untouched = close_up(tf.constant(rgba), tf.zeros(48, tf.bool), tf.fill([48], 1.2)).numpy()
    assert np.allclose(untouched, rgba, atol=1e-6)
    only_close_up = dataclasses.replace(RECIPES["camera"], close_up=1.0)
    assert only_close_up.needs_masks
    images, _ = augmenter(0, only_close_up)(tf.constant(rgba), tf.zeros(48))
    assert images.shape == (48, 64, 64, 3)


def test_resize_hand_gives_every_sign_the_same_size(signs):
    ones_and_fives = np.isin(signs.train.y, [1, 5])
    x, y = signs.train.x[ones_and_fives][::6], signs.train.y[ones_and_fives][::6]
    masks = hand_masks(x)
    trusted = masks.mean(axis=(1, 2, 3)) < 1.0
    x, y, masks = x[trusted], y[trusted], masks[trusted]
    share = masks.mean(axis=(1, 2, 3))
    assert np.median(share[y == 5]) - np.median(share[y == 1]) > 0.1  # SIGNS: the more fingers, the larger the hand
    rgba = np.concatenate([to_model_input(x), masks], -1)
    out = resize_hand(tf.constant(rgba), tf.ones(len(y), tf.bool), tf.fill([len(y)], 0.42)).numpy()
    after = (out[..., 3] > 0.5).mean(axis=(1, 2))
    assert abs(np.median(after[y == 5]) - np.median(after[y == 1])) < 0.05  # the size says nothing of the sign
    assert 0.36 < np.median(after) < 0.48
    assert (out[:, :2, :, 3] > 0.5).mean() < 0.05  # nearer, but the fingertips stay in the frame


def test_a_photo_without_a_wall_keeps_its_own_background():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    flat = np.full((64, 64, 3), 200, np.uint8)
    assert hand_mask(noise).min() == 1.0 and hand_mask(flat).min() == 1.0


def test_the_hand_survives_the_background_swap(signs):
    rgb = to_model_input(signs.test.x[:16])
    masks = hand_masks(signs.test.x[:16])
    gen = tf.random.Generator.from_seed(0)
    out = swap_background(gen, tf.constant(np.concatenate([rgb, masks], -1)), probability=1.0).numpy()
    assert out.shape == (16, 64, 64, 3) and 0 <= out.min() and out.max() <= 1
    for image, original, mask in zip(out, rgb, masks[..., 0]):
        if mask.min() == 1:  # not separated: left as it was
            assert np.allclose(image, original)
            continue
        core = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        wall = ~cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        assert np.allclose(image[core], original[core], atol=1e-6)  # every hand pixel kept
        assert np.abs(image[wall] - original[wall]).mean() > 0.05  # the wall replaced


def test_hand_tone_changes_the_hand_alone_lighter_or_darker(signs):
    x = signs.test.x[:32]
    rgb, masks = to_model_input(x), hand_masks(x)
    gen = tf.random.Generator.from_seed(0)
    out = hand_tone(gen, tf.constant(np.concatenate([rgb, masks], -1)), probability=1.0).numpy()
    assert out.shape == (32, 64, 64, 4) and 0 <= out.min() and out.max() <= 1
    assert np.array_equal(out[..., 3:], masks)  # the mask rides on for the background swap
    brightness = []
    for image, original, mask in zip(out[..., :3], rgb, masks[..., 0]):
        if mask.min() == 1:
            continue
        core = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        wall = ~cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert np.allclose(image[wall], original[wall], atol=1e-6)  # the wall kept
        unclipped = core & (image.max(-1) < 1.0) & (original.min(-1) > 0.1)
        ratio = image[unclipped] / original[unclipped]
        low, high = HAND_GAIN[0] * HAND_TINT[0], HAND_GAIN[1] * HAND_TINT[1]
        assert low - 1e-4 <= ratio.min() and ratio.max() <= high + 1e-4
        brightness.append(image[core].mean() / original[core].mean())
    assert len(brightness) >= 24 and min(brightness) < 0.85 and max(brightness) > 1.15  # lighter and darker hands
    kept = hand_tone(gen, tf.constant(np.concatenate([rgb, masks], -1)), probability=0.0).numpy()
    assert np.array_equal(kept[..., :3], rgb)
    with pytest.raises(EdgeSignsError, match="hand_tone must be a number in"):
        TrainOptions(overrides={"hand_tone": 1.5}).validate()


def test_backgrounds_vary_within_and_between_batches():
    gen = tf.random.Generator.from_seed(1)
    fields = np.concatenate([colour_fields(gen, 8).numpy() for _ in range(4)])
    assert fields.shape == (32, 64, 64, 3) and fields.min() >= 0 and fields.max() <= 1
    means = fields.mean(axis=(1, 2))
    assert means.std(axis=0).min() > 0.08  # other colours, image to image
    assert fields.std(axis=(1, 2)).mean() > 0.02  # not only plain walls


def test_the_varied_recipe_keeps_labels_shapes_and_ranges(signs):
    x, y = signs.train.x[:64], signs.train.y[:64]
    rgba = tf.constant(np.concatenate([to_model_input(x), hand_masks(x)], -1))
    onehot = tf.one_hot(y, 6)
    images, labels = augmenter(0, VARIED)(rgba, onehot)
    images = images.numpy()
    assert images.shape == (64, 64, 64, 3) and images.min() >= 0 and images.max() <= 1
    assert np.array_equal(labels.numpy().argmax(1), y)
    assert np.abs(images - x / 255.0).mean() > 0.05
    gray = augmenter(0, dataclasses.replace(VARIED, grayscale=1.0, background_swap=0.0, erase=0.0))(rgba[..., :3], onehot)[0].numpy()
    assert np.allclose(gray[..., 0], gray[..., 1], atol=1e-5) and np.allclose(gray[..., 1], gray[..., 2], atol=1e-5)


def test_extra_and_select_on_folders_are_checked_before_training(tmp_path):
    with pytest.raises(EdgeSignsError, match="not a folder"):
        TrainOptions(extra=[str(tmp_path / "missing")]).validate()
    with pytest.raises(EdgeSignsError, match="recipe hue must be a number in"):
        TrainOptions(overrides={"hue": 0.9}).validate()
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"")
    result = run_cli("train", "--out", tmp_path / "run", "--extra", tmp_path / "flat", "--limit", 24, "--epochs", 1)
    assert result.returncode == 1 and "flat: no class folders (expected" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr


def _copy_some(source: Path, dest: Path, per_class: int) -> Path:
    for label in "012345":
        (dest / label).mkdir(parents=True)
        for f in sorted((source / label).iterdir())[:per_class]:
            shutil.copy(f, dest / label / f.name)
    return dest


# Epochs 31-60 of a 60-epoch `varied` run (seed 0) with --select-on sld-dev: SIGNS validation, sld-dev.
VARIED_VAL = [0.889, 0.935, 0.907, 0.926, 0.926, 0.954, 0.944, 0.944, 0.917, 0.944, 0.963, 0.907, 0.981, 0.972, 0.972,
              0.972, 0.991, 0.991, 0.981, 0.972, 0.991, 0.991, 0.991, 0.981, 0.981, 0.981, 0.991, 0.981, 0.981, 0.991]
VARIED_DEV = [0.415, 0.766, 0.498, 0.558, 0.761, 0.523, 0.666, 0.687, 0.629, 0.707, 0.604, 0.571, 0.705, 0.66, 0.732,
              0.718, 0.71, 0.763, 0.716, 0.608, 0.649, 0.687, 0.734, 0.668, 0.705, 0.697, 0.685, 0.699, 0.697, 0.716]


def _kept(val, dev, first=31, kept=None, **floor):
    for epoch, (v, d) in enumerate(zip(val, dev), start=first):
        candidate = {"epoch": epoch, "accuracy": d, "val_accuracy": v}
        kept = candidate if replaces(candidate, kept, **floor) else kept
    return kept


def test_the_epoch_kept_for_other_hands_still_knows_signs():
    assert _kept(VARIED_VAL, VARIED_DEV)["epoch"] == 48  # 0.991 on SIGNS validation, 0.763 on sld-dev
    assert _kept(VARIED_VAL, VARIED_DEV, floor=0.0)["epoch"] == 32  # the folder alone: 0.935 on SIGNS validation
    # while no epoch reaches the floor, the best on SIGNS validation is kept; the first that does replaces it
    assert _kept([0.90, 0.95, 0.93], [0.8, 0.5, 0.9])["epoch"] == 32
    assert _kept([0.90, 0.95, 0.93, 0.98], [0.8, 0.5, 0.9, 0.4])["epoch"] == 34
    # a choice a resumed run finds from before the floor (no validation accuracy recorded) gives way
    assert replaces({"epoch": 40, "accuracy": 0.1, "val_accuracy": 0.98}, {"epoch": 35, "accuracy": 0.9})


def test_the_choice_says_what_chose_it():
    by, line = describe_choice({"epoch": 48, "accuracy": 0.763, "val_accuracy": 0.991, "folder": "sld-dev"}, 60)
    assert "accuracy on sld-dev (--select-on), from epoch 31 on" in by and ">= 0.97" in by
    assert line == "kept epoch 48 of 60: the best on sld-dev (0.763) of those with SIGNS validation >= 0.97"
    # a run that never reached the floor: SIGNS validation chose, and the run says so rather than crediting the folder
    by, line = describe_choice({"epoch": 56, "accuracy": 0.680, "val_accuracy": 0.935, "folder": "sld-dev"}, 60)
    assert by.startswith("SIGNS validation accuracy, from epoch 31 on: no epoch reached 0.97") and "only broke ties" in by
    assert line.startswith("warning: no epoch from 31 on reached") and "kept epoch 56 of 60, the best on SIGNS validation (0.935; sld-dev: 0.680)" in line


@pytest.mark.slow
def test_a_run_with_extra_folders_and_the_epoch_chosen_on_other_hands(tmp_path, signs):
    extra = _copy_some(WEBCAM, tmp_path / "webcam", 12)
    dev = _copy_some(SLD_DEV, tmp_path / "dev", 4)
    lines: list[str] = []
    run = tmp_path / "run"
    options = TrainOptions(recipe="varied", limit=24, extra=[str(extra)], select_on=str(dev), overrides={"epochs": 2})
    result = train(options, run, data=signs, verbose=0, log=lines.append)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["checkpoint"]["epoch"] == 2 and "--select-on" in metrics["checkpoint"]["by"]
    assert 0 <= metrics["checkpoint"]["val_accuracy"] <= 1
    assert (metrics["checkpoint"]["val_accuracy"] >= 0.97) == ("among epochs with SIGNS validation accuracy >= 0.97" in metrics["checkpoint"]["by"])
    assert 0 <= metrics["checkpoint"]["accuracy"] <= 1 and metrics["options"]["extra"] == [str(extra)]
    assert "webcam" in result["extra_heldout"] and result["extra_heldout"]["webcam"]["images"] > 0
    assert any(line.startswith("finding the hand in ") for line in lines)
    assert any("and " in line and "from " + str(extra) in line for line in lines)


def test_show_augmentation_draws_the_recipe_on_signs_images(tmp_path, signs_dir):
    out = tmp_path / "seen.png"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "show_augmentation.py"), "--data", str(signs_dir), "--per-sign", "1",
                           "--draws", "2", "--set", "upright=1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    grid = cv2.imread(str(out))
    assert grid.shape == (3 * 64, 6 * 64, 3)
    originals, first, second = grid[:64], grid[64:128], grid[128:]
    assert np.abs(first.astype(int) - originals).mean() > 5 and np.abs(first.astype(int) - second).mean() > 5  # each draw its own
    bad = subprocess.run([sys.executable, str(REPO / "tools" / "show_augmentation.py"), "--set", "upright=2", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 1 and "upright must be a number in [0, 1]" in bad.stderr and "Traceback" not in bad.stderr


def test_vignette_darkens_the_corners_against_the_middle(signs):
    x = to_model_input(signs.test.x[:32])
    shaded_only = dataclasses.replace(RECIPES["camera"], rotation=0.0, shift=0.0, zoom_in=0.0, zoom_out=0.0, vignette=1.0)
    plain_only = dataclasses.replace(shaded_only, vignette=0.0)
    shaded, _ = augmenter(0, shaded_only)(tf.constant(x), tf.zeros(32))
    plain, _ = augmenter(0, plain_only)(tf.constant(x), tf.zeros(32))  # the same draws of everything else
    shaded, plain = shaded.numpy(), plain.numpy()
    assert shaded.shape == (32, 64, 64, 3) and 0 <= shaded.min() and shaded.max() <= 1
    corners = np.concatenate([shaded[:, :8, :8], shaded[:, :8, -8:], shaded[:, -8:, :8], shaded[:, -8:, -8:]], 1) - \
        np.concatenate([plain[:, :8, :8], plain[:, :8, -8:], plain[:, -8:, :8], plain[:, -8:, -8:]], 1)
    middle = shaded[:, 24:40, 24:40] - plain[:, 24:40, 24:40]
    assert corners.mean() < -0.03 and middle.mean() > 0.0  # the light falls off toward the edge
