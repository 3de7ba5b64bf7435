"""Representative images for int8 calibration.

The committed manifest (``calibration/manifest.csv``, written by
``tools/make_calibration_manifest.py``) lists training images by index into the
SIGNS training set (the HDF5 order, which is also the sorted order of the
image-folder copy), with their label, file name and a hash of their pixels so
that a different dataset is caught instead of silently calibrating on it. Test
images are never listed.

A folder of the user's own images (frames from the Pi's camera, say) can be used
instead; those go through the camera path (centred square, resize), exactly as
``live`` will feed them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.data import Signs, stratified_split
from edge_signs.errors import EdgeSignsError
from edge_signs.images import is_image_name, read_image_bgr
from edge_signs.log import Log, log_stderr
from edge_signs.own_data import load_labelled, own_split
from edge_signs.preprocess import frame_to_rgb

FIELDS = ("index", "label", "file", "pixels_sha256")


def pixel_hash(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.uint8).tobytes()).hexdigest()[:16]


def image_folder_names(signs_root: Path | None) -> list[str] | None:
    """Relative file names of the image-folder copy in training-set order, if it is there."""
    if signs_root is None:
        return None
    folder = signs_root / "images" / "train" if (signs_root / "images").is_dir() else signs_root / "train"
    if not folder.is_dir():
        return None
    names = []
    for label in config.LABELS:
        names += [f"train/{label}/{p.name}" for p in sorted((folder / label).iterdir()) if is_image_name(p.name)]
    return names


def default_selection(signs: Signs, per_class: int = config.CALIBRATION_PER_CLASS, seed: int = config.SEED) -> np.ndarray:
    """Indices of the seeded, stratified pick of training images that the manifest records."""
    y = signs.train.y
    _, chosen = stratified_split(y, per_class / np.bincount(y).min(), seed)
    return chosen


def manifest_text(signs: Signs, per_class: int = config.CALIBRATION_PER_CLASS, seed: int = config.SEED) -> str:
    """CSV of ``per_class`` training images per class, chosen with ``seed``."""
    y = signs.train.y
    chosen = default_selection(signs, per_class, seed)
    names = image_folder_names(Path(signs.source)) or [""] * len(y)
    if len(names) != len(y):
        names = [""] * len(y)
    out = io.StringIO()
    out.write(f"# SIGNS training images that calibrate int8 models: {per_class} per class, seed {seed}.\n")
    out.write("# index: position in train_signs.h5 (= sorted image-folder order); never test images.\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for i in chosen:
        writer.writerow([int(i), int(y[i]), names[i], pixel_hash(signs.train.x[i])])
    return out.getvalue()


def read_manifest(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise EdgeSignsError(f"{path}: calibration manifest not found (write one with tools/make_calibration_manifest.py)")
    rows = []
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != FIELDS:
        raise EdgeSignsError(f"{path}: calibration manifest header is {reader.fieldnames}, expected {','.join(FIELDS)}")
    for n, row in enumerate(reader, start=2):
        try:
            rows.append({"index": int(row["index"]), "label": int(row["label"]), "file": row["file"], "pixels_sha256": row["pixels_sha256"]})
        except (TypeError, ValueError):
            raise EdgeSignsError(f"{path}: row {n} is not 'index,label,file,pixels_sha256' with integer index and label") from None
    return rows


def images_from_manifest(path: str | os.PathLike, signs: Signs) -> np.ndarray:
    """The manifest's training images, checked against the loaded dataset."""
    rows = read_manifest(path)
    n = len(signs.train)
    picked = []
    for row in rows:
        i = row["index"]
        if not 0 <= i < n:
            raise EdgeSignsError(f"{path}: index {i} outside the training set (0..{n - 1}); is this the SIGNS training set?")
        image = signs.train.x[i]
        if signs.train.y[i] != row["label"] or pixel_hash(image) != row["pixels_sha256"]:
            raise EdgeSignsError(f"{path}: image {i} ({row['file'] or 'no file name'}) differs from the loaded data at {signs.source}; the manifest belongs to another copy of SIGNS")
        picked.append(image)
    return np.stack(picked) if picked else np.zeros((0, config.IMAGE_SIZE, config.IMAGE_SIZE, 3), np.uint8)


def images_from_folder(folder: str | os.PathLike, *, log: Log = log_stderr) -> np.ndarray:
    """Every image under ``folder`` (recursively), through the camera preprocessing path.

    A labelled folder of your own (<label>/*.jpg, collect's output) gives only the images
    outside its held-out sessions/photos: those stay unseen by every step, so that
    `evaluate --split heldout` measures frames the model and its int8 ranges never met.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeSignsError(f"{folder}: calibration folder not found")
    try:
        own = load_labelled(folder)
    except EdgeSignsError:  # not a labelled folder (or an empty one): every image in it, as before
        own = None
    if own is not None:
        rest = own_split(own, "train")
        log(f"calibrating on {len(rest)} of the {len(own)} images in {folder} (its held-out sessions/photos left out)")
        return rest.x
    images = [frame_to_rgb(read_image_bgr(path)) for path in sorted(p for p in folder.rglob("*") if is_image_name(p.name))]
    return np.stack(images) if images else np.zeros((0, config.IMAGE_SIZE, config.IMAGE_SIZE, 3), np.uint8)


def check_count(count: int, source: str, *, minimum: int = config.CALIBRATION_MIN,
                recommended: int = config.CALIBRATION_RECOMMENDED,
                log: Log = log_stderr) -> None:
    if count < minimum:
        raise EdgeSignsError(f"{source}: {count} calibration image(s), at least {minimum} needed for stable int8 ranges ({recommended}+ recommended)")
    if count < recommended:
        log(f"warning: {source}: only {count} calibration images; {recommended}+ are recommended for int8 ranges that hold up")
