"""Your own labelled folders: groups, the held-out split that never cuts a session or photo, loading rules."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.errors import EdgeSignsError
from edge_signs.images import IMAGE_SUFFIXES
from edge_signs.own_data import check_own_classes, count_images, group_of, grouped_split, labelled_root, load_labelled, own_split
from tests.conftest import HANDS_DIR

HANDS = HANDS_DIR


@pytest.mark.parametrize("name, group", [
    ("3/s20261127-114211_00042.jpg", "s20261127-114211"),
    ("0/1528664299.56_pic00087_1354.jpg", "1528664299.56_pic00087"),
    ("16_pic00003_7.jpg", "16_pic00003"),
    ("hand.jpg", "hand"),  # no number suffix: a group of its own
    ("my_hand.png", "my_hand"),  # a word after the underscore is part of the name
    ("_12.jpg", "_12"),
])
def test_group_is_the_name_without_its_last_number(name, group):
    assert group_of(name) == group


def test_grouped_split_keeps_groups_whole_and_is_stable_as_a_folder_grows():
    groups = [f"s{i // 3}" for i in range(600)]  # 200 sessions of 3 frames
    keep, held = grouped_split(groups, 0.2, "salt")
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(600))
    assert not {groups[i] for i in keep} & {groups[i] for i in held}
    assert 0.12 < len({groups[i] for i in held}) / 200 < 0.28
    # new sessions never move old ones between the splits; another salt gives another split
    grown = groups + [f"new{i}" for i in range(50)]
    _, held_grown = grouped_split(grown, 0.2, "salt")
    assert set(held_grown[held_grown < 600].tolist()) == set(held.tolist())
    assert set(grouped_split(groups, 0.2, "other")[1].tolist()) != set(held.tolist())


def _write(folder: Path, label: str, name: str, size=(96, 96), value=128) -> Path:
    path = folder / label / name
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((*size[::-1], 3), value, np.uint8)
    cv2.circle(img, (size[0] // 2, size[1] // 2), min(size) // 4, (255, 0, 0), -1)
    assert cv2.imwrite(str(path), img)
    return path


def test_load_labelled_reads_label_folders_in_either_layout(tmp_path):
    for layout in ("flat", "keras"):
        root = tmp_path / layout / ("train" if layout == "keras" else "")
        for k, label in enumerate(config.LABELS):
            for i in range(2):
                _write(root, label, f"s1_{k}{i:04d}.jpg", value=40 * k)
        own = load_labelled(tmp_path / layout)
        assert labelled_root(tmp_path / layout) == root
        assert own.x.shape == (12, config.IMAGE_SIZE, config.IMAGE_SIZE, 3) and own.x.dtype == np.uint8
        assert own.counts() == [2] * 6 and own.files[0] == "0/s1_00000.jpg" and set(own.groups) == {"s1"}


def test_mixed_sizes_missing_classes_and_stray_folders_are_named(tmp_path):
    _write(tmp_path, "0", "a_1.jpg", size=(128, 128))
    _write(tmp_path, "0", "a_2.jpg", size=(640, 480))
    _write(tmp_path, "5", "b_1.jpg", size=(128, 128))
    (tmp_path / "junk").mkdir()
    notes = []
    own = load_labelled(tmp_path, log=notes.append)
    assert len(own) == 3 and own.counts() == [2, 0, 0, 0, 0, 1]
    text = "\n".join(notes)
    assert "mixed image sizes (128x128 (2), 640x480 (1))" in text
    assert "no images of class(es) 1, 2, 3, 4" in text and "ignored folder(s) that are not labels: junk" in text


def test_folders_without_labelled_images_are_one_line_errors(tmp_path):
    with pytest.raises(EdgeSignsError, match="folder not found"):
        load_labelled(tmp_path / "missing")
    (tmp_path / "photos").mkdir()
    with pytest.raises(EdgeSignsError, match="no class folders"):
        load_labelled(tmp_path / "photos")
    (tmp_path / "photos" / "3").mkdir()
    with pytest.raises(EdgeSignsError, match="no images in its class folders"):
        load_labelled(tmp_path / "photos")
    (tmp_path / "photos" / "3" / "bad_1.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(EdgeSignsError, match="bad_1.jpg: truncated JPEG"):
        load_labelled(tmp_path / "photos")


def test_fine_tuning_minimum_per_class_is_a_clear_error(tmp_path):
    for k, label in enumerate(config.LABELS):
        for i in range(config.OWN_MIN_PER_CLASS if label != "4" else 3):
            _write(tmp_path, label, f"s{k}_{i:05d}.jpg")
    own = load_labelled(tmp_path)
    with pytest.raises(EdgeSignsError, match=rf"at least {config.OWN_MIN_PER_CLASS} images of every class .*too few of 4: 3"):
        check_own_classes(own, "fine-tuning")


@pytest.mark.skipif(not HANDS.is_dir(), reason="hands-webcam not here")
def test_hands_webcam_held_out_by_photo():
    own = load_labelled(HANDS)
    assert len(own) == 1381 and own.counts() == [394, 180, 164, 189, 182, 272]
    held, rest = own_split(own, "heldout"), own_split(own, "train")
    assert len(held) + len(rest) == len(own)
    assert not set(held.groups) & set(rest.groups)  # no photo on both sides
    assert 0.15 < len(held) / len(own) < 0.25 and min(held.counts()) > 0
    # the split is fixed: evaluate finds the images fine-tuning never saw without knowing its seed
    assert own_split(own, "heldout").files == held.files


# -- every skipped file named; damaged files refused for what is wrong with them ----------------------------------


def _jpeg_bytes(value: int = 90, size: int = 96) -> bytes:
    img = np.full((size, size, 3), value, np.uint8)
    cv2.circle(img, (size // 2, size // 2), size // 4, (255, 0, 0), -1)
    img[::7] = 255 - value  # detail, so the entropy-coded data is long enough to damage in the middle
    ok, jpg = cv2.imencode(".jpg", img)
    assert ok
    return jpg.tobytes()


def test_every_file_skipped_in_a_class_folder_is_named(tmp_path):
    """A .txt, a nested folder, a symlink loop and a dangling symlink inside a class folder: each named, none silently."""
    _write(tmp_path, "2", "s1_00001.jpg")
    folder = tmp_path / "2"
    (folder / "notes.txt").write_text("camera settings")
    (folder / "nested").mkdir()
    _write(folder, "nested", "s1_00002.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "moved-away.jpg")
    notes: list[str] = []
    own = load_labelled(tmp_path, log=notes.append)
    assert own.files == ["2/s1_00001.jpg"]
    text = "\n".join(notes)
    for name in ("notes.txt", "nested", "loop.jpg", "gone.jpg"):
        assert name in text, (name, text)
    assert all(note.startswith("warning: ") for note in notes)


def test_a_jpeg_damaged_in_the_middle_is_refused_with_libjpegs_reason(tmp_path, capfd):
    """libjpeg decodes a JPEG whose middle is overwritten, with only an anonymous 'Corrupt JPEG data' on stderr: refused,
    naming the file and that warning, and nothing else left on stderr."""
    data = bytearray(_jpeg_bytes())
    middle = len(data) // 2
    data[middle:middle + 48] = b"\x13" * 48
    bad = tmp_path / "4" / "s1_00001.jpg"
    bad.parent.mkdir()
    bad.write_bytes(bytes(data))
    capfd.readouterr()
    with pytest.raises(EdgeSignsError, match=r"s1_00001.jpg: damaged JPEG \(libjpeg: Corrupt JPEG data"):
        load_labelled(tmp_path)
    assert "Corrupt JPEG data" not in capfd.readouterr().err  # said once, in the error


def test_a_png_named_jpg_and_a_jpeg_with_bytes_appended_are_read_and_named(tmp_path):
    """Neither is a truncated JPEG: a PNG named .jpg is read as the PNG it is, a complete JPEG with bytes after its
    end-of-image marker is read whole; each is named for what it really is."""
    _write(tmp_path, "0", "s1_00001.jpg")
    ok, png = cv2.imencode(".png", np.full((80, 80, 3), 200, np.uint8))
    (tmp_path / "0" / "s2_00001.jpg").write_bytes(png.tobytes())
    (tmp_path / "0" / "s3_00001.jpg").write_bytes(_jpeg_bytes() + b"appended by a faulty copy" * 4)
    notes: list[str] = []
    own = load_labelled(tmp_path, log=notes.append)
    assert len(own) == 3
    text = "\n".join(notes)
    assert "s2_00001.jpg: a PNG file named .jpg" in text, text
    assert "s3_00001.jpg: 100 bytes after the JPEG's end-of-image marker" in text, text
    assert "truncated" not in text


def test_count_images_counts_what_loading_reads(tmp_path):
    """Every image suffix the loaders read is counted (any case), hidden and temporary files are not: the counts
    collect reports are the images fine-tuning will load."""
    (tmp_path / "2").mkdir()
    for k, suffix in enumerate(sorted(IMAGE_SUFFIXES)):
        image = np.full((64, 64) if suffix == ".pgm" else (64, 64, 3), 40 * (k % 6), np.uint8)
        ok, data = cv2.imencode(suffix, image)
        assert ok, suffix
        (tmp_path / "2" / f"s1_{k:05d}{suffix.upper() if k % 2 else suffix}").write_bytes(data.tobytes())
    _write(tmp_path, "4", "s2_00001.jpg")
    (tmp_path / "2" / "notes.txt").write_text("not an image")
    (tmp_path / "2" / ".s1_00099.jpg.tmp-123-abc").write_bytes(b"half a crop")
    (tmp_path / "4" / ".hidden.jpg").write_bytes(b"")
    counts = count_images(tmp_path)
    assert counts == {label: {"2": len(IMAGE_SUFFIXES), "4": 1}.get(label, 0) for label in config.LABELS}
    assert counts["2"] == 9
    assert sum(counts.values()) == len(load_labelled(tmp_path))

