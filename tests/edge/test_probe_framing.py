"""tools/probe_framing.py: the framing probe that points training augmentation at a folder's gap (no TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np

from edge_signs.edge.runtime import Classifier
from edge_signs.own_data import load_labelled
from tests.conftest import REPO, load_tool

TOOL = REPO / "tools" / "probe_framing.py"


def _labelled_folder(root, signs, per_class=3):
    for label in range(6):
        (root / str(label)).mkdir(parents=True)
        for i, image in enumerate(signs.test.x[signs.test.y == label][:per_class]):
            cv2.imwrite(str(root / str(label) / f"photo{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


def test_the_changes_frame_the_photo_as_they_say():
    affine = load_tool("probe_framing").affine
    image = np.zeros((64, 64, 3), np.uint8)
    image[20:30, 30:34] = 255  # a bright bar above the centre
    assert np.array_equal(affine(image), image)
    assert np.array_equal(affine(image, down=8)[28:38, 30:34], image[20:30, 30:34])  # moved down by 8 rows
    assert affine(image, scale=0.5).astype(bool).sum() < image.astype(bool).sum() / 2  # smaller in the frame
    turned = affine(image, angle=90)  # counter-clockwise: the bar above the centre ends left of it
    ys, xs = np.nonzero(turned[..., 0] > 127)
    assert xs.max() < 32 and abs(ys.mean() - 31.5) < 3


def test_the_hand_rows_change_the_hand_and_keep_the_wall(signs):
    hand_gain = load_tool("probe_framing").hand_gain
    for image in signs.test.x[:8]:
        darker = hand_gain(image, 0.6).astype(int)
        changed = np.abs(darker - image).max(axis=-1) > 0
        assert 0.1 < changed.mean() < 0.7  # the hand and arm, not the frame
        assert (darker[changed] <= image[changed]).all()
        assert np.array_equal(darker[:4, :4], image[:4, :4])  # the top corners are wall


def test_the_probe_scores_each_change_with_the_interpreter(tmp_path, tiny_models, signs):
    folder = _labelled_folder(tmp_path / "photos", signs)
    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, str(TOOL), str(tiny_models["int8"]), "--data", str(folder), "--json", str(out), "--threads", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result["changes"]) == set(load_tool("probe_framing").CHANGES) and result["images"] == 18
    own = load_labelled(folder)
    direct = float((Classifier(tiny_models["int8"], threads=1).predict_batch(own.x).argmax(1) == own.y).mean())
    assert result["changes"]["as they are"]["accuracy"] == direct
    assert all(sum(row["predicted_per_sign"]) == 18 and 0 <= row["accuracy"] <= 1 for row in result["changes"].values())
    grid = result["grid"]["accuracy"]
    assert len(grid) == len(result["grid"]["scales"]) and all(len(row) == len(result["grid"]["shifts_down_px"]) for row in grid)
    assert grid[0][0] == direct  # scale 1, no shift: the photos as they are
    assert "as they are" in proc.stdout and "scale \\ down px" in proc.stdout


def test_a_folder_that_is_not_labelled_is_one_line(tmp_path, tiny_models):
    (tmp_path / "flat").mkdir()
    proc = subprocess.run([sys.executable, str(TOOL), str(tiny_models["int8"]), "--data", str(tmp_path / "flat")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "no class folders" in proc.stderr.strip().splitlines()[-1]
