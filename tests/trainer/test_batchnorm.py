"""Batch-norm statistics recomputed after training (trainer/batchnorm.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs.log import quiet  # noqa: E402
from edge_signs.preprocess import to_model_input  # noqa: E402
from edge_signs.trainer import keras  # noqa: E402
from edge_signs.trainer.batchnorm import recalibrate_batchnorm  # noqa: E402

QUIET = {"log": quiet}


def _model(frozen_second: bool = False):
    inputs = keras.Input((64, 64, 3))
    first = keras.layers.BatchNormalization(momentum=0.9, name="first")
    second = keras.layers.BatchNormalization(momentum=0.9, name="second")
    second.trainable = not frozen_second
    x = second(keras.layers.Conv2D(4, 3, name="conv")(first(inputs)))
    outputs = keras.layers.Dense(6)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def _batches(count: int, size: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        # Channels with different means and spreads, and batches that differ from each other, as augmented ones do.
        pixels = rng.integers(0, 256, (size, 64, 64, 3)) * np.array([0.3, 0.6, 1.0]) + np.array([100, 40, 0]) - 10 * k
        out.append((to_model_input(np.clip(pixels, 0, 255).astype(np.uint8)), np.zeros((size, 6), np.float32)))
    return out


def test_statistics_become_the_mean_of_the_batch_statistics_and_nothing_else_changes():
    model = _model()
    trained = [w.numpy().copy() for w in model.trainable_weights]
    batches = _batches(4, 16)
    record = recalibrate_batchnorm(model, batches + _batches(2, 16, seed=9), steps=4, **QUIET)  # only the first 4 count

    first = model.get_layer("first")
    images = [x.astype(np.float64) for x, _ in batches]
    np.testing.assert_allclose(first.moving_mean.numpy(), np.mean([x.mean(axis=(0, 1, 2)) for x in images], axis=0), rtol=1e-3)
    np.testing.assert_allclose(first.moving_variance.numpy(), np.mean([x.var(axis=(0, 1, 2)) for x in images], axis=0), rtol=2e-3)
    assert not np.allclose(model.get_layer("second").moving_mean.numpy(), 0.0)  # the layers after the first are set too
    for before, after in zip(trained, model.trainable_weights):
        np.testing.assert_array_equal(before, after.numpy())  # the weights are left alone
    assert first.momentum == 0.9  # each layer keeps its own momentum for any later training
    assert record["batches"] == 4 and record["layers"] == 2


def test_frozen_batch_norms_keep_their_statistics_and_inference_then_matches_training_mode():
    model = _model(frozen_second=True)
    frozen = model.get_layer("second")
    kept = frozen.moving_mean.numpy().copy(), frozen.moving_variance.numpy().copy()
    (x, y), = _batches(1, 48, seed=1)
    record = recalibrate_batchnorm(model, [(x, y)], steps=10, **QUIET)  # a stream shorter than steps ends the average
    assert record["batches"] == 1 and record["layers"] == 1
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), kept[0])
    np.testing.assert_array_equal(frozen.moving_variance.numpy(), kept[1])
    # One batch: inference now normalizes those images as training mode does.
    first_only = keras.Model(model.input, model.get_layer("first").output)
    np.testing.assert_allclose(first_only(x, training=False).numpy(), first_only(x, training=True).numpy(), atol=2e-3)
