"""Shared fixtures: the real SIGNS data from ../shared, and one small real model.

The model is a real ResNet50 trained for one epoch on a small stratified subset
(seconds on a CPU), then converted to all three TFLite formats; it is built once
per test session and shared by the quantize, evaluate and live tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SIGNS_DIR = Path(os.environ.get("EDGE_SIGNS_DATA") or REPO.parent / "shared" / "datasets" / "signs")


def run_cli(*args, env=None, timeout=600, **kwargs) -> subprocess.CompletedProcess:
    """Run `edge-signs ARGS` in a fresh interpreter, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edge_signs", *map(str, args)],
        capture_output=True, text=True, env=full_env, timeout=timeout, cwd=kwargs.pop("cwd", REPO), **kwargs,
    )


@pytest.fixture(scope="session")
def signs_dir() -> Path:
    if not (SIGNS_DIR / "test_signs.h5").is_file():
        pytest.fail(f"SIGNS data not found at {SIGNS_DIR}; set EDGE_SIGNS_DATA")
    return SIGNS_DIR


@pytest.fixture(scope="session")
def signs(signs_dir):
    from edge_signs.data import load_signs

    return load_signs(signs_dir)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, signs):
    """A run folder from a real (one-epoch, 96-image) `train`: model.keras and friends."""
    from edge_signs.trainer.train import TrainOptions, train

    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    train(TrainOptions(recipe="seed", limit=96, overrides={"epochs": 1}), run_dir, data=signs, verbose=0, log=lambda m: None)
    return run_dir


@pytest.fixture(scope="session")
def tflite_models(tiny_run, signs) -> dict[str, Path]:
    """float32, float16 and int8 files of the tiny model, calibrated on the committed manifest."""
    from edge_signs.trainer.quantize import quantize

    paths = quantize(tiny_run / "model.keras", ["float32", "float16", "int8"], data=signs, log=lambda m: None)
    return {p.stem.rsplit("_", 1)[1]: p for p in paths}
