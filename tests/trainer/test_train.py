"""Real (small) training runs: outputs, augmentation, resume after a kill."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs import config  # noqa: E402
from edge_signs.config import DEFAULT_RECIPE, RECIPES  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.segment import hand_masks  # noqa: E402
from edge_signs.trainer.datasets import make_dataset  # noqa: E402
from edge_signs.trainer.train import TrainOptions, train  # noqa: E402
from tests.conftest import REPO, run_cli  # noqa: E402

METRIC_KEYS = {"train_accuracy", "train_loss", "val_accuracy", "val_loss", "test_accuracy", "test_loss", "params",
               "seconds_per_epoch", "device", "tensorflow_version", "dataset", "options", "seed"}


def test_augmentation_is_on_by_default_and_keeps_labels_and_ranges(signs):
    assert TrainOptions().recipe == DEFAULT_RECIPE and RECIPES[DEFAULT_RECIPE].augment
    x, y = signs.train.x[:64], signs.train.y[:64]
    ds = make_dataset(x, y, batch_size=64, training=False, augment=RECIPES[DEFAULT_RECIPE], seed=0, masks=hand_masks(x, quiet))
    images, onehot = next(iter(ds))
    images, onehot = images.numpy(), onehot.numpy()
    assert images.shape == (64, 64, 64, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert np.array_equal(onehot.argmax(1), y)  # labels untouched, order kept
    assert np.abs(images - x / 255.0).mean() > 0.02  # the images really changed
    plain, _ = next(iter(make_dataset(x, y, batch_size=64, training=False, augment=None, seed=0)))
    assert np.allclose(plain.numpy(), x / 255.0)


def test_recipe_overrides_and_unknown_names():
    recipe = TrainOptions(recipe="seed", overrides={"epochs": 3, "dropout": None}).resolved_recipe()
    assert recipe == dataclasses.replace(RECIPES["seed"], epochs=3)  # None: not overridden
    with pytest.raises(EdgeSignsError, match="recipe 'fast': unknown"):
        TrainOptions(recipe="fast").resolved_recipe()
    with pytest.raises(EdgeSignsError, match="recipe option.*epoch: unknown"):
        TrainOptions(overrides={"epoch": 3}).resolved_recipe()


def test_resume_without_checkpoint_is_an_error(tmp_path, signs):
    with pytest.raises(EdgeSignsError, match="nothing to resume"):
        train(TrainOptions(), tmp_path / "none", data=signs, resume=True)


def _state_epoch(run_dir):
    try:
        return json.loads((run_dir / "checkpoint" / "state.json").read_text())["epoch"]
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_finished_epoch_and_writes_every_output(tmp_path, signs_dir):
    out = tmp_path / "run"
    args = ["train", "--signs", signs_dir, "--out", out, "--limit", 48, "--epochs", 3, "--set", "rotation=40", "--set", "zoom_in=0.3"]
    proc = subprocess.Popen([sys.executable, "-m", "edge_signs", *map(str, args)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900  # the first epoch also builds and traces the model: minutes on a busy machine
    while _state_epoch(out) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _state_epoch(out)
    assert 1 <= done < 3, "the run should have been killed part-way"
    assert not (out / "model.keras").exists()

    # without --resume the unfinished run is protected
    clash = run_cli(*args)
    assert clash.returncode == 1 and "--resume" in clash.stderr

    resumed = run_cli("train", "--out", out, "--signs", signs_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} after epoch {done}" in resumed.stderr
    assert f"epoch {done + 1}/3: " in resumed.stderr  # the progress line, from the next epoch on
    assert "epoch 1/3: " not in resumed.stderr
    assert "train accuracy" in resumed.stdout and "test accuracy" in resumed.stdout

    for name in ("model.keras", "history.json", "training_curves.png", "metrics.json", "options.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics) and metrics["epochs"] == 3
    assert metrics["params"] == 23_600_006 and metrics["recipe_name"] == DEFAULT_RECIPE and metrics["recipe"]["augment"]
    # --set's fields reach the recipe, and the resumed run kept them without being told again
    assert metrics["recipe"]["rotation"] == 40.0 and metrics["recipe"]["zoom_in"] == 0.3 and metrics["recipe"]["zoom_out"] == RECIPES[DEFAULT_RECIPE].zoom_out
    assert json.loads((out / "options.json").read_text())["overrides"] == {"epochs": 3, "rotation": 40.0, "zoom_in": 0.3}
    assert metrics["dataset"]["test"] == 120 and len(metrics["dataset"]["sha256"]) == 64
    # the default recipe recomputes batch-norm statistics over a few epochs of training batches at the end
    steps = -(-metrics["dataset"]["train"] // metrics["options"]["batch_size"])
    assert metrics["batchnorm_recalibrated"]["batches"] == config.BN_RECALIBRATION_EPOCHS * steps
    assert metrics["batchnorm_recalibrated"]["layers"] == 53
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == len(history["val_accuracy"]) == 3
    assert cv2.imread(str(out / "training_curves.png")) is not None

    # a finished run is not silently overwritten
    again = run_cli(*args)
    assert again.returncode == 1 and "already holds a trained model" in again.stderr
