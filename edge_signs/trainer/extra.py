"""Beyond SIGNS: further labelled folders mixed into training, and a folder that chooses the checkpoint.

``--extra DIR`` (repeatable) adds a labelled folder (the layout of your own images,
own_data.load_labelled) to the training images. Its held-out groups (the same hash-fixed
fifth that `evaluate --split heldout` scores) are never trained on: they are reported
as the folder's in-domain accuracy.

``--select-on DIR`` scores a labelled folder after each epoch of the second half of
the run and keeps, of the epochs that still know SIGNS (validation accuracy at least
config.SELECT_MIN_VAL_ACCURACY), the one that scored best as the run's model. It is for
a validation set of other people's hands (../shared/datasets/sld-dev): it chooses, it
never trains. SIGNS test never chooses anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.artifacts import atomic_path, write_json
from edge_signs.log import Log
from edge_signs.own_data import Labelled, load_labelled, own_split
from edge_signs.preprocess import to_model_input
from edge_signs.trainer import keras


@dataclass
class Extra:
    train: list[Labelled] = field(default_factory=list)
    heldout: dict[str, Labelled] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return sum(len(part) for part in self.train)


def load_extra(folders: list[str], log: Log) -> Extra:
    extra = Extra()
    for folder in folders:
        own = load_labelled(folder, log=log)
        extra.train.append(own_split(own, "train"))
        held = own_split(own, "heldout")
        if len(held):
            extra.heldout[Path(folder).resolve().name] = held
    return extra


def with_extra(x: np.ndarray, y: np.ndarray, masks: np.ndarray | None, extra: Extra):
    """SIGNS training images followed by the extra folders' (whose masks are 1: their backgrounds stay)."""
    if not extra.train:
        return x, y, masks
    x = np.concatenate([x, *(part.x for part in extra.train)])
    y = np.concatenate([y, *(part.y for part in extra.train)])
    if masks is not None:
        masks = np.concatenate([masks, np.ones((extra.images, *masks.shape[1:]), masks.dtype)])
    return x, y, masks


class ChooseBestEpoch(keras.callbacks.Callback):
    """After each epoch from ``first_epoch`` on: accuracy on the selection folder; the best epoch's model
    is kept in ``checkpoint/best.weights.h5`` (and best.json), so a killed run keeps its choice too. Weights
    only: the optimizer state would triple each save, and the run's own checkpoint already holds it."""

    def __init__(self, folder: Labelled, first_epoch: int, ckpt_dir: Path, log: Log):
        super().__init__()
        self.x, self.y = to_model_input(folder.x), folder.y
        self.first_epoch, self.ckpt_dir, self.log = first_epoch, ckpt_dir, log
        self.source = folder.source
        self.best = read_best(ckpt_dir)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 < self.first_epoch or self.model.stop_training:
            return
        probs = self.model.predict(self.x, batch_size=config.PREDICT_BATCH, verbose=0)
        accuracy = float(np.mean(probs.argmax(1) == self.y))
        logs = logs if logs is not None else {}
        logs["select_accuracy"] = accuracy
        # Without a validation split there is no SIGNS score to hold to: the folder alone chooses.
        candidate = {"epoch": epoch + 1, "accuracy": accuracy, "val_accuracy": float(logs.get("val_accuracy", 1.0)), "folder": self.source}
        if replaces(candidate, self.best):
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(best_weights(self.ckpt_dir), suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
            self.best = candidate
            write_json(self.ckpt_dir / "best.json", self.best)


def replaces(candidate: dict, kept: dict | None, floor: float = config.SELECT_MIN_VAL_ACCURACY) -> bool:
    """Whether an epoch (its SIGNS validation accuracy and the folder's accuracy) is kept instead of ``kept``.

    The folder's best epoch alone can be one that has half-forgotten SIGNS (a 60-epoch `varied` run:
    0.77 on sld-dev at 0.93 SIGNS validation, later epochs 0.76 at 0.99). So an epoch that still knows SIGNS
    (validation accuracy >= ``floor``) beats one that does not; among those that do, the folder's
    accuracy decides; while none does, the validation accuracy. Choosing online needs no epoch's
    weights but the kept one's.
    """
    if kept is None:
        return True
    knows, kept_knows = candidate["val_accuracy"] >= floor, kept.get("val_accuracy", 0.0) >= floor
    if knows != kept_knows:
        return knows
    if knows:
        return candidate["accuracy"] > kept["accuracy"]
    return (candidate["val_accuracy"], candidate["accuracy"]) > (kept.get("val_accuracy", 0.0), kept["accuracy"])


def describe_choice(best: dict, epochs: int, floor: float = config.SELECT_MIN_VAL_ACCURACY) -> tuple[str, str]:
    """(metrics.json's "by", the line the run ends with) for the epoch ``replaces`` kept.

    When no epoch reached the floor, SIGNS validation chose, not the folder: saying so keeps
    a run that never learnt SIGNS from passing for one chosen on other people's hands.
    """
    first, folder = first_selection_epoch(epochs), best["folder"]
    if best.get("val_accuracy", 0.0) >= floor:
        return (f"accuracy on {folder} (--select-on), from epoch {first} on, among epochs with SIGNS validation accuracy >= {floor}",
                f"kept epoch {best['epoch']} of {epochs}: the best on {folder} ({best['accuracy']:.3f}) "
                f"of those with SIGNS validation >= {floor}")
    return (f"SIGNS validation accuracy, from epoch {first} on: no epoch reached {floor} there, so {folder} (--select-on) "
            "only broke ties",
            f"warning: no epoch from {first} on reached SIGNS validation accuracy {floor}; kept epoch {best['epoch']} of {epochs}, "
            f"the best on SIGNS validation ({best.get('val_accuracy', 0.0):.3f}; {folder}: {best['accuracy']:.3f})")


def best_weights(ckpt_dir: Path) -> Path:
    return ckpt_dir / "best.weights.h5"


def read_best(ckpt_dir: Path) -> dict | None:
    path = ckpt_dir / "best.json"
    if not (path.is_file() and best_weights(ckpt_dir).is_file()):
        return None
    best = json.loads(path.read_text())
    return best if math.isfinite(best.get("accuracy", float("nan"))) else None


def first_selection_epoch(epochs: int) -> int:
    """The second half of the run: earlier epochs are rarely best under a decaying schedule, and each look costs a pass."""
    return max(1, epochs // 2 + 1)
