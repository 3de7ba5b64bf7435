"""Keras callbacks of a training run: divergence guard, per-epoch checkpoints, the progress line."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.artifacts import atomic_path, write_json
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log
from edge_signs.plots import training_curves_png
from edge_signs.trainer import keras
from edge_signs.trainer.model import nonfinite_layers


class Diverged(EdgeSignsError):
    """The loss or the weights became NaN or infinite: the run cannot go on."""


class StopOnDivergence(keras.callbacks.Callback):
    """Stop at the first non-finite batch loss, before another checkpoint can be written."""

    def __init__(self):
        super().__init__()
        self.where: str | None = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = f"batch {batch + 1} of epoch {self._epoch + 1} (loss {float(loss)})"
            self.model.stop_training = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


def make_checkpoint_callback(run_dir: Path, history: dict, timing: list, data_sha256: str, guard: StopOnDivergence, extras=()):
    """``extras``: objects whose ``save_checkpoint(ckpt_dir, epoch)`` writes their own state beside each checkpoint
    (before state.json names it) and whose ``drop_checkpoints(ckpt_dir, keep_epoch)`` removes the older ones."""
    ckpt_dir = run_dir / "checkpoint"

    class EpochCheckpoint(keras.callbacks.Callback):
        """After the first epoch, the last, and any epoch ending ``config.CHECKPOINT_SECONDS`` or more after the
        last checkpoint: model + optimizer state, the extras' state, then state.json naming them. History and
        curves after every epoch.

        state.json is written last, so it always names a complete checkpoint; a kill at any
        moment loses at most the epochs since it (about two minutes' work).
        """

        saved_at: float | None = None  # when this process last wrote a checkpoint

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            if guard.where is not None or not all(math.isfinite(float(v)) for v in logs.values()) or nonfinite_layers(self.model):
                # The last good checkpoint stays; this epoch is not saved and the run stops.
                guard.where = guard.where or f"epoch {epoch + 1} (non-finite loss or weights)"
                self.model.stop_training = True
                return
            timing.append(time.perf_counter() - self._t0)
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            for key, value in logs.items():
                history.setdefault(key, []).append(float(value))
            if self._due(epoch + 1):
                self._save(epoch + 1)
            write_json(run_dir / "history.json", history)
            training_curves_png(history, run_dir / "training_curves.png", title=f"{run_dir.name}: ResNet50 on SIGNS")

        def _due(self, epoch: int) -> bool:
            # A checkpoint is 280 MB (the optimizer's state is twice the model): seconds of every epoch, if written after each.
            last = (self.params or {}).get("epochs")
            return self.saved_at is None or epoch == last or time.perf_counter() - self.saved_at >= config.CHECKPOINT_SECONDS

        def _save(self, epoch: int) -> None:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            name = f"epoch-{epoch:04d}.keras"
            with atomic_path(ckpt_dir / name, suffix=".keras") as tmp:
                self.model.save(tmp)
            for extra in extras:
                extra.save_checkpoint(ckpt_dir, epoch)
            write_json(ckpt_dir / "state.json", {"epoch": epoch, "model": name, "history": history, "epoch_seconds": timing,
                                                 "data_sha256": data_sha256})
            for old in ckpt_dir.glob("epoch-*.keras"):
                if old.name != name:
                    old.unlink()
            for extra in extras:
                extra.drop_checkpoints(ckpt_dir, epoch)
            self.saved_at = time.perf_counter()

    return EpochCheckpoint()


def read_checkpoint(run_dir: Path) -> dict | None:
    state_path = run_dir / "checkpoint" / "state.json"
    if not state_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text())
        state["path"] = run_dir / "checkpoint" / state["model"]
    except (ValueError, KeyError) as exc:
        raise EdgeSignsError(f"{state_path}: corrupt checkpoint state ({exc}); delete {run_dir / 'checkpoint'} to start over") from None
    if not state["path"].is_file():
        raise EdgeSignsError(f"{state['path']}: checkpoint named by {state_path} is missing; delete {run_dir / 'checkpoint'} to start over")
    return state


def duration(seconds: float) -> str:
    """'45 s', '12 min', '1 h 05 min': as precise as a time left needs to be."""
    seconds = max(0, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def time_left(epoch_seconds: list[float], epochs_to_go: int) -> float:
    """Seconds the remaining epochs should take, from the finished ones' times.

    The first epoch of a process also traces the train step (a minute or more on a CPU),
    so once there are others the typical epoch is their median: a resumed run's first
    epoch, in the middle of the list, is an outlier the median ignores too.
    """
    typical = float(np.median(epoch_seconds[1:])) if len(epoch_seconds) > 1 else epoch_seconds[0]
    return typical * epochs_to_go


class ProgressLine(keras.callbacks.Callback):
    """One line per epoch: epoch k/N, the epoch's loss and accuracy, its time, and the time left
    (`time_left` of this run's finished epochs, a resumed run's included)."""

    def __init__(self, log: Log, epochs: int, timing: list[float]):
        super().__init__()
        self.log, self.epochs, self.timing = log, epochs, timing

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        done = epoch + 1
        scores = "  ".join(f"{key} {float(logs[key]):.3f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy") if key in logs)
        took = f"{self.timing[-1]:.0f} s" if self.timing else ""
        left = ""
        if self.timing and done < self.epochs:
            left = f", about {duration(time_left(self.timing, self.epochs - done))} left"
        self.log(f"epoch {done}/{self.epochs}: {scores}  ({took}{left})")
