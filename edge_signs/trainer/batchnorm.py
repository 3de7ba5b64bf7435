"""Batch-norm statistics recomputed after training, with the weights fixed.

During training each batch norm keeps a running mean and variance with momentum 0.9:
mostly the last few dozen batches, drawn while the weights were still moving. With
heavy augmentation those batches vary a lot, so the statistics a model is saved with
are a noisy sample, and its accuracy moves with that sample from seed to seed
(docs/training.md). Averaging each layer's batch statistics over a few epochs of the
same training batches, with the final weights, replaces the sample with its
expectation (stochastic weight averaging's batch-norm update).
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from edge_signs.log import Log, log_stderr
from edge_signs.trainer import keras, tf


def batch_norms(model) -> list:
    """The model's batch-norm layers that training updates (frozen ones keep their statistics)."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += batch_norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            found.append(layer)
    return found


def recalibrate_batchnorm(model, batches, steps: int, *, log: Log = log_stderr) -> dict:
    """Set every trainable batch norm's moving mean and variance to the mean of its batch statistics
    over the first ``steps`` batches of ``batches`` ((model input, labels) pairs, e.g. the training
    dataset); the weights are unchanged. Returns what metrics.json records.
    """
    start = time.perf_counter()
    layers = batch_norms(model)
    saved_momentum = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape, np.float64), np.zeros(layer.moving_variance.shape, np.float64)] for layer in layers]
    count = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # each call leaves its batch's statistics in the moving ones, to be summed here
        forward = tf.function(lambda images: model(images, training=True))  # traced once: eager calls took over twice as long
        for count, (images, _labels) in enumerate(itertools.islice(iter(batches), steps), start=1):
            forward(images)
            for layer, (mean, variance) in zip(layers, sums):
                mean += layer.moving_mean.numpy()
                variance += layer.moving_variance.numpy()
        if count:
            for layer, (mean, variance) in zip(layers, sums):
                layer.moving_mean.assign((mean / count).astype(np.float32))
                layer.moving_variance.assign((variance / count).astype(np.float32))
    finally:
        for layer, momentum in zip(layers, saved_momentum):
            layer.momentum = momentum
    seconds = time.perf_counter() - start
    log(f"batch-norm statistics averaged over {count} training batches ({len(layers)} layers, {seconds:.0f} s)")
    return {"batches": count, "layers": len(layers), "seconds": round(seconds, 2)}
