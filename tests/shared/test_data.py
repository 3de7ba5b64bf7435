"""Loading SIGNS from both layouts, fetching, splits, and every bad-data case."""

from __future__ import annotations

import shutil

import cv2
import h5py
import numpy as np
import pytest

from edge_signs import config
from edge_signs.data import load_signs, resolve_data, stratified_split
from edge_signs.errors import EdgeSignsError
from edge_signs.fetch import fetch_signs, git_blob_sha1
from tests.conftest import run_cli


def test_hdf5_layout(signs_dir):
    signs = load_signs(signs_dir)
    assert signs.layout == "hdf5"
    assert signs.train.x.shape == (1080, 64, 64, 3) and signs.train.x.dtype == np.uint8
    assert signs.test.x.shape == (120, 64, 64, 3)
    assert np.bincount(signs.train.y).tolist() == [180] * 6
    assert np.bincount(signs.test.y).tolist() == [20] * 6


def test_image_folder_layout_matches_hdf5_training_set(signs_dir):
    folders = load_signs(signs_dir / "images")
    h5 = load_signs(signs_dir)
    assert folders.layout == "images"
    # train_signs.h5 was rebuilt from the JPEG copy: the same pixels, in sorted folder order
    assert np.array_equal(folders.train.x, h5.train.x)
    assert np.array_equal(folders.train.y, h5.train.y)
    assert np.bincount(folders.test.y).tolist() == [20] * 6


def _copy_h5(signs_dir, tmp_path):
    for name in config.H5_FILES:
        shutil.copy(signs_dir / name, tmp_path / name)
    return tmp_path


def _rewrite(path, key, value):
    with h5py.File(path, "a") as f:
        del f[key]
        f[key] = value


def test_missing_file(signs_dir, tmp_path):
    _copy_h5(signs_dir, tmp_path)
    (tmp_path / "test_signs.h5").unlink()
    with pytest.raises(EdgeSignsError, match=r"test_signs\.h5: file not found"):
        load_signs(tmp_path)


def test_not_hdf5(signs_dir, tmp_path):
    _copy_h5(signs_dir, tmp_path)
    (tmp_path / "train_signs.h5").write_text("this is not HDF5")
    with pytest.raises(EdgeSignsError, match=r"train_signs\.h5: not an HDF5 file"):
        load_signs(tmp_path)


def test_missing_key(signs_dir, tmp_path):
    _copy_h5(signs_dir, tmp_path)
    with h5py.File(tmp_path / "test_signs.h5", "a") as f:
        del f["test_set_y"]
    with pytest.raises(EdgeSignsError, match=r"test_signs\.h5: dataset 'test_set_y' missing"):
        load_signs(tmp_path)


def test_wrong_shape(signs_dir, tmp_path):
    _copy_h5(signs_dir, tmp_path)
    _rewrite(tmp_path / "test_signs.h5", "test_set_x", np.zeros((120, 64, 64), np.uint8))
    with pytest.raises(EdgeSignsError, match=r"'test_set_x' has shape \(120, 64, 64\)"):
        load_signs(tmp_path)


def test_wrong_dtype(signs_dir, tmp_path):
    _copy_h5(signs_dir, tmp_path)
    _rewrite(tmp_path / "test_signs.h5", "test_set_x", np.zeros((120, 64, 64, 3), np.float32))
    with pytest.raises(EdgeSignsError, match=r"'test_set_x' has dtype float32, expected uint8"):
        load_signs(tmp_path)


def test_labels_out_of_range(signs_dir, tmp_path):
    _copy_h5(signs_dir, tmp_path)
    labels = np.arange(120) % 7
    _rewrite(tmp_path / "test_signs.h5", "test_set_y", labels)
    with pytest.raises(EdgeSignsError, match=r"labels outside 0\.\.5 \(found \[6\]\)"):
        load_signs(tmp_path)


def test_other_image_size_is_resized_and_reported_once(signs_dir, tmp_path):
    _copy_h5(signs_dir, tmp_path)
    with h5py.File(signs_dir / "test_signs.h5") as f:
        big = np.stack([cv2.resize(im, (96, 96)) for im in f["test_set_x"][()]])
    _rewrite(tmp_path / "test_signs.h5", "test_set_x", big)
    notes = []
    signs = load_signs(tmp_path, log=notes.append)
    assert signs.test.x.shape == (120, 64, 64, 3)
    assert len(notes) == 1 and "resized to 64x64" in notes[0]


def _image_tree(tmp_path, per_class=2):
    for split in ("train", "test"):
        for label in config.LABELS:
            d = tmp_path / split / label
            d.mkdir(parents=True)
            for i in range(per_class):
                cv2.imwrite(str(d / f"{i}.png"), np.full((64, 64, 3), 40 * int(label), np.uint8))
    return tmp_path


def test_empty_class_folder(tmp_path):
    root = _image_tree(tmp_path)
    for p in (root / "train" / "3").iterdir():
        p.unlink()
    with pytest.raises(EdgeSignsError, match=r"train/3: empty class folder"):
        load_signs(root)


def test_unreadable_image(tmp_path):
    root = _image_tree(tmp_path)
    (root / "test" / "2" / "broken.png").write_bytes(b"\x89PNG definitely not a png")
    with pytest.raises(EdgeSignsError, match=r"broken\.png: unreadable image"):
        load_signs(root)


def test_truncated_jpeg_is_named(tmp_path):
    """libjpeg decodes half a file with a grey bottom and only a stderr warning; the loader names the file."""
    root = _image_tree(tmp_path)
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    ok, jpg = cv2.imencode(".jpg", noise)
    (root / "train" / "3" / "whole.jpg").write_bytes(jpg.tobytes())
    assert len(load_signs(root).train) == 13  # a whole JPEG loads
    cut = root / "train" / "3" / "cut.jpg"
    cut.write_bytes(jpg.tobytes()[: len(jpg) // 2])
    with pytest.raises(EdgeSignsError, match=r"cut\.jpg: truncated JPEG"):
        load_signs(root)


def test_image_folder_resizes_other_sizes(tmp_path):
    root = _image_tree(tmp_path)
    cv2.imwrite(str(root / "train" / "1" / "big.png"), np.zeros((128, 100, 3), np.uint8))
    notes = []
    signs = load_signs(root, log=notes.append)
    assert signs.train.x.shape[1:] == (64, 64, 3) and len(signs.train) == 13
    assert len(notes) == 1 and "1 image(s)" in notes[0]


def test_no_data_in_folder(tmp_path):
    with pytest.raises(EdgeSignsError, match="no SIGNS data"):
        load_signs(tmp_path)


def test_env_var_is_used(signs_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(config.DATA_ENV_VAR, str(signs_dir))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-cache"))
    assert resolve_data(None, fetch=False).source == str(signs_dir)


def test_offline_error_lists_places(monkeypatch, tmp_path):
    monkeypatch.delenv(config.DATA_ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "cache"))
    with pytest.raises(EdgeSignsError) as err:
        resolve_data(None, fetch=False)
    assert "Keras cache" in str(err.value) and "--signs" in str(err.value) and "\n" not in str(err.value)


def test_fetch_from_file_url_verifies_hash(signs_dir, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(signs_dir / "test_signs.h5", mirror / "test_signs.h5")
    pinned = {"test_signs.h5": config.MIRROR_BLOB_SHA1["test_signs.h5"]}
    cache = tmp_path / "cache"
    log = []
    fetch_signs(cache, base_url=mirror.as_uri() + "/", blob_sha1=pinned, log=log.append)
    assert git_blob_sha1((cache / "test_signs.h5").read_bytes()) == pinned["test_signs.h5"]
    # fetched once: a second call finds it in the cache
    fetch_signs(cache, base_url="file:///nonexistent/", blob_sha1=pinned, log=log.append)
    assert "already there" in log[-1]


def test_fetch_rejects_a_corrupt_download(signs_dir, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((signs_dir / "test_signs.h5").read_bytes())
    data[5000] ^= 0xFF
    (mirror / "test_signs.h5").write_bytes(bytes(data))
    with pytest.raises(EdgeSignsError, match="hash mismatch"):
        fetch_signs(tmp_path / "cache", base_url=mirror.as_uri() + "/", blob_sha1={"test_signs.h5": config.MIRROR_BLOB_SHA1["test_signs.h5"]}, log=lambda m: None)
    assert not (tmp_path / "cache" / "test_signs.h5").exists()


def test_stratified_split_is_seeded_and_balanced(signs):
    keep, held = stratified_split(signs.train.y, 0.1, seed=3)
    assert len(held) == 108 and np.bincount(signs.train.y[held]).tolist() == [18] * 6
    assert not set(keep) & set(held)
    assert np.array_equal(held, stratified_split(signs.train.y, 0.1, seed=3)[1])
    assert not np.array_equal(held, stratified_split(signs.train.y, 0.1, seed=4)[1])


def test_cli_bad_data_is_one_line(tmp_path):
    (tmp_path / "train_signs.h5").write_text("junk")
    (tmp_path / "test_signs.h5").write_text("junk")
    result = run_cli("data", "info", "--signs", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "not an HDF5 file" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_env_var_is_an_error_not_a_download(monkeypatch, tmp_path):
    monkeypatch.setenv(config.DATA_ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(EdgeSignsError, match="nowhere: data folder not found"):
        resolve_data(None)
