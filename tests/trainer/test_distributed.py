"""tf.distribute past one device: a real (small) training run on two logical CPUs, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tests.conftest import REPO  # noqa: E402

DISTRIBUTED = """
import sys, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from edge_signs.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_trains(tmp_path, signs_dir):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED, "train", "--signs", str(signs_dir), "--out", str(out), "--recipe", "seed",
         "--limit", "64", "--epochs", "4", "--devices", "/cpu:0,/cpu:1"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "MirroredStrategy, 2 replica(s)" in metrics["device"]
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 4
    assert np.isfinite(history["loss"]).all()
    assert min(history["loss"][1:]) < history["loss"][0], history["loss"]  # it learns
