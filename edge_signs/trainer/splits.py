"""Your own labelled folders, split for a fine-tuning run: held-out, validation and training groups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.log import Log
from edge_signs.own_data import Labelled, check_own_classes, grouped_split, load_labelled, own_split


@dataclass
class OwnSplits:
    """Your own folders, split by group (session or photo): never one group on two sides."""

    train: Labelled
    val: Labelled
    heldout: dict[str, Labelled]  # folder name -> its held-out part: what `evaluate --own FOLDER --split heldout` scores

    def describe(self) -> str:
        return (f"{len(self.train)} of your images ({len(set(self.train.groups))} sessions/photos) for training, "
                f"{len(self.val)} ({len(set(self.val.groups))}) for validation, "
                f"{sum(len(h) for h in self.heldout.values())} ({sum(len(set(h.groups)) for h in self.heldout.values())}) held out")


def _concat(parts: list[Labelled], source: str) -> Labelled:
    """One set from several folders (each already split on its own); file names keep their folder for reports."""
    files = [f"{Path(p.source).name}/{f}" if len(parts) > 1 else f for p in parts for f in p.files]
    x = np.concatenate([p.x for p in parts]) if parts else np.zeros((0, config.IMAGE_SIZE, config.IMAGE_SIZE, 3), np.uint8)
    y = np.concatenate([p.y for p in parts]) if parts else np.zeros(0, np.int64)
    return Labelled(x, y, files, source)


def own_splits(folders: list[str], val_fraction: float, seed: int, log: Log) -> OwnSplits:
    """Each folder's held-out groups (fixed by hash, see own_data.own_split) are never trained on;
    of the rest, ``val_fraction`` of the groups validate (chosen by a seeded hash)."""
    trains, vals, helds = [], [], {}
    for folder in folders:
        own = load_labelled(folder, log=log)
        held = own_split(own, "heldout") if len(grouped_split(own.groups, config.HOLDOUT_FRACTION, config.HOLDOUT_SALT)[1]) else None
        if held is None:
            log(f"warning: {own.source}: too few sessions/photos for a held-out split; check the model on frames it never saw")
        rest = own_split(own, "train")
        keep, val = grouped_split(rest.groups, val_fraction, f"val-{seed}")
        trains.append(rest.subset(keep))
        vals.append(rest.subset(val))
        if held is not None:
            name = Path(folder).resolve().name
            helds[name if name not in helds else f"{name} ({len(helds) + 1})"] = held
    result = OwnSplits(_concat(trains, ", ".join(folders)), _concat(vals, ", ".join(folders)), helds)
    check_own_classes(result.train, "fine-tuning (after the held-out and validation splits)")
    return result
