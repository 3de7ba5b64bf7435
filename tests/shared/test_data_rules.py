"""Bad data: the HDF5 and image-folder layouts are held to the same rules (every class present, a
minimum number of images), and every rejected file is named in one line, never a traceback (an
empty training set, 0x0 images, a truncated JPEG).

Small fixtures made here; `data info` runs in a fresh process as a user would. No TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from edge_signs import config
from edge_signs.data import load_signs
from edge_signs.errors import EdgeSignsError
from tests.conftest import run_cli
from tests.faults import one_line_error


def _images(counts: list[int], size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Distinct RGB images, ``counts[k]`` of class k."""
    y = np.repeat(np.arange(len(counts)), counts).astype(np.int64)
    rng = np.random.default_rng(len(y))
    x = rng.integers(0, 256, (len(y), size, size, 3), dtype=np.uint8) if size else np.zeros((len(y), 0, 0, 3), np.uint8)
    return x, y


def _h5_pair(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    test = test if test is not None else _images([1] * config.NUM_CLASSES)
    for (x, y), split, name in ((train, "train", config.H5_FILES[0]), (test, "test", config.H5_FILES[1])):
        with h5py.File(folder / name, "w") as f:
            f[f"{split}_set_x"] = x
            f[f"{split}_set_y"] = y
    return folder


def _image_folders(folder: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """The same images as PNG files (lossless: the pixels, and so the checksum, survive)."""
    test = test if test is not None else _images([1] * config.NUM_CLASSES)
    for (x, y), split in ((train, "train"), (test, "test")):
        for label in config.LABELS:
            (folder / split / label).mkdir(parents=True, exist_ok=True)
        for i, (rgb, k) in enumerate(zip(x, y)):
            cv2.imwrite(str(folder / split / config.LABELS[k] / f"{i:04d}.png"), rgb[..., ::-1])
    return folder


# -- HDF5 files a user might bring ------------------------------------------------------------


def test_hdf5_with_an_empty_training_set(tmp_path):
    """An HDF5 with an empty training set: one line naming the file and the minimum, not an arithmetic error."""
    data = _h5_pair(tmp_path / "h5", _images([0] * config.NUM_CLASSES))
    one_line_error(run_cli("data", "info", "--signs", data), "train_signs.h5", "at least", "0 images in all")
    with pytest.raises(EdgeSignsError, match="train set needs at least"):
        load_signs(data)


def test_hdf5_with_0x0_images(tmp_path):
    """`data info` on an HDF5 with 0x0 images: one line naming the shape, not an OpenCV traceback."""
    data = _h5_pair(tmp_path / "h5", _images([2] * config.NUM_CLASSES, size=0))
    one_line_error(run_cli("data", "info", "--signs", data), "train_signs.h5", "shape", "(12, 0, 0, 3)")


def test_hdf5_training_set_missing_a_class(tmp_path):
    """An HDF5 training set missing a class is refused, naming the class."""
    data = _h5_pair(tmp_path / "h5", _images([2, 2, 2, 2, 2, 0]))
    one_line_error(run_cli("data", "info", "--signs", data), "train_signs.h5", "too few of 5: 0")


def test_hdf5_training_set_of_3_images(tmp_path):
    """An HDF5 training set holding 3 images is refused, naming every class short of the minimum."""
    data = _h5_pair(tmp_path / "h5", _images([1, 1, 1, 0, 0, 0]))
    line = one_line_error(run_cli("data", "info", "--signs", data), "train_signs.h5", "3 images in all")
    assert all(f"{label}: " in line for label in config.LABELS)  # every class short of the minimum is named


def test_hdf5_test_set_missing_a_class(tmp_path):
    """The test set of the HDF5 layout is held to the same rule as the training set: every class present."""
    data = _h5_pair(tmp_path / "h5", _images([2] * config.NUM_CLASSES), test=_images([1, 1, 1, 1, 1, 0]))
    one_line_error(run_cli("data", "info", "--signs", data), "test_signs.h5", "too few of 5: 0")


# -- both layouts, one rule ------------------------------------------------------------------------


@pytest.mark.parametrize("short", ["one class", "every class"])
def test_both_layouts_refuse_the_same_short_training_set(tmp_path, short):
    """The image-folder layout refuses the same short training set the HDF5 layout does: one
    minimum number of images for both."""
    enough = config.MIN_IMAGES_PER_CLASS["train"]
    assert enough >= 2  # one fewer still leaves an image in the folder: not simply an empty class folder
    counts = [enough] * (config.NUM_CLASSES - 1) + [enough - 1] if short == "one class" else [enough - 1] * config.NUM_CLASSES
    train = _images(counts)
    errors = {}
    for layout, make in (("hdf5", _h5_pair), ("images", _image_folders)):
        folder = make(tmp_path / layout, train)
        with pytest.raises(EdgeSignsError) as err:
            load_signs(folder)
        errors[layout] = str(err.value).split(": ", 1)[1]  # without the path, which differs
    assert errors["hdf5"] == errors["images"]
    assert f"needs at least {config.MIN_IMAGES_PER_CLASS['train']} image(s) of every class" in errors["hdf5"]


def test_both_layouts_accept_the_minimum_and_give_the_same_data(tmp_path):
    """At the minimum both layouts load, with the same pixels, labels and checksum (the checksum guards --resume)."""
    train = _images([config.MIN_IMAGES_PER_CLASS["train"]] * config.NUM_CLASSES)
    test = _images([config.MIN_IMAGES_PER_CLASS["test"]] * config.NUM_CLASSES)
    h5 = load_signs(_h5_pair(tmp_path / "hdf5", train, test))
    images = load_signs(_image_folders(tmp_path / "images", train, test))
    assert (h5.layout, images.layout) == ("hdf5", "images")
    np.testing.assert_array_equal(h5.train.x, images.train.x)
    np.testing.assert_array_equal(h5.train.y, images.train.y)
    assert h5.checksum() == images.checksum()
    proc = run_cli("data", "info", "--signs", tmp_path / "images")
    assert proc.returncode == 0, proc.stderr
    assert f"train {len(train[1])} {[config.MIN_IMAGES_PER_CLASS['train']] * config.NUM_CLASSES}" in proc.stdout
    assert f"sha256 {h5.checksum()[:16]}" in proc.stdout


# -- image files -------------------------------------------------------------------------------------


def test_truncated_jpeg_is_named(tmp_path):
    """A JPEG truncated to half is a one-line error naming the file (libjpeg alone prints
    "Premature end of JPEG file" on stderr and names none)."""
    train, test = _images([2] * config.NUM_CLASSES), _images([1] * config.NUM_CLASSES)
    folder = tmp_path / "imgs"
    for (x, y), split in ((train, "train"), (test, "test")):
        for i, (rgb, k) in enumerate(zip(x, y)):
            (folder / split / config.LABELS[k]).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / split / config.LABELS[k] / f"{i}.jpg"), rgb[..., ::-1])
    bad = folder / "train" / "3" / "7.jpg"
    whole = bad.read_bytes()
    bad.write_bytes(whole[: len(whole) // 2])
    line = one_line_error(run_cli("data", "info", "--signs", folder), str(bad), "truncated JPEG")
    assert "Premature end" not in line


def test_skipped_files_are_named(tmp_path):
    """Every data file that is skipped or rejected is named."""
    folder = _image_folders(tmp_path / "imgs", _images([2] * config.NUM_CLASSES))
    (folder / "train" / "2" / "notes.txt").write_text("not an image")
    proc = run_cli("data", "info", "--signs", folder)
    assert proc.returncode == 0, proc.stderr
    assert "notes.txt" in proc.stderr and "skipped 1 file(s)" in proc.stderr
