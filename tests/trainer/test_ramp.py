"""The augmentation ramp (recipe fields augment_ramp and augment_cooldown): none at the first epoch, full after the
ramp's epochs, and falling to cooldown_strength over the last ones."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs import config  # noqa: E402
from edge_signs.config import RECIPES  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.preprocess import to_model_input  # noqa: E402
from edge_signs.segment import hand_masks  # noqa: E402
from edge_signs.trainer import keras, tf  # noqa: E402
from edge_signs.trainer import train as train_module  # noqa: E402
from edge_signs.trainer.augment import AugmentationRamp, augmentation_ramp, augmenter  # noqa: E402
from edge_signs.trainer.train import TrainOptions, train  # noqa: E402
from tests.faults import interrupted_after  # noqa: E402
from tests.fixtures.make_tiny_model import build  # noqa: E402

# Every switch on, at its largest, with no shift or zoom: what the ramp scales is all that changes an image but the mirror.
EVERYTHING = dataclasses.replace(RECIPES["default"], shift=0.0, zoom_in=0.0, zoom_out=0.0, rotation=30.0, upright=1.0, background_swap=1.0,
                                 hue=0.2, grayscale=1.0, erase=1.0, vignette=1.0, hand_tone=1.0,
                                 hand_surface=1.0)


def _grey(images: np.ndarray) -> np.ndarray:
    """Whether each image is grey but for the erased patch (at most 4 % of it, in a random colour)."""
    return (np.abs(images - images[..., :1]).max(axis=-1) < 1e-5).mean(axis=(1, 2)) > 0.9


def test_at_the_first_epoch_only_the_mirror_is_left_and_then_it_grows(signs):
    x = signs.train.x[:48]
    rgba = tf.constant(np.concatenate([to_model_input(x), hand_masks(x)], -1))
    ramp = AugmentationRamp(4)
    augment = augmenter(0, EVERYTHING, ramp)
    labels = tf.one_hot(signs.train.y[:48], 6)

    ramp.on_epoch_begin(0)
    out = augment(rgba, labels)[0].numpy()
    plain, mirrored = x / 255.0, x[:, :, ::-1] / 255.0
    same = np.abs(out - plain).max(axis=(1, 2, 3)) < 1e-4
    flipped = np.abs(out - mirrored).max(axis=(1, 2, 3)) < 1e-4
    assert np.all(same | flipped) and same.any() and flipped.any()

    ramp.on_epoch_begin(2)  # half way: about half of the images grey
    half = augment(rgba, labels)[0].numpy()
    assert 0.2 < _grey(half).mean() < 0.8

    ramp.on_epoch_begin(4)
    full = augment(rgba, labels)[0].numpy()
    assert _grey(full).all() and np.abs(full - plain).mean() > 0.05
    assert full.shape == (48, 64, 64, 3) and 0 <= full.min() and full.max() <= 1


def test_the_ramp_follows_the_epochs_and_ends_full():
    ramp = AugmentationRamp(4)
    strengths = []
    for epoch in (0, 1, 2, 3, 4, 9):
        ramp.on_epoch_begin(epoch)
        strengths.append(float(ramp.strength.numpy()))
    assert strengths == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    ramp.on_epoch_begin(1)
    ramp.on_train_end()
    assert float(ramp.strength.numpy()) == 1.0  # batch-norm statistics after training see what the model was trained for
    default = RECIPES["default"]
    assert augmentation_ramp(dataclasses.replace(default, augment_ramp=0.0)) is None
    assert augmentation_ramp(dataclasses.replace(default, augment_ramp=0.25, epochs=60)).epochs == 15
    assert augmentation_ramp(dataclasses.replace(default, augment_ramp=0.01, epochs=4)).epochs == 1
    assert augmentation_ramp(dataclasses.replace(default, augment=False, augment_ramp=0.5)) is None


def test_the_cooldown_falls_to_its_floor_over_the_last_epochs():
    recipe = dataclasses.replace(RECIPES["default"], epochs=10, augment_ramp=0.2, augment_cooldown=0.4, cooldown_strength=0.5)
    ramp = augmentation_ramp(recipe)
    assert float(ramp.strength.numpy()) == 0.5  # before any epoch: what the model ends on
    strengths = []
    for epoch in range(10):
        ramp.on_epoch_begin(epoch)
        strengths.append(float(ramp.strength.numpy()))
    assert strengths == [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5]
    ramp.on_train_end()
    assert float(ramp.strength.numpy()) == 0.5  # batch-norm statistics see the batches the model ended on
    without_ramp = augmentation_ramp(dataclasses.replace(recipe, augment_ramp=0.0, augment_cooldown=0.2, cooldown_strength=0.0))
    assert [without_ramp.strength_at(epoch) for epoch in (0, 7, 8, 9)] == [1.0, 1.0, 0.5, 0.0]


def test_at_the_cooldowns_floor_of_nought_only_the_mirror_is_left(signs):
    x = signs.train.x[:48]
    rgba = tf.constant(np.concatenate([to_model_input(x), hand_masks(x)], -1))
    ramp = augmentation_ramp(dataclasses.replace(EVERYTHING, epochs=4, augment_ramp=0.0, augment_cooldown=0.5, cooldown_strength=0.0))
    augment = augmenter(0, EVERYTHING, ramp)
    labels = tf.one_hot(signs.train.y[:48], 6)
    plain, mirrored = x / 255.0, x[:, :, ::-1] / 255.0
    ramp.on_epoch_begin(1)
    assert _grey(augment(rgba, labels)[0].numpy()).all()  # full before the cooldown
    ramp.on_epoch_begin(3)
    out = augment(rgba, labels)[0].numpy()
    same = np.abs(out - plain).max(axis=(1, 2, 3)) < 1e-4
    flipped = np.abs(out - mirrored).max(axis=(1, 2, 3)) < 1e-4
    assert np.all(same | flipped)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"cooldown_strength": -0.1}, r"cooldown_strength must be a number in \[0, 1\], got -0.1"),
    ({"augment_cooldown": 2.0}, r"augment_cooldown must be a number in \[0, 1\], got 2.0"),
    ({"augment_ramp": 0.6, "augment_cooldown": 0.5}, r"augment_ramp \+ augment_cooldown must be at most 1 .*got 0.6 \+ 0.5"),
])
def test_a_cooldown_that_cannot_be_is_refused(overrides, message):
    with pytest.raises(EdgeSignsError, match=message):
        TrainOptions(overrides=overrides).validate()


def test_a_ramp_outside_nought_to_one_is_refused():
    with pytest.raises(EdgeSignsError, match=r"augment_ramp must be a number in \[0, 1\], got 1.5"):
        TrainOptions(overrides={"augment_ramp": 1.5}).validate()


def test_a_run_with_a_ramp_trains_and_records_it(tmp_path, signs):
    run = tmp_path / "run"
    options = TrainOptions(limit=24, overrides={"epochs": 2, "augment_ramp": 0.5, "average_last": 0.0})
    train(options, run, data=signs, verbose=0, log=lambda line: None)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["recipe"]["augment_ramp"] == 0.5
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["epochs"] == 2


def test_an_interrupted_run_resumes_with_the_strength_of_its_epoch(tmp_path, signs, monkeypatch):
    """Ctrl-C after the first of four epochs (a ramp over two, a cooldown over one), then --resume: the strength goes on 0.5, 1, 0."""
    monkeypatch.setattr(train_module, "build_resnet50", lambda **_kwargs: build(keras))  # a tiny model: seconds, not minutes
    monkeypatch.setattr(config, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every epoch
    make_checkpoint = train_module.make_checkpoint_callback
    run = tmp_path / "run"
    options = TrainOptions(limit=24, batch_size=4, overrides={"epochs": 4, "augment_ramp": 0.5, "augment_cooldown": 0.25,
                                                             "cooldown_strength": 0.0, "average_last": 0.0})
    monkeypatch.setattr(train_module, "make_checkpoint_callback", interrupted_after(make_checkpoint, 0))
    with pytest.raises(train_module.TrainingInterrupted):
        train(options, run, data=signs, verbose=0, log=quiet)
    assert json.loads((run / "history.json").read_text())["augment_strength"] == [0.0]

    monkeypatch.setattr(train_module, "make_checkpoint_callback", make_checkpoint)
    train(None, run, data=signs, resume=True, verbose=0, log=quiet)
    assert json.loads((run / "history.json").read_text())["augment_strength"] == [0.0, 0.5, 1.0, 0.0]
