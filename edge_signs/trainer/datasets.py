"""tf.data pipelines for training: SIGNS alone, or your own images with SIGNS mixed in.

Images are turned into model input once, by the one preprocessing definition
(edge_signs/preprocess.py), and held in memory (1,080 SIGNS images are 53 MB as float32);
each epoch only shuffles, batches and augments whole batches in parallel, and the
next batches are prepared while the step runs (prefetch), so the step never waits
on the pipeline.
"""

from __future__ import annotations

import numpy as np

from edge_signs import config
from edge_signs.config import Recipe
from edge_signs.preprocess import to_model_input
from edge_signs.trainer import tf
from edge_signs.trainer.augment import AugmentationRamp, augmentation_ramp, augmenter

__all__ = ["augmentation_ramp", "make_dataset", "mixed_dataset"]


def _examples(x_uint8: np.ndarray, y: np.ndarray, augment: Recipe | None, masks: np.ndarray | None):
    """(model input, one-hot) pairs; the hand's mask rides along as a 4th channel when the recipe needs it."""
    onehot = np.eye(config.NUM_CLASSES, dtype=np.float32)[y]
    x = to_model_input(x_uint8)
    if augment is not None and augment.needs_masks:
        if masks is None:
            raise ValueError("a recipe with background_swap, upright, close_up, hand_size, hand_tone or hand_surface needs the images' hand masks (segment.hand_masks)")
        x = np.concatenate([x, masks.astype(np.float32)], axis=-1)
    return tf.data.Dataset.from_tensor_slices((x, onehot))


def _finish(ds, *, batch_size: int, augment: Recipe | None, seed: int, ramp: AugmentationRamp | None = None):
    """Batch, augment whole batches in parallel, shard by data under tf.distribute, prefetch."""
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(augmenter(seed, augment, ramp), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.threading.private_threadpool_size = config.available_cores()  # not the host's count under a CPU quota
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def make_dataset(x_uint8: np.ndarray, y: np.ndarray, *, batch_size: int, training: bool, augment: Recipe | None, seed: int,
                 masks: np.ndarray | None = None, ramp: AugmentationRamp | None = None):
    """uint8 RGB + int labels -> tf.data of (model input, one-hot labels).

    ``augment``: the recipe whose augmentation applies (None: none); ``masks`` (N, H, W, 1):
    the hands, for a recipe that swaps backgrounds or turns hands upright (1 everywhere keeps an image as it is);
    ``ramp``: the callback that sets the augmentation's strength epoch by epoch (augment.augmentation_ramp).
    """
    ds = _examples(x_uint8, y, augment, masks)
    if training:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return _finish(ds, batch_size=batch_size, augment=augment, seed=seed, ramp=ramp)


def mixed_dataset(own_x: np.ndarray, own_y: np.ndarray, signs_x: np.ndarray, signs_y: np.ndarray, *, signs_mix: float,
                  batch_size: int, augment: Recipe | None, seed: int, ramp: AugmentationRamp | None = None):
    """Batches drawn from your own images and SIGNS at ``signs_mix`` (endless; one epoch = your images once).

    Returns (dataset, steps per epoch). Each example is drawn from SIGNS with probability
    ``signs_mix``, so a batch of 32 at 0.3 holds about 10 SIGNS images: the original
    signs stay in every step instead of being forgotten between epochs.
    """
    def endless(x_uint8, y, salt):
        everywhere = np.ones((*x_uint8.shape[:3], 1), np.float32)  # your photos' backgrounds are already varied: kept
        return _examples(x_uint8, y, augment, everywhere).shuffle(len(y), seed=seed + salt, reshuffle_each_iteration=True).repeat()

    if signs_mix > 0 and len(signs_y):
        ds = tf.data.Dataset.sample_from_datasets([endless(own_x, own_y, 0), endless(signs_x, signs_y, 1)],
                                                  weights=[1.0 - signs_mix, signs_mix], seed=seed)
        steps = int(np.ceil(len(own_y) / (1.0 - signs_mix) / batch_size))
    else:
        ds = endless(own_x, own_y, 0)
        steps = int(np.ceil(len(own_y) / batch_size))
    return _finish(ds, batch_size=batch_size, augment=augment, seed=seed, ramp=ramp), steps
