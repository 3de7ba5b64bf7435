"""Load SIGNS from the course's HDF5 pair or a Keras-style image folder.

numpy, h5py and OpenCV only. Every problem with the data is an
``EdgeSignsError`` that names the file and what was expected.

Where the data is looked for, in order: ``--signs DIR``, ``$EDGE_SIGNS_DATA``,
the Keras dataset cache (``~/.keras/datasets/signs``). When none has it, the two
course files are fetched once into the cache from a pinned mirror and verified
by hash, the way ``keras.datasets`` do.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

try:  # only the HDF5 layout needs it: a Pi with image folders can do without
    import h5py
except ImportError:
    h5py = None

from edge_signs import config
from edge_signs.artifacts import atomic_path
from edge_signs.preprocess import frame_to_rgb, square_resize
from edge_signs.errors import EdgeSignsError
from edge_signs.images import IMAGE_SUFFIXES, class_folder_images, read_image_bgr
from edge_signs.log import Log, log_stderr


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


# -- fetching ----------------------------------------------------------------------------


def git_blob_sha1(data: bytes) -> str:
    """The hash git gives a file's content: verifiable without git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fetch_signs(
    cache: str | os.PathLike | None = None,
    *,
    base_url: str = config.MIRROR_BASE_URL,
    blob_sha1: Mapping[str, str] = config.MIRROR_BLOB_SHA1,
    log: Log = log_stderr,
    timeout: float = 60.0,
) -> Path:
    """Download each file of ``blob_sha1`` from ``base_url`` into ``cache`` once, verified by hash."""
    cache = Path(cache) if cache is not None else config.keras_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for name, expected in blob_sha1.items():
        target = cache / name
        if target.is_file() and git_blob_sha1(target.read_bytes()) == expected:
            log(f"{target}: already there, hash verified")
            continue
        url = base_url + name
        log(f"fetching {url}")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                content = response.read()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise EdgeSignsError(f"{url}: download failed ({getattr(exc, 'reason', exc)})") from None
        actual = git_blob_sha1(content)
        if actual != expected:
            raise EdgeSignsError(f"{url}: hash mismatch (git blob sha1 {actual}, expected {expected}); file not saved")
        with atomic_path(target) as tmp:
            tmp.write_bytes(content)
        log(f"{target}: saved ({len(content) / 1e6:.1f} MB, hash verified)")
    return cache


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


# -- your own labelled images ---------------------------------------------------------------


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
