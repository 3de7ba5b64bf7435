"""The fused batch norm and Adam/AdamW compute what Keras' own do; a checkpoint holding them reloads; the
saved model is Keras' own layers."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from edge_signs import config  # noqa: E402
from edge_signs.trainer import keras  # noqa: E402
from edge_signs.trainer.fused import FusedAdam, FusedAdamW, FusedBatchNormalization  # noqa: E402
from edge_signs.trainer.model import build_resnet50, compile_model  # noqa: E402


def _small_model(seed: int):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))


def _weights_after_steps(optimizer, steps: int = 5):
    model = _small_model(0)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    rng = np.random.default_rng(1)
    for _ in range(steps):
        x = rng.normal(size=(16, 8)).astype("float32")
        y = np.eye(3, dtype="float32")[rng.integers(0, 3, 16)]
        model.train_on_batch(x, y)
    return [np.asarray(w) for w in model.get_weights()]


@pytest.mark.parametrize("fused, plain", [
    (lambda: FusedAdam(learning_rate=0.01), lambda: keras.optimizers.Adam(learning_rate=0.01)),
    (lambda: FusedAdamW(learning_rate=0.01, weight_decay=0.05), lambda: keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.05)),
])
def test_fused_update_matches_keras(fused, plain):
    start = [np.asarray(w) for w in _small_model(0).get_weights()]
    got, want = _weights_after_steps(fused()), _weights_after_steps(plain())
    for g, w, s in zip(got, want, start):
        assert not np.allclose(w, s), "the steps must move the weights for the comparison to mean anything"
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_amsgrad_takes_keras_own_update():
    got = _weights_after_steps(FusedAdam(learning_rate=0.01, amsgrad=True))
    want = _weights_after_steps(keras.optimizers.Adam(learning_rate=0.01, amsgrad=True))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_the_recipes_compile_with_the_fused_optimizers_and_reload_from_a_checkpoint(tmp_path):
    model = _small_model(0)
    compile_model(model, config.RECIPES["default"], steps_per_epoch=4)
    assert type(model.optimizer) is FusedAdamW
    model.train_on_batch(np.ones((4, 8), "float32"), np.eye(3, dtype="float32")[[0, 1, 2, 0]])
    model.save(tmp_path / "checkpoint.keras")
    reloaded = keras.models.load_model(tmp_path / "checkpoint.keras")
    assert type(reloaded.optimizer) is FusedAdamW
    assert int(reloaded.optimizer.iterations) == 1
    for a, b in zip(reloaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert type(compile_model(_small_model(0), config.RECIPES["seed"], steps_per_epoch=4).optimizer) is FusedAdam


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fused_batch_norm_trains_and_infers_as_keras_does(policy):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(8, 5, 5, 16)).astype("float32")
    weighting = rng.normal(size=x.shape).astype("float32")  # a loss whose gradients are not zero by symmetry
    keras.mixed_precision.set_global_policy(policy)
    try:
        fused, plain = FusedBatchNormalization(axis=3, momentum=0.9), keras.layers.BatchNormalization(axis=3, momentum=0.9)
        for layer in (fused, plain):
            layer.build(x.shape)
            layer.gamma.assign(np.linspace(0.5, 1.5, 16)), layer.beta.assign(np.linspace(-1, 1, 16))
        x_in = tf.constant(x)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x_in)
            outs = [tf.cast(layer(x_in, training=True), tf.float32) for layer in (fused, plain)]
            losses = [tf.reduce_sum(out * weighting) for out in outs]
        tolerance = {"rtol": 2e-2, "atol": 5e-2} if policy == "mixed_bfloat16" else {"rtol": 1e-4, "atol": 1e-4}
        assert outs[0].dtype == outs[1].dtype and fused.compute_dtype == plain.compute_dtype
        np.testing.assert_allclose(outs[0], outs[1], **tolerance)
        grads = [tape.gradient(loss, [x_in] + layer.trainable_weights) for loss, layer in ((losses[0], fused), (losses[1], plain))]
        for a, b in zip(*grads):
            np.testing.assert_allclose(a, b, **tolerance)
        np.testing.assert_allclose(fused.moving_mean, plain.moving_mean, rtol=1e-3, atol=1e-3)
        assert not np.allclose(plain.moving_mean, 0.0), "one training call moves the moving mean"
        n = x.shape[0] * x.shape[1] * x.shape[2]  # the fused kernel's moving variance is the unbiased batch variance
        np.testing.assert_allclose(np.asarray(fused.moving_variance) - 0.9, (np.asarray(plain.moving_variance) - 0.9) * n / (n - 1),
                                   rtol=1e-2 if policy == "mixed_bfloat16" else 1e-4)
        np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), rtol=1e-2, atol=5e-2)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_fused_model_has_the_plain_models_weights():
    fused, plain = build_resnet50(fused_bn=True, seed=3), build_resnet50(seed=3)
    assert {type(layer) for layer in fused.layers} >= {FusedBatchNormalization}
    assert not any(isinstance(layer, FusedBatchNormalization) for layer in plain.layers)
    assert [w.shape for w in fused.weights] == [w.shape for w in plain.weights]
    plain.set_weights(fused.get_weights())
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(fused.predict(x, verbose=0), plain.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
