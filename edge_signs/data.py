"""SIGNS: the course's HDF5 pair or a Keras-style image folder, found, loaded and split.

numpy, h5py and OpenCV only. Every problem with the data is an
``EdgeSignsError`` that names the file and what was expected.

Where the data is looked for, in order: ``--signs DIR``, ``$EDGE_SIGNS_DATA``,
the Keras dataset cache (``~/.keras/datasets/signs``). When none has it, the two
course files are fetched into the cache (``fetch``). Folders of one's own labelled
images are ``own_data``'s.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

try:  # only the HDF5 layout needs it: a Pi with image folders can do without
    import h5py
except ImportError:
    h5py = None

from edge_signs import config
from edge_signs.errors import EdgeSignsError
from edge_signs.fetch import fetch_signs
from edge_signs.images import IMAGE_SUFFIXES, class_folder_images, read_image_bgr
from edge_signs.log import Log, log_stderr
from edge_signs.preprocess import frame_to_rgb, square_resize


@dataclass
class Split:
    x: np.ndarray  # uint8 (N, 64, 64, 3) RGB
    y: np.ndarray  # int64 (N,), 0..5

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Signs:
    train: Split
    test: Split
    source: str  # the folder it came from
    layout: str  # "hdf5" or "images"
    notes: list[str] = field(default_factory=list)

    def checksum(self) -> str:
        """sha256 of the pixels and labels: the same data gives the same value from either layout."""
        digest = hashlib.sha256()
        for part in (self.train.x, self.train.y, self.test.x, self.test.y):
            digest.update(np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()


# -- HDF5 ----------------------------------------------------------------------


def _read_h5_split(path: Path, split: str) -> Split:
    if h5py is None:
        raise EdgeSignsError(f"{path}: reading the HDF5 layout needs h5py (pip install h5py), or use the image-folder layout")
    if not path.is_file():
        raise EdgeSignsError(f"{path}: file not found (expected the course's {path.name})")
    if not h5py.is_hdf5(path):
        raise EdgeSignsError(f"{path}: not an HDF5 file (expected the course's {path.name})")
    xk, yk = f"{split}_set_x", f"{split}_set_y"
    try:
        with h5py.File(path, "r") as f:
            for key in (xk, yk):
                if key not in f:
                    raise EdgeSignsError(f"{path}: dataset '{key}' missing (has: {', '.join(sorted(f.keys())) or 'nothing'})")
            x, y = f[xk][()], f[yk][()]
    except OSError as exc:
        raise EdgeSignsError(f"{path}: unreadable HDF5 file ({exc})") from None
    expected = (config.IMAGE_SIZE, config.IMAGE_SIZE, config.CHANNELS)
    if x.ndim != 4 or x.shape[3] != config.CHANNELS or min(x.shape[1:3], default=0) < 1:
        raise EdgeSignsError(f"{path}: '{xk}' has shape {x.shape}, expected (N, {expected[0]}, {expected[1]}, 3) RGB images")
    if x.dtype != np.uint8:
        raise EdgeSignsError(f"{path}: '{xk}' has dtype {x.dtype}, expected uint8 pixels")
    if y.ndim != 1 or len(y) != len(x):
        raise EdgeSignsError(f"{path}: '{yk}' has shape {y.shape}, expected ({len(x)},) labels")
    if not np.issubdtype(y.dtype, np.integer):
        raise EdgeSignsError(f"{path}: '{yk}' has dtype {y.dtype}, expected integer labels")
    return Split(x, y.astype(np.int64))


def load_h5(folder: Path) -> Signs:
    notes: list[str] = []
    train = _read_h5_split(folder / config.H5_FILES[0], "train")
    test = _read_h5_split(folder / config.H5_FILES[1], "test")
    for name, split in (("train", train), ("test", test)):
        check_split(split, folder / f"{name}_signs.h5", name)
        if split.x.shape[1:3] != (config.IMAGE_SIZE, config.IMAGE_SIZE):
            notes.append(f"{folder / f'{name}_signs.h5'}: images are {split.x.shape[1]}x{split.x.shape[2]}, centre-cropped and resized to {config.IMAGE_SIZE}x{config.IMAGE_SIZE}")
            split.x = np.stack([square_resize(im) for im in split.x])
    return Signs(train, test, str(folder), "hdf5", notes)


# -- image folders ---------------------------------------------------------------


def _read_image_folder(folder: Path, notes: list[str]) -> Split:
    if not folder.is_dir():
        raise EdgeSignsError(f"{folder}: folder not found (expected {folder.name}/<label>/*.jpg with labels {', '.join(config.LABELS)})")
    images, labels = [], []
    resized = 0
    for label_index, label in enumerate(config.LABELS):
        class_dir = folder / label
        if not class_dir.is_dir():
            raise EdgeSignsError(f"{class_dir}: class folder missing (expected one folder per label {', '.join(config.LABELS)})")
        files = class_folder_images(class_dir, notes)
        if not files:
            raise EdgeSignsError(f"{class_dir}: empty class folder (expected images: {', '.join(sorted(IMAGE_SUFFIXES))})")
        for path in files:
            bgr = read_image_bgr(path, notes)
            resized += bgr.shape[:2] != (config.IMAGE_SIZE, config.IMAGE_SIZE)
            images.append(frame_to_rgb(bgr))  # the camera's path: centred square, resize, RGB
            labels.append(label_index)
    extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in config.LABELS)
    if extra:
        raise EdgeSignsError(f"{folder}: unexpected class folder(s) {', '.join(extra)} (labels are {', '.join(config.LABELS)})")
    if resized:
        notes.append(f"{folder}: {resized} image(s) not {config.IMAGE_SIZE}x{config.IMAGE_SIZE}, centre-cropped to a square and resized")
    split = Split(np.stack(images), np.asarray(labels, dtype=np.int64))
    check_split(split, folder, folder.name if folder.name in config.MIN_IMAGES_PER_CLASS else "train")
    return split


def load_images(folder: Path) -> Signs:
    notes: list[str] = []
    train = _read_image_folder(folder / "train", notes)
    test = _read_image_folder(folder / "test", notes)
    return Signs(train, test, str(folder), "images", notes)


def check_split(split: Split, where: str | os.PathLike, name: str) -> None:
    """The rules every layout is held to: labels in range, every class present, enough images per class."""
    y = split.y
    bad = y[(y < 0) | (y >= config.NUM_CLASSES)]
    if bad.size:
        raise EdgeSignsError(f"{where}: labels outside 0..{config.NUM_CLASSES - 1} (found {sorted(set(bad.tolist()))[:5]})")
    minimum = config.MIN_IMAGES_PER_CLASS[name]
    counts = np.bincount(y, minlength=config.NUM_CLASSES)
    short = [f"{config.LABELS[k]}: {int(n)}" for k, n in enumerate(counts) if n < minimum]
    if short:
        raise EdgeSignsError(f"{where}: the {name} set needs at least {minimum} image(s) of every class "
                             f"({', '.join(config.LABELS)}); too few of {', '.join(short)} ({len(y)} images in all)")


# -- finding the data ----------------------------------------------------------------


def detect_layout(folder: Path) -> tuple[str, Path] | None:
    """('hdf5'|'images', folder) for the data in ``folder``, or None.

    The HDF5 pair wins when both are present (it holds the course's exact test
    pixels); an ``images/`` subfolder is looked into as well.
    """
    if any((folder / name).exists() for name in config.H5_FILES):
        return "hdf5", folder
    if (folder / "train").is_dir() or (folder / "test").is_dir():
        return "images", folder
    if (folder / "images").is_dir():
        return "images", folder / "images"
    return None


def check_signs_folder(folder: str | os.PathLike) -> tuple[str, Path]:
    """('hdf5'|'images', where) for a folder that must hold SIGNS; a one-line error when it does not (nothing is read)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EdgeSignsError(f"{folder}: data folder not found (expected {config.H5_FILES[0]}/{config.H5_FILES[1]} or train/ and test/ image folders)")
    found = detect_layout(folder)
    if found is None:
        raise EdgeSignsError(f"{folder}: no SIGNS data (expected {config.H5_FILES[0]} and {config.H5_FILES[1]}, or train/<label>/ and test/<label>/ image folders)")
    return found


def load_signs(folder: str | os.PathLike, *, log: Log | None = None) -> Signs:
    """Load SIGNS from one folder (either layout). Resizing is reported once through ``log``."""
    layout, where = check_signs_folder(folder)
    signs = load_h5(where) if layout == "hdf5" else load_images(where)
    if log:
        for note in signs.notes:
            log(note)
    return signs


def candidate_folders(data: str | os.PathLike | None) -> list[tuple[str, Path]]:
    places = []
    if data:
        places.append(("--signs", Path(data)))
    if os.environ.get(config.DATA_ENV_VAR):
        places.append((f"${config.DATA_ENV_VAR}", Path(os.environ[config.DATA_ENV_VAR])))
    places.append(("Keras cache", config.keras_cache_dir()))
    return places


def resolve_data(
    data: str | os.PathLike | None = None,
    *,
    fetch: bool = True,
    log: Log = log_stderr,
) -> Signs:
    """Load SIGNS from the first place that has it; fetch into the cache as a last resort.

    An explicit ``--data`` folder or ``$EDGE_SIGNS_DATA`` is never silently skipped: it must hold the data.
    """
    if data is not None:
        return load_signs(data, log=log)
    if os.environ.get(config.DATA_ENV_VAR):  # set on purpose: a wrong value is an error, not a reason to download
        return load_signs(os.environ[config.DATA_ENV_VAR], log=log)
    places = candidate_folders(None)
    for _, folder in places:
        if folder.is_dir() and detect_layout(folder) is not None:
            return load_signs(folder, log=log)
    if not fetch:
        raise EdgeSignsError(_not_found_message(places))
    cache = config.keras_cache_dir()
    log(f"SIGNS not found locally; fetching the course files into {cache}")
    try:
        fetch_signs(cache, log=log)
    except EdgeSignsError as exc:
        raise EdgeSignsError(f"{exc}; {_not_found_message(places)}") from None
    return load_signs(cache, log=log)


def _not_found_message(places) -> str:
    where = "; ".join(f"{label}: {folder}" for label, folder in places)
    return (
        f"SIGNS data not found (looked in {where}); pass --signs DIR, set ${config.DATA_ENV_VAR}, "
        f"or run 'edge-signs data fetch' while online"
    )


# -- splits ---------------------------------------------------------------------------------


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): ``fraction`` of each class held out, chosen with ``seed``."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def train_val_split(y: np.ndarray, val_fraction: float, seed: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the training set: (train, validation), as `edge-signs train` splits it.

    ``limit`` first keeps a stratified subset of that many images (smoke runs).
    Anything that reports on a run's splits calls this with the run's options.
    """
    pool = np.arange(len(y))
    if limit:
        _, pool = stratified_split(y, min(1.0, limit / len(y)), seed)
    keep, held = stratified_split(y[pool], val_fraction, seed)
    return pool[keep], pool[held]
