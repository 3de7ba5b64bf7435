"""Fine-tuning from a trained model on your own images, with SIGNS mixed in: real (tiny) runs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs import config  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.trainer import keras  # noqa: E402
from edge_signs.trainer.datasets import mixed_dataset  # noqa: E402
from edge_signs.trainer.model import freeze_stages, load_init, stage_of  # noqa: E402
from edge_signs.trainer.train import TrainOptions, train  # noqa: E402
from tests.conftest import run_cli  # noqa: E402


def _own_folder(signs, folder, start: int, per_class: int = 30, session: int = 3):
    """SIGNS training images as a labelled folder of PNGs, ``session`` frames per session: own data with known labels."""
    for label in range(config.NUM_CLASSES):
        idx = np.flatnonzero(signs.train.y == label)[start:start + per_class]
        for n, i in enumerate(idx):
            path = folder / config.LABELS[label] / f"{folder.name}{label}x{n // session:02d}_{n:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(signs.train.x[i], cv2.COLOR_RGB2BGR))
    return folder


@pytest.mark.slow
def test_finetune_cli_from_init_on_two_folders(tiny_run, signs, signs_dir, tmp_path):
    a = _own_folder(signs, tmp_path / "a", 0)
    b = _own_folder(signs, tmp_path / "b", 60)
    out = tmp_path / "ft"
    result = run_cli("finetune", "--init", tiny_run / "model.keras", "--own", a, "--own", b, "--out", out, "--signs", signs_dir,
                     "--epochs", 1, "--batch-size", 16)
    assert result.returncode == 0, result.stderr
    assert "your images, heldout a:" in result.stdout and "your images, heldout b:" in result.stdout and "SIGNS test accuracy" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe_name"] == "finetune" and metrics["init"] == str(tiny_run / "model.keras")
    assert metrics["dataset"]["own"] == [str(a), str(b)] and metrics["test_accuracy"] is not None
    own = metrics["own"]
    assert {"train", "val", "heldout a", "heldout b"} <= set(own)
    assert sum(v["images"] for v in own.values()) == 360  # every image is in exactly one split
    for name in ("model.keras", "history.json", "training_curves.png", "options.json"):
        assert (out / name).is_file(), name
    # the recipe's frozen stages (stem and stage 2) kept the init model's weights; the rest learned
    assert config.RECIPES["finetune"].freeze_stages == 2
    before, after = keras.models.load_model(tiny_run / "model.keras"), keras.models.load_model(out / "model.keras")
    for layer in ("conv1", "res2a_branch2a", "res2c_branch2c"):
        np.testing.assert_array_equal(before.get_layer(layer).get_weights()[0], after.get_layer(layer).get_weights()[0])
    np.testing.assert_array_equal(before.get_layer("bn2a_branch2a").get_weights()[2], after.get_layer("bn2a_branch2a").get_weights()[2])  # moving mean
    for layer in ("res3a_branch2a", "res5c_branch2c", "fc6"):
        assert not np.array_equal(before.get_layer(layer).get_weights()[0], after.get_layer(layer).get_weights()[0]), layer
    assert all(layer.trainable for layer in after.layers)  # the saved model is thawed for whoever trains it next
    # and the fine-tuned model is scored on the held-out folder by evaluate, with the warning for --split all
    scored = run_cli("evaluate", out / "model.keras", "--own", a, "--runs", 1, "--warmup", 0, "--out", tmp_path)
    assert scored.returncode == 0 and "was fine-tuned on" in scored.stderr


def test_mixed_batches_hold_signs_at_the_given_fraction():
    own_x = np.zeros((200, 64, 64, 3), np.uint8)  # own images are black, SIGNS images white: the source is visible
    signs_x = np.full((100, 64, 64, 3), 255, np.uint8)
    y_own, y_signs = np.arange(200) % 6, np.arange(100) % 6
    ds, steps = mixed_dataset(own_x, y_own, signs_x, y_signs, signs_mix=0.3, batch_size=20, augment=None, seed=0)
    assert steps == int(np.ceil(200 / 0.7 / 20))  # one epoch shows each own image once, on average
    from_signs = [float(np.mean(np.asarray(x)[:, 0, 0, 0] > 0.5)) for x, _ in ds.take(40)]
    assert 0.22 < np.mean(from_signs) < 0.38
    only_own, steps_own = mixed_dataset(own_x, y_own, signs_x, y_signs, signs_mix=0.0, batch_size=20, augment=None, seed=0)
    assert steps_own == 10 and all(np.asarray(x).max() == 0 for x, _ in only_own.take(12))


@pytest.mark.slow
def test_stages_and_freezing(tiny_run):
    assert [stage_of(n) for n in ("conv1", "bn_conv1", "pool1", "res2a_branch1", "bn3b_branch2c", "res5c_add", "fc6", "flatten")] == [1, 1, 1, 2, 3, 5, None, None]
    model = load_init(tiny_run / "model.keras")
    frozen = freeze_stages(model, 2)
    assert "conv1" in frozen and "res2c_branch2c" in frozen and not any(n.startswith(("res3", "bn3")) for n in frozen)
    assert model.get_layer("fc6").trainable and not model.get_layer("bn2a_branch1").trainable


@pytest.mark.slow
def test_init_of_another_model_is_refused_in_one_line(tiny_run, tmp_path):
    L = keras.layers
    other = keras.Sequential([keras.Input((64, 64, 3)), L.Conv2D(4, 3, name="conv1"), L.GlobalAveragePooling2D(), L.Dense(6, activation="softmax")])
    other.save(tmp_path / "other.keras")
    ten = keras.Sequential([keras.Input((64, 64, 3)), L.Flatten(), L.Dense(10, activation="softmax")])
    ten.save(tmp_path / "ten.keras")
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not a keras archive")
    (tmp_path / "model.tflite").write_bytes(b"x")
    cases = {
        "other.keras": "not this toolkit's ResNet50",
        "ten.keras": "predicts 10 classes, expected 6",
        "broken.keras": "unreadable Keras model",
        "model.tflite": "not a Keras model",
        "missing.keras": "model file not found",
    }
    for name, message in cases.items():
        with pytest.raises(EdgeSignsError, match=message):
            load_init(tmp_path / name)


@pytest.mark.slow
def test_own_folder_short_of_a_class_fails_before_training(tiny_run, signs, tmp_path):
    own = _own_folder(signs, tmp_path / "mine", 0)
    for path in (own / "4").iterdir():
        path.unlink()
    with pytest.raises(EdgeSignsError, match="too few of 4: 0"):
        train(TrainOptions(recipe="finetune", init=str(tiny_run / "model.keras"), own_data=[str(own)], overrides={"epochs": 1}),
              tmp_path / "out", data=signs, verbose=0, log=lambda m: None)
    assert not (tmp_path / "out" / "checkpoint").exists()


def test_finetune_cli_needs_init_and_data(tmp_path):
    result = run_cli("finetune", "--own", tmp_path, "--out", tmp_path / "x")
    assert result.returncode == 2 and "--init MODEL.keras is required" in result.stderr
    result = run_cli("finetune", "--init", tmp_path / "missing.keras", "--own", tmp_path / "mine", "--out", tmp_path / "x")
    assert result.returncode == 1 and "missing.keras: model file not found" in result.stderr and "Traceback" not in result.stderr


def test_calibrating_on_an_own_folder_leaves_its_held_out_sessions_out(signs, tmp_path):
    from edge_signs.own_data import load_labelled, own_split
    from edge_signs.trainer.calibration import images_from_folder

    own = _own_folder(signs, tmp_path / "mine", 0)
    said = []
    images = images_from_folder(own, log=said.append)
    rest = own_split(load_labelled(own), "train")
    assert 0 < len(images) == len(rest) < 180 and np.array_equal(images, rest.x)
    assert "held-out sessions/photos left out" in said[0]
    # a plain folder of frames (no labels) is used whole, as before
    plain = tmp_path / "frames"
    plain.mkdir()
    for i in range(5):
        cv2.imwrite(str(plain / f"f{i}.png"), cv2.cvtColor(signs.train.x[i], cv2.COLOR_RGB2BGR))
    assert len(images_from_folder(plain, log=said.append)) == 5


@pytest.mark.parametrize("where", ["equal", "inside", "inside the SIGNS folder"])
def test_finetune_out_in_its_own_data_is_refused_before_training(signs_dir, tmp_path, where):
    """--out equal to or inside an --own folder (or the --signs folder) would put the model, checkpoints and metrics
    among the images: refused in one line before anything is written, the folder left as it was."""
    own = tmp_path / "mine"
    (own / "3").mkdir(parents=True)
    (own / "3" / "s1_00001.png").write_bytes(b"")
    signs_copy = tmp_path / "signs"  # a copy: a run that wrongly went ahead must not write into the shared one
    signs_copy.mkdir()
    for name in config.H5_FILES:
        (signs_copy / name).write_bytes((signs_dir / name).read_bytes())
    signs_dir = signs_copy
    out = {"equal": own, "inside": own / "runs" / "ft", "inside the SIGNS folder": signs_dir / "ft-run"}[where]
    before = sorted(p.relative_to(own).as_posix() for p in own.rglob("*"))
    result = run_cli("finetune", "--init", tmp_path / "missing.keras", "--own", own, "--signs", signs_dir, "--out", out)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith("edge-signs: error: ")]
    folder = signs_dir if "SIGNS" in where else own
    assert f"--out {out}: " in line and f"is inside {'--signs' if 'SIGNS' in where else '--own'} {folder}" in line, line
    assert sorted(p.relative_to(own).as_posix() for p in own.rglob("*")) == before
    assert not (signs_dir / "ft-run").exists()
