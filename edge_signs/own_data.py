"""Folders of one's own labelled images (collect's output, any <label>/*.jpg folder), split by group.

A file's group is its name without the last ``_<number>`` (a collect session, a photo's
crops); held-out and training splits never cut a group in two.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.errors import EdgeSignsError
from edge_signs.images import class_folder_images, is_image_name, read_image_bgr
from edge_signs.log import Log
from edge_signs.preprocess import frame_to_rgb


@dataclass
class Labelled:
    """Images of one's own (collect's output, a labelled folder): pixels, labels and where each came from."""

    x: np.ndarray  # uint8 (N, 64, 64, 3) RGB, through the camera path
    y: np.ndarray  # int64 (N,), 0..5
    files: list[str]  # relative to ``source``
    source: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def groups(self) -> list[str]:
        return [group_of(f) for f in self.files]

    def subset(self, idx: np.ndarray) -> "Labelled":
        idx = np.asarray(idx, dtype=np.int64)
        return Labelled(self.x[idx], self.y[idx], [self.files[i] for i in idx], self.source, list(self.notes))

    def checksum(self) -> str:
        digest = hashlib.sha256()
        for part in (self.x, self.y):
            digest.update(np.ascontiguousarray(part).tobytes())
        digest.update("\n".join(self.files).encode())
        return digest.hexdigest()

    def counts(self) -> list[int]:
        return np.bincount(self.y, minlength=config.NUM_CLASSES).astype(int).tolist()


def group_of(name: str) -> str:
    """The group a file belongs to: its name without the last '_<number>' (a session or a photo).

    'train/3/s20261127-114211_00042.jpg' -> 's20261127-114211';
    '0/1528664299.56_pic00087_1354.jpg' -> '1528664299.56_pic00087'; a name without
    such a suffix is a group of its own.
    """
    stem = Path(name).stem
    head, sep, tail = stem.rpartition("_")
    return head if sep and head and tail.isdigit() else stem


def labelled_root(folder: str | os.PathLike) -> Path:
    """The folder holding <label>/ subfolders: ``folder`` itself, or its train/ (the Keras layout)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeSignsError(f"{folder}: folder not found (expected <label>/*.jpg folders, labels {', '.join(config.LABELS)})")
    for root in (folder, folder / "train", folder / "images" / "train"):
        if root.is_dir() and any((root / label).is_dir() for label in config.LABELS):
            return root
    raise EdgeSignsError(f"{folder}: no class folders (expected {folder}/<label>/*.jpg or {folder}/train/<label>/*.jpg, labels {', '.join(config.LABELS)})")


def count_images(folder: str | os.PathLike) -> dict[str, int]:
    """Images in each FOLDER/<label>/ (hidden and temporary files aside), 0 for a label without a folder."""
    counts = {}
    for label in config.LABELS:
        class_dir = Path(folder) / label
        counts[label] = sum(1 for p in class_dir.iterdir() if is_image_name(p.name)) if class_dir.is_dir() else 0
    return counts


def load_labelled(folder: str | os.PathLike, *, log: Log | None = None) -> Labelled:
    """Every image of a labelled folder, through the camera path (centred square, resize to 64x64, RGB).

    Classes may be missing here (evaluate scores what there is); fine-tuning checks
    its own minimum with ``check_own_classes``. Mixed image sizes are allowed, and
    named: each is centre-cropped and resized exactly as a camera frame is.
    """
    root = labelled_root(folder)
    images, labels, files, sizes = [], [], [], {}
    notes: list[str] = []
    for label_index, label in enumerate(config.LABELS):
        class_dir = root / label
        if not class_dir.is_dir():
            continue
        for path in class_folder_images(class_dir, notes):
            bgr = read_image_bgr(path, notes)
            sizes[bgr.shape[1::-1]] = sizes.get(bgr.shape[1::-1], 0) + 1
            images.append(frame_to_rgb(bgr))
            labels.append(label_index)
            files.append(f"{label}/{path.name}")
    extra = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in config.LABELS and not p.name.startswith("."))
    if not images:
        raise EdgeSignsError(f"{root}: no images in its class folders (expected {root}/<label>/*.jpg, labels {', '.join(config.LABELS)})")
    if extra:
        notes.append(f"warning: {root}: ignored folder(s) that are not labels: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    if len(sizes) > 1:
        common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sorted(sizes.items(), key=lambda kv: -kv[1])[:4])
        notes.append(f"warning: {root}: mixed image sizes ({common}{' ...' if len(sizes) > 4 else ''}); each is centre-cropped "
                     f"to a square and resized to {config.IMAGE_SIZE}x{config.IMAGE_SIZE}, as camera frames are")
    missing = [config.LABELS[k] for k, n in enumerate(np.bincount(labels, minlength=config.NUM_CLASSES)) if n == 0]
    if missing:
        notes.append(f"warning: {root}: no images of class(es) {', '.join(missing)}")
    result = Labelled(np.stack(images), np.asarray(labels, dtype=np.int64), files, str(root), notes)
    if log:
        for note in notes:
            log(note)
    return result


def _unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by ``text``: the same on every machine and Python version."""
    return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16) / float(16**12)


def grouped_split(groups: list[str], fraction: float, salt: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held): whole groups held out, each with probability ``fraction``, chosen by a salted hash.

    A hash rather than a shuffle: adding a session to a folder never moves the old
    ones between the splits, and evaluate recomputes the split fine-tuning used.
    """
    held = np.array([_unit_hash(f"{salt}:{g}") < fraction for g in groups], dtype=bool)
    return np.flatnonzero(~held), np.flatnonzero(held)


def own_split(own: Labelled, split: str) -> Labelled:
    """'all' of a labelled folder, its 'heldout' groups (never fine-tuned on), or the 'train' rest."""
    if split == "all":
        return own
    keep, held = grouped_split(own.groups, config.HOLDOUT_FRACTION, config.HOLDOUT_SALT)
    if split == "heldout":
        if not len(held):
            raise EdgeSignsError(f"{own.source}: no group was held out ({len(set(own.groups))} session(s)/photo(s)); collect more sessions, or score --split all")
        return own.subset(held)
    if split == "train":
        if not len(keep):
            raise EdgeSignsError(f"{own.source}: --split train leaves no images: all {len(set(own.groups))} session(s)/photo(s) are "
                                 f"held out; collect more sessions, or score --split heldout or all")
        return own.subset(keep)
    raise EdgeSignsError(f"split '{split}': unknown (expected one of {', '.join(config.OWN_SPLITS)})")


def check_own_classes(own: Labelled, what: str, minimum: int = config.OWN_MIN_PER_CLASS) -> None:
    """Every class present, at least ``minimum`` images of each: what fine-tuning needs."""
    counts = own.counts()
    short = [f"{config.LABELS[k]}: {n}" for k, n in enumerate(counts) if n < minimum]
    if short:
        raise EdgeSignsError(f"{own.source}: {what} needs at least {minimum} images of every class ({', '.join(config.LABELS)}); "
                             f"too few of {', '.join(short)} ({len(own)} images, {len(set(own.groups))} session(s)/photo(s)); "
                             f"collect more, in more than one session per class")
