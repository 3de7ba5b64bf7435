"""Shared fixtures: where SIGNS is, the committed tiny TFLite models, and one small real ResNet50.

Layout of the suite:

    tests/edge     the Raspberry Pi side (edge_signs.edge, the CLI's live/evaluate on .tflite files);
                   runs without TensorFlow, on the committed tiny models in tests/fixtures
    tests/shared   numpy/OpenCV modules both sides use (data, plots, perturb, metrics); no TensorFlow
    tests/trainer  training, conversion, Keras evaluation; needs TensorFlow (skipped without it)

Nothing that tests/edge or tests/shared use may import TensorFlow or train: the
``tiny_run`` and ``tflite_models`` fixtures below are for tests/trainer only, and
every test that uses them is marked ``slow``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_signs import config

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The one place the tests look for SIGNS: $EDGE_SIGNS_DATA, else the shared copy beside the checkout.
SIGNS_DIR = Path(os.environ.get(config.DATA_ENV_VAR) or REPO.parent / "shared" / "datasets" / "signs")
# The other shared sets lie beside SIGNS (found so from a copy of the tests outside the checkout too).
HANDS_DIR = Path(os.environ.get("EDGE_SIGNS_HANDS") or SIGNS_DIR.parent / "hands-webcam")
SLD_DEV_DIR = SIGNS_DIR.parent / "sld-dev"


def load_tool(name: str):
    """tools/<name>.py as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
        pytest.fail(f"SIGNS data not found at {SIGNS_DIR}; set {config.DATA_ENV_VAR}")
    return SIGNS_DIR


@pytest.fixture(scope="session")
def signs(signs_dir):
    from edge_signs.data import load_signs

    return load_signs(signs_dir)


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """The committed tiny classifier (tests/fixtures/make_tiny_model.py): format -> .tflite, each with its sidecar."""
    models = {fmt: FIXTURES / f"tiny_{fmt}.tflite" for fmt in config.FORMATS}
    missing = [p.name for p in models.values() if not p.is_file() or not p.with_suffix(".json").is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} (or its .json) missing from {FIXTURES}: regenerate with tests/fixtures/make_tiny_model.py")
    return models


# -- a real ResNet50: tests/trainer only, and only in tests marked slow ----------------------------------


@contextlib.contextmanager
def made_once(tmp_path_factory, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder for ``name`` that every xdist worker of this session shares, and whether it still has to be made.

    The first worker to ask makes it while the others wait on the lock; they then read what it made.
    Without xdist it is a fresh temporary folder. Whoever makes it must not raise for it to count as made."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield tmp_path_factory.mktemp(name), True
        return
    folder = tmp_path_factory.getbasetemp().parent / name  # the session's folder, above each worker's own
    folder.mkdir(exist_ok=True)
    with open(folder.parent / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = folder / ".made"
        yield folder, not made.exists()
        made.touch()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, signs):
    """A run folder from a real (one-epoch, 96-image) `train`: model.keras and friends. Read it, never write into it."""
    with made_once(tmp_path_factory, "tiny") as (folder, to_make):
        run_dir = folder / "run"
        if to_make:
            from edge_signs.trainer.train import TrainOptions, train

            train(TrainOptions(recipe="seed", limit=96, overrides={"epochs": 1}), run_dir, data=signs, verbose=0, log=lambda m: None)
    return run_dir


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory, tiny_run, signs) -> dict[str, Path]:
    """float32, float16 and int8 files of the one-epoch ResNet50, calibrated on the committed manifest."""
    formats = ["float32", "float16", "int8"]
    with made_once(tmp_path_factory, "tiny-tflite") as (_, to_make):
        if to_make:
            from edge_signs.trainer.quantize import quantize

            quantize(tiny_run / "model.keras", formats, data=signs, log=lambda m: None)
    return {fmt: tiny_run / f"model_{fmt}.tflite" for fmt in formats}


HEAVY_FIXTURES = {"tiny_run", "tflite_models"}  # train or convert a real ResNet50


def pytest_collection_modifyitems(config, items):
    """Keep the layout honest: no heavy fixture on the Pi side, and every test that uses one is marked slow.

"""
    tf_free = (Path(__file__).parent / "edge", Path(__file__).parent / "shared")
    for item in items:
        heavy = HEAVY_FIXTURES & set(getattr(item, "fixturenames", ()))
        if not heavy:
            continue
        if any(Path(item.path).is_relative_to(d) for d in tf_free):
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(heavy))}: tests/edge and tests/shared must run without TensorFlow")
        if item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(heavy))} (trains or converts a ResNet50) but is not marked slow")
