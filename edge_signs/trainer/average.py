"""The trained weights averaged over the last part of the run (stochastic weight averaging).

With heavy augmentation and batch 32, the weights at the last step are one noisy point
of a trajectory that still wanders: accuracy on other people's hands moved by 0.3 from
epoch to epoch of one run, and by 0.15 between seeds (docs/training.md). The average of
many points along the end of the trajectory lies nearer the middle of the flat region
they wander in, which is what generalises to photos unlike the training set (Izmailov
et al. 2018; Cha et al. 2021, "SWAD", for domain shift). Batch-norm statistics no longer
match averaged weights, so they are recomputed afterwards (trainer/batchnorm.py).

The running sum is written beside each checkpoint, so a resumed run goes on with the
average it had.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_signs.artifacts import atomic_path
from edge_signs.config import Recipe
from edge_signs.trainer import keras, tf

EVERY_STEPS = 4  # a snapshot every few steps: dense enough, and the sum's pass over 94 MB stays a few percent of a step


def first_average_epoch(epochs: int, share: float) -> int:
    """The first epoch (1-based) whose weights join the average: the last ``share`` of the run."""
    return max(1, epochs - max(1, round(epochs * share)) + 1)


def weight_average(recipe: Recipe, ckpt_dir: Path, resumed_epoch: int) -> WeightAverage | None:
    """The callback that averages a run's weights, where its recipe asks for it (``average_last`` > 0)."""
    if recipe.average_last <= 0:
        return None
    return WeightAverage(first_average_epoch(recipe.epochs, recipe.average_last), ckpt_dir, resumed_epoch)


def average_file(ckpt_dir: Path, epoch: int) -> Path:
    return ckpt_dir / f"average-{epoch:04d}.npz"


class WeightAverage(keras.callbacks.Callback):
    """Every ``EVERY_STEPS`` training steps from ``first_epoch`` on, the trainable weights are added to a sum.

    With each checkpoint of the run the sum is written as checkpoint/average-NNNN.npz (before state.json
    names the epoch, so a resumed run finds the one of the epoch it resumes after).
    """

    def __init__(self, first_epoch: int, ckpt_dir: Path, resumed_epoch: int = 0):
        super().__init__()
        self.first_epoch, self.ckpt_dir, self.resumed_epoch = first_epoch, ckpt_dir, resumed_epoch
        self.count = 0
        self.active = False

    def on_train_begin(self, logs=None):
        weights = self._start(self.model)

        @tf.function
        def add():
            for total, w in zip(self.sums, weights):
                total.assign_add(tf.cast(w.value, tf.float32))

        self._add = add

    def _start(self, model) -> list:
        """The sums, zero or as the resumed epoch left them (once: fit may never run for a run resumed at its end)."""
        weights = model.trainable_weights
        if not hasattr(self, "sums"):
            self.sums = [tf.Variable(tf.zeros(w.shape, tf.float32), trainable=False) for w in weights]
            saved = average_file(self.ckpt_dir, self.resumed_epoch)
            if self.resumed_epoch and saved.is_file():
                with np.load(saved) as kept:
                    self.count = int(kept["count"])
                    for i, total in enumerate(self.sums):
                        total.assign(kept[f"w{i}"])
        return weights

    def on_epoch_begin(self, epoch, logs=None):
        self.active = epoch + 1 >= self.first_epoch
        self._step = 0

    @property
    def every(self) -> int:
        """EVERY_STEPS, or each step of an epoch shorter than that (a smoke run still averages)."""
        return max(1, min(EVERY_STEPS, (self.params or {}).get("steps") or EVERY_STEPS))

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.active and self._step % self.every == 0:
            self._add()
            self.count += 1

    def save_checkpoint(self, ckpt_dir: Path, epoch: int) -> None:
        """The sum so far, beside the run's checkpoint of ``epoch`` (which calls this before state.json names it)."""
        if not self.count:
            return
        with atomic_path(average_file(ckpt_dir, epoch), suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, count=self.count, **{f"w{i}": total.numpy() for i, total in enumerate(self.sums)})

    def drop_checkpoints(self, ckpt_dir: Path, keep_epoch: int) -> None:
        for old in ckpt_dir.glob("average-*.npz"):
            if old.name != average_file(ckpt_dir, keep_epoch).name:
                old.unlink()

    def apply(self, model) -> dict | None:
        """Set ``model``'s trainable weights (the model trained, or one of the same layers) to the average;
        what metrics.json records of it (None, and the weights unchanged, when nothing was averaged)."""
        self._start(model)
        if not self.count:
            return None
        for w, total in zip(model.trainable_weights, self.sums):
            w.assign((total / self.count).numpy())
        return {"by": "the average of the weights", "from_epoch": self.first_epoch, "every_steps": self.every, "snapshots": self.count}
