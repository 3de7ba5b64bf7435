"""tools/probe_surface.py: how much a model reads the sign from the hand's surface rather than its outline."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tests.conftest import REPO, load_tool  # noqa: E402

TOOL = REPO / "tools" / "probe_surface.py"


def test_each_hand_takes_the_surface_of_a_donor_the_rule_allows():
    tool = load_tool("probe_surface")
    labels = np.repeat(np.arange(6), 3)
    greys = 0.05 + 0.03 * np.arange(18)  # each photo's hand a grey of its own, so its donor can be told
    rgba = np.zeros((18, 64, 64, 4), np.float32)
    rgba[..., :3] = 0.9  # the wall
    rgba[:, 12:52, 20:44, :3] = greys[:, None, None, None]
    rgba[:, 12:52, 20:44, 3] = 1.0
    rgba[17, ..., 3] = 1.0  # a mask that was not trusted: never a donor
    low = np.flatnonzero(labels <= 3)
    rules = {"a 4 or a 5": lambda i: (labels >= 4) & (np.arange(18) != 17), "the same sign": lambda i: (labels == labels[i]) & (np.arange(18) != i)}
    for name, allowed in rules.items():
        out = tool.with_surfaces(rgba, labels, low, tool.DONORS[name])
        for image, i in zip(out, low):
            assert np.isclose(greys[allowed(i)], image[32, 32, 0], atol=1e-4).any(), (name, i)
            assert np.allclose(image[:8, :8], 0.9)  # the wall kept


def test_the_probe_prints_its_rows_and_writes_json(tmp_path, signs_dir, tiny_models):
    out = tmp_path / "probe.json"
    done = subprocess.run([sys.executable, str(TOOL), str(tiny_models["int8"]), "--data", str(signs_dir), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert list(result["rows"]) == ["as they are", "surface of a 4 or a 5", "surface of another 0-3", "surface of the same sign"]
    assert 72 <= result["images"] <= 80  # SIGNS test's 0-3s whose mask is trusted
    for row in result["rows"].values():
        assert sum(row["predicted_per_sign"]) == result["images"] and 0 <= row["read_as_4_or_5"] <= 1
        assert row["read_as_4_or_5"] == pytest.approx(sum(row["predicted_per_sign"][4:]) / result["images"])
    assert "surface of a 4 or a 5" in done.stdout


def test_a_missing_model_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(TOOL), str(tmp_path / "none.tflite")], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr and "none.tflite" in done.stderr
