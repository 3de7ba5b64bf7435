"""Faults on the training side (`train`, `quantize`): a diverged run is never a success, conversion
never replaces a good file with a bad one, resume resumes the same run, one writer per folder, and
every option validated before any work.

Most tests need no training: the NaN model is the tiny Keras classifier of tests/fixtures with one
NaN weight, unfinished runs are folders written by hand, and where `train()` itself must run, the
ResNet50 builder is swapped for the tiny classifier. Only the two tests that train a real ResNet50
(a diverging run, Ctrl-C during training) are marked slow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from click.testing import CliRunner  # noqa: E402

from edge_signs import cli, config  # noqa: E402
from edge_signs.artifacts import LOCK_NAME, folder_lock, sha256_file  # noqa: E402
from edge_signs.edge.runtime import Classifier, read_sidecar  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.trainer import keras  # noqa: E402
from edge_signs.trainer import quantize as quantize_module  # noqa: E402
from edge_signs.trainer import train as train_module  # noqa: E402
from edge_signs.trainer.train import RESUME_FIXED, TrainOptions, differences, train  # noqa: E402
from tests.conftest import REPO, run_cli  # noqa: E402
from tests.faults import digests, hidden_files, interrupted_after, nan_float32_tflite, one_line_error, strict_json  # noqa: E402
from tests.fixtures.make_tiny_model import build  # noqa: E402


def _tiny_keras(path: Path, poison: float | None = None) -> Path:
    """The tiny SIGNS-shaped classifier saved as .keras; ``poison`` goes into one conv1 weight."""
    keras.utils.set_random_seed(0)
    model = build(keras)
    if poison is not None:
        weights = model.get_weights()
        weights[0][0, 0, 0, 0] = poison
        model.set_weights(weights)
    model.save(path)
    return path


def _pair(source_stem: Path, folder: Path, name: str) -> tuple[Path, Path]:
    """A good .tflite and its sidecar (copies of a committed tiny model) under ``folder`` as ``name``.tflite/.json."""
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".tflite", ".json"):
        shutil.copy(source_stem.with_suffix(suffix), folder / f"{name}{suffix}")
    return folder / f"{name}.tflite", folder / f"{name}.json"


def _click_error(proc, option: str) -> str:
    """click's usage error: exit 2, no traceback, one `Error: Invalid value for '--option'` line."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and f"'{option}'" in errors[0], proc.stderr
    return errors[0]


def _hold_lock(folder: Path, what: str) -> subprocess.Popen:
    """Another process holding ``folder``'s lock as a running `train` or `quantize` would (``what``: "train into DIR"), until killed."""
    code = ("import sys, time\nfrom edge_signs.artifacts import folder_lock\n"
            "with folder_lock(sys.argv[1], sys.argv[2]):\n    print('locked', flush=True)\n    time.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), what], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked", proc.stderr.read()
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.communicate(timeout=30)


# -- every option validated, before any work ---------------------------------------------------------------


@pytest.mark.parametrize("args, option", [
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**32)], "--seed"),
    (["--val-fraction", "nan"], "--val-fraction"),
    (["--val-fraction", "1"], "--val-fraction"),
    (["--dropout", "nan"], "--dropout"),
    (["--dropout", "inf"], "--dropout"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--learning-rate", "inf"], "--learning-rate"),
    (["--l2", "-inf"], "--l2"),
    (["--label-smoothing", "nan"], "--label-smoothing"),
    (["--set", "rotation"], "--set"),
    (["--set", "wings=2"], "--set"),
    (["--set", "rotation=steep"], "--set"),
    (["--set", "rotation=nan"], "--set"),
    (["--set", "augment=maybe"], "--set"),
    (["--set", "epochs=1.5"], "--set"),
])
def test_train_options_out_of_range_or_not_finite_are_one_line(tmp_path, signs_dir, args, option):
    """Every CLI option is validated (finite numbers, ranges) before any work: one line naming the option."""
    out = tmp_path / "run"
    _click_error(run_cli("train", *args, "--out", out, "--signs", signs_dir), option)
    assert not out.exists()


@pytest.mark.parametrize("options, words", [
    (dict(seed=-1), "--seed"),
    (dict(seed=2**32), "--seed"),
    (dict(seed=1.5), "--seed"),
    (dict(batch_size=0), "--batch-size"),
    (dict(val_fraction=float("nan")), "--val-fraction"),
    (dict(val_fraction=1.0), "--val-fraction"),
    (dict(limit=3), "--limit"),
    (dict(devices=[]), "--devices"),
    (dict(overrides={"dropout": float("nan")}), "--dropout"),
    (dict(overrides={"learning_rate": float("inf")}), "--learning-rate"),
    (dict(overrides={"learning_rate": 0.0}), "--learning-rate"),
    (dict(overrides={"label_smoothing": -0.1}), "--label-smoothing"),
    (dict(overrides={"l2": float("nan")}), "--l2"),
    (dict(overrides={"epochs": 0}), "--epochs"),
    (dict(overrides={"rotation": 500.0}), "recipe rotation must be a number in"),
    (dict(overrides={"schedule": "linear"}), "schedule 'linear': unknown"),
    (dict(overrides={"optimizer": "sgd"}), "optimizer 'sgd': unknown"),
    (dict(overrides={"bn_momentum": 1.0}), "bn_momentum"),
    (dict(overrides={"warmup_epochs": -1}), "warmup_epochs"),
])
def test_train_options_validate(options, words):
    """The same checks through the API (and so for a hand-edited options.json on --resume), naming the option."""
    with pytest.raises(EdgeSignsError, match=words):
        TrainOptions(**options).validate()
    TrainOptions(recipe="seed", seed=2**32 - 1, val_fraction=0.0, limit=12, overrides={"dropout": 0.0}).validate()  # the edges are fine


def test_a_recipe_field_set_twice_with_two_values_is_one_line(tmp_path, signs_dir):
    out = tmp_path / "run"
    one_line_error(run_cli("train", "--set", "epochs=3", "--epochs", 4, "--out", out, "--signs", signs_dir), "--set epochs=3 contradicts --epochs 4")
    assert not out.exists()


def test_train_devices_that_do_not_exist_are_one_line(tmp_path, signs_dir):
    """`--devices /gpu:7` on a machine with no such device is refused, not run on the CPU instead."""
    out = tmp_path / "run"
    proc = run_cli("train", "--devices", "/gpu:7", "--limit", 60, "--epochs", 1, "--recipe", "seed", "--out", out, "--signs", signs_dir,
                   timeout=300)
    one_line_error(proc, "--devices /gpu:7", "no such device", before_work=False)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # no options, checkpoint, model or metrics


def test_train_out_on_an_existing_file_is_refused(tmp_path, signs_dir):
    """`train --out` on an existing file says what it is and what was expected."""
    file = tmp_path / "file.txt"
    file.write_text("keep me\n")
    one_line_error(run_cli("train", "--out", file, "--signs", signs_dir), "--out", "is a file", before_work=False)
    assert file.read_text() == "keep me\n"


def test_quantize_out_on_an_existing_file_is_refused_before_loading_the_model(tmp_path):
    """Every output path is checked before the work starts: the model is not even read."""
    file = tmp_path / "file.txt"
    file.write_text("keep me\n")
    model = _tiny_keras(tmp_path / "nan.keras", poison=float("nan"))  # its NaN is not what is reported
    one_line_error(run_cli("quantize", model, "--fp32", "--out", file), "--out", "is a file", before_work=False)
    assert file.read_text() == "keep me\n"


# -- conversion never replaces a good file with a bad one ------------------------------------------------


def test_quantize_refuses_a_model_with_non_finite_weights_and_keeps_the_good_int8_file(tiny_models, tmp_path, signs_dir):
    """A model with non-finite weights is refused before conversion, and the good int8 file and its
    sidecar already in the folder stay as they were."""
    model = _tiny_keras(tmp_path / "nan.keras", poison=float("nan"))
    deploy = tmp_path / "deploy"
    good = _pair(tiny_models["int8"], deploy, "nan_int8")
    before = digests(*good)
    proc = run_cli("quantize", model, "--int8", "--out", deploy, "--signs", signs_dir)
    one_line_error(proc, str(model), "NaN or infinite weights", "conv1", before_work=False)
    assert digests(*good) == before
    assert sorted(p.name for p in deploy.iterdir() if p.name != LOCK_NAME) == ["nan_int8.json", "nan_int8.tflite"]
    assert hidden_files(tmp_path) == []
    assert Classifier(good[0]).labels == config.LABELS  # still loads with its own metadata
    # an infinite weight is refused the same way
    with pytest.raises(EdgeSignsError, match="NaN or infinite weights in 1 layer"):
        quantize_module.load_keras_classifier(_tiny_keras(tmp_path / "inf.keras", poison=float("inf")))


def test_quantize_refuses_a_converted_file_that_does_not_run_and_replaces_nothing(tiny_models, tmp_path, monkeypatch):
    """A new .tflite is checked (it loads and classifies one image) before it replaces anything:
    a broken conversion (a cut flatbuffer, or one whose probabilities
    are NaN) is refused, in a child process, and the old pair stays."""
    model = _tiny_keras(tmp_path / "good.keras")
    deploy = tmp_path / "deploy"
    old = _pair(tiny_models["float32"], deploy, "good_float32")
    before = digests(*old)
    whole = tiny_models["float32"].read_bytes()
    nan_blob = nan_float32_tflite(tiny_models["float32"], tmp_path / "nan_float32.tflite").read_bytes()
    for blob, words in ((whole[: len(whole) // 2], "does not run in the edge runtime"), (nan_blob, "probabilities are not finite")):
        monkeypatch.setattr(quantize_module, "convert", lambda *args, blob=blob, **kwargs: blob)
        with pytest.raises(EdgeSignsError, match=words) as err:
            quantize_module.quantize(model, ["float32"], out_dir=deploy, log=quiet)
        assert "nothing was replaced" in str(err.value)
        assert digests(*old) == before
        assert hidden_files(tmp_path) == []


def test_quantize_replaces_the_model_and_its_metadata_as_a_pair(tiny_models, tmp_path, monkeypatch):
    """The model and its metadata are replaced as a pair, and a model whose metadata does not match it
    is refused: after a conversion the new file's sidecar names it."""
    model = _tiny_keras(tmp_path / "good.keras")
    deploy = tmp_path / "deploy"
    path, sidecar = _pair(tiny_models["int8"], deploy, "good_float32")  # an older pair, of another file
    new = tiny_models["float32"].read_bytes()
    monkeypatch.setattr(quantize_module, "convert", lambda *args, **kwargs: new)  # the conversion itself is tested elsewhere (slow)
    assert quantize_module.quantize(model, ["float32"], out_dir=deploy, log=quiet) == [path]
    assert path.read_bytes() == new
    meta = strict_json(sidecar.read_text())
    assert meta["tflite_sha256"] == sha256_file(path) and meta["source_model"]["sha256"] == sha256_file(model)
    assert meta["labels"] == list(config.LABELS) and read_sidecar(path)["format"] == "float32"
    assert Classifier(path).labels == config.LABELS
    assert hidden_files(tmp_path) == []


def test_quantize_into_a_folder_another_process_writes_is_refused(tiny_models, tmp_path):
    """One run per output folder at a time: a second train (or quantize into the same files) gets a
    clear error while the first holds it."""
    model = _tiny_keras(tmp_path / "good.keras")
    deploy = tmp_path / "deploy"
    old = _pair(tiny_models["float32"], deploy, "good_float32")
    before = digests(*old)
    holder = _hold_lock(deploy, f"quantize into {deploy}")
    try:
        proc = run_cli("quantize", model, "--fp32", "--out", deploy)
    finally:
        _release(holder)
    one_line_error(proc, str(deploy), "in use by", f"(pid {holder.pid})", before_work=False)
    assert digests(*old) == before and hidden_files(tmp_path) == []


# -- one run per output folder ---------------------------------------------------------------------------


def test_second_train_into_a_folder_another_process_holds_is_refused(tmp_path, signs_dir):
    """Two runs into one --out: the second is refused; neither overwrites the other."""
    out = tmp_path / "run"
    holder = _hold_lock(out, f"train into {out}")
    try:
        proc = run_cli("train", "--signs", signs_dir, "--limit", 60, "--epochs", 1, "--recipe", "seed", "--out", out, timeout=300)
    finally:
        _release(holder)
    one_line_error(proc, str(out), "in use by", f"edge-signs train into {out} (pid {holder.pid})", before_work=False)
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # the second run wrote nothing


# -- resume resumes the same run ---------------------------------------------------------------------------


SAVED = TrainOptions(recipe="seed", seed=5, batch_size=8, val_fraction=0.2, limit=60, overrides={"epochs": 3})


def _unfinished_run(folder: Path, data_sha256: str, options: TrainOptions = SAVED) -> list[Path]:
    """A run folder as Ctrl-C leaves it after epoch 1, written by hand (the checkpoint is never loaded)."""
    (folder / "checkpoint").mkdir(parents=True)
    (folder / "options.json").write_text(json.dumps(dataclasses.asdict(options)))
    (folder / "checkpoint" / "epoch-0001.keras").write_bytes(b"the epoch-1 model")
    (folder / "checkpoint" / "state.json").write_text(json.dumps(
        {"epoch": 1, "model": "epoch-0001.keras", "history": {"loss": [1.7]}, "epoch_seconds": [9.0], "data_sha256": data_sha256}))
    return [folder / "options.json", folder / "checkpoint" / "epoch-0001.keras", folder / "checkpoint" / "state.json"]


def _other_data(folder: Path) -> Path:
    """A valid SIGNS-shaped HDF5 pair that is not SIGNS (2 training and 1 test image per class)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, split, per_class in ((config.H5_FILES[0], "train", 2), (config.H5_FILES[1], "test", 1)):
        y = np.repeat(np.arange(config.NUM_CLASSES), per_class)
        with h5py.File(folder / name, "w") as f:
            f[f"{split}_set_x"] = rng.integers(0, 256, (len(y), 64, 64, 3), dtype=np.uint8)
            f[f"{split}_set_y"] = y
    return folder


def test_resume_with_other_options_is_refused_naming_what_differs(tmp_path, signs_dir, signs):
    """`train --resume` with another recipe or options is refused with a message naming what differs."""
    out = tmp_path / "kint"
    files = _unfinished_run(out, signs.checksum())
    before = digests(*files)
    proc = run_cli("train", "--resume", "--out", out, "--epochs", 3, "--learning-rate", 0.5, "--batch-size", 4, "--recipe", "default",
                   "--set", "rotation=20", "--signs", signs_dir)
    line = one_line_error(proc, "differ", "batch-size: 8 -> 4", "recipe: 'seed' -> 'default'", "'learning_rate': 0.5", "'rotation': 20.0",
                          before_work=False)
    assert "seed: " not in line and "limit: " not in line  # options not typed are the run's own, not the defaults
    assert digests(*files) == before and not (out / "model.keras").exists()


def test_resume_on_other_data_is_refused(tmp_path, signs):
    """`train --resume` on other data is refused: a run is trained on one dataset."""
    out = tmp_path / "kint"
    files = _unfinished_run(out, signs.checksum())
    before = digests(*files)
    other = _other_data(tmp_path / "other")
    one_line_error(run_cli("train", "--resume", "--out", out, "--signs", other), str(other), "not the data this run was started on",
                   before_work=False)
    # Typing the run's own options again is not a difference (and the data check still applies).
    proc = run_cli("train", "--resume", "--out", out, "--recipe", "seed", "--seed", 5, "--limit", 60, "--epochs", 3, "--signs", other)
    one_line_error(proc, "not the data this run was started on", before_work=False)
    assert digests(*files) == before and not (out / "metrics.json").exists()


def test_resume_keeps_what_decides_the_result_and_lets_the_hardware_change():
    """Resume resumes the same run (or applies only what is safe): every option that decides what the
    run computes is compared; devices and precision may change."""
    saved = dataclasses.asdict(SAVED)
    assert differences(saved, dataclasses.replace(SAVED, devices=["/cpu:0"], precision="mixed_float16")) == []
    changed = {"recipe": "default", "seed": 6, "batch_size": 16, "val_fraction": 0.3, "limit": 72, "overrides": {"epochs": 4},
               "init": "runs/first/model.keras", "own_data": ["my_signs"], "extra": ["hands"], "select_on": "others"}  # a fine-tuning run keeps its start and its folders
    assert set(changed) == set(RESUME_FIXED)
    for name, value in changed.items():
        (line,) = differences(saved, dataclasses.replace(SAVED, **{name: value}))
        assert line.startswith(name.replace("_", "-") + ": ") and repr(value) in line


# -- a diverged run is never a success, and Ctrl-C leaves a complete command (tiny model, no ResNet50) ------------


def _tiny_builder(poison: int | None = None):
    """Stands in for build_resnet50 (same keyword arguments) so that train() runs in seconds;
    ``poison``: the index (in get_weights()) of a weight array whose first value is NaN."""
    def build_tiny(**_kwargs):
        model = build(keras)
        if poison is not None:
            weights = model.get_weights()
            weights[poison].flat[0] = np.nan
            model.set_weights(weights)
        return model

    return build_tiny


SMALL = TrainOptions(recipe="seed", limit=24, batch_size=8, overrides={"epochs": 2})


@pytest.mark.parametrize("poison, where", [
    (-1, "batch 1 of epoch 1"),  # the classifier's bias: the loss is NaN from the first batch
    # conv1's kernel: on oneDNN CPUs ReLU turns the NaN into 0, so the loss stays finite while the weight
    # stays NaN (the weights are checked at the epoch's end); elsewhere the loss may be NaN at once
    (0, "(batch 1 of )?epoch 1"),
], ids=["nan-loss", "nan-weight"])
def test_training_that_diverges_saves_no_model_or_metrics(tmp_path, signs, monkeypatch, poison, where):
    """A diverged run is never a success: a NaN loss or weight stops the run with Diverged, and no
    model or metrics are written."""
    monkeypatch.setattr(train_module, "build_resnet50", _tiny_builder(poison=poison))
    out = tmp_path / "nan"
    with pytest.raises(train_module.Diverged, match=f"training diverged at {where}") as err:
        train(SMALL, out, data=signs, verbose=0, log=quiet)
    assert "no epoch finished cleanly" in str(err.value) and "--learning-rate" in str(err.value)
    for name in ("model.keras", "metrics.json", "history.json", "checkpoint"):
        assert not (out / name).exists(), name
    strict_json((out / "options.json").read_text())
    with folder_lock(out, "the next run"):  # a failed run does not keep its folder
        pass


def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    """Non-finite loss or weights stop the run, the last good checkpoint stays, and no NaN model,
    metrics or JSON is written: the callbacks train() uses, epoch by epoch."""
    keras.utils.set_random_seed(0)
    model = build(keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    history, timing = {}, []
    guard = train_module.StopOnDivergence()
    checkpoint = train_module.make_checkpoint_callback(tmp_path, history, timing, "sha", guard)
    for callback in (guard, checkpoint):
        callback.set_model(model)

    def epoch(k: int, batch_loss: float, logs: dict) -> None:
        guard.on_epoch_begin(k)
        checkpoint.on_epoch_begin(k)
        guard.on_train_batch_end(0, {"loss": batch_loss})
        checkpoint.on_epoch_end(k, logs)

    epoch(0, 1.7, {"loss": 1.7, "accuracy": 0.2})
    state = tmp_path / "checkpoint" / "state.json"
    saved = digests(state, tmp_path / "checkpoint" / "epoch-0001.keras", tmp_path / "history.json")
    assert strict_json(state.read_text())["epoch"] == 1 and not model.stop_training

    epoch(1, float("nan"), {"loss": float("nan"), "accuracy": 0.2})  # a NaN batch loss
    assert model.stop_training and guard.where.startswith("batch 1 of epoch 2")
    assert digests(*saved) == saved and not (tmp_path / "checkpoint" / "epoch-0002.keras").exists()

    guard.where, model.stop_training = None, False
    weights = model.get_weights()
    weights[-1][0] = np.inf
    model.set_weights(weights)
    epoch(1, 1.5, {"loss": 1.5, "accuracy": 0.3})  # a finite loss, but an infinite weight
    assert model.stop_training and "non-finite loss or weights" in guard.where
    assert digests(*saved) == saved and not (tmp_path / "checkpoint" / "epoch-0002.keras").exists()
    assert strict_json((tmp_path / "history.json").read_text()) == {"loss": [1.7], "accuracy": [0.2], "learning_rate": [pytest.approx(1e-3)]}


def test_checkpoints_after_the_first_and_last_epoch_and_otherwise_at_most_each_interval(tmp_path, monkeypatch):
    model = build(keras)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    history, timing = {}, []
    checkpoint = train_module.make_checkpoint_callback(tmp_path, history, timing, "sha", train_module.StopOnDivergence())
    checkpoint.set_model(model)
    checkpoint.set_params({"epochs": 4})
    state = tmp_path / "checkpoint" / "state.json"
    saved = []
    for k, interval in enumerate((3600.0, 3600.0, 0.0, 3600.0)):  # epoch 3 ends after the interval (0 s here)
        monkeypatch.setattr(config, "CHECKPOINT_SECONDS", interval)
        checkpoint.on_epoch_begin(k)
        checkpoint.on_epoch_end(k, {"loss": 1.0, "accuracy": 0.5})
        saved.append(strict_json(state.read_text())["epoch"])
        assert len(strict_json((tmp_path / "history.json").read_text())["loss"]) == k + 1  # the history after every epoch
    assert saved == [1, 1, 3, 4]
    assert [p.name for p in (tmp_path / "checkpoint").glob("*.keras")] == ["epoch-0004.keras"]


def test_ctrl_c_exits_130_with_a_complete_resume_command(tmp_path, signs_dir, monkeypatch):
    """The hint after Ctrl-C is a complete command (data included): the command it prints finishes the run."""
    monkeypatch.setattr(train_module, "build_resnet50", _tiny_builder())
    make_checkpoint = train_module.make_checkpoint_callback
    monkeypatch.setattr(train_module, "make_checkpoint_callback", interrupted_after(make_checkpoint, 0))  # after the epoch-1 checkpoint
    out = tmp_path / "my run"  # a space: the command must quote it
    runner = CliRunner()
    first = runner.invoke(cli.main, ["train", "--out", str(out), "--signs", str(signs_dir), "--recipe", "seed", "--limit", "24",
                                     "--batch-size", "8", "--epochs", "2"])
    assert first.exit_code == 130, first.output
    (line,) = [ln for ln in first.stderr.splitlines() if ln.startswith("edge-signs: error: ")]
    assert "interrupted after epoch 1 of 2" in line
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[:2] == ["edge-signs", "train"] and "--resume" in command
    assert command[command.index("--out") + 1] == str(out) and command[command.index("--signs") + 1] == str(signs_dir)
    assert not (out / "model.keras").exists()

    monkeypatch.setattr(train_module, "make_checkpoint_callback", make_checkpoint)
    resumed = runner.invoke(cli.main, command[1:])
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming {out} after epoch 1" in resumed.stderr
    assert len(strict_json((out / "history.json").read_text())["loss"]) == 2
    metrics = strict_json((out / "metrics.json").read_text())
    assert metrics["options"]["limit"] == 24 and metrics["options"]["batch_size"] == 8 and metrics["recipe_name"] == "seed"


def test_ctrl_c_between_checkpoints_says_which_epoch_the_run_goes_on_from(tmp_path, signs, monkeypatch):
    monkeypatch.setattr(train_module, "build_resnet50", _tiny_builder())
    monkeypatch.setattr(config, "CHECKPOINT_SECONDS", 3600.0)  # after epoch 1 no other checkpoint is due before the last
    monkeypatch.setattr(train_module, "make_checkpoint_callback", interrupted_after(train_module.make_checkpoint_callback, 1))
    options = TrainOptions(recipe="seed", limit=24, batch_size=8, overrides={"epochs": 3})
    with pytest.raises(train_module.TrainingInterrupted, match=r"interrupted after epoch 2 of 3 \(it goes on from the checkpoint of epoch 1\); "
                                                              r"continue with: edge-signs train"):
        train(options, tmp_path / "run", data=signs, verbose=0, log=quiet)
    assert strict_json((tmp_path / "run" / "checkpoint" / "state.json").read_text())["epoch"] == 1


# -- the same with a real ResNet50 (slow) ------------------------------------------------------------------


@pytest.mark.slow
def test_diverging_resnet50_run_exits_non_zero_and_writes_no_model(tmp_path, signs_dir):
    """A real ResNet50 run at learning rate 1e6 exits non-zero naming the divergence, and writes no
    model and no NaN into any JSON."""
    out = tmp_path / "nan"
    proc = run_cli("train", "--signs", signs_dir, "--limit", 60, "--epochs", 2, "--recipe", "seed", "--learning-rate", "1e6", "--out", out)
    one_line_error(proc, "diverged", before_work=False)
    assert not (out / "model.keras").exists() and not (out / "metrics.json").exists()
    for path in out.rglob("*.json"):
        strict_json(path.read_text())  # whatever was written (options, an earlier good epoch) is strict JSON
    assert hidden_files(out) == []


@pytest.mark.slow
def test_ctrl_c_during_resnet50_training_exits_130_with_the_resume_command(tmp_path, signs_dir):
    """A real SIGINT once the first checkpoint exists: exit 130 and a complete resume command."""
    out = tmp_path / "k int"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_signs", "train", "--signs", str(signs_dir), "--out", str(out), "--recipe", "seed", "--limit", "48",
         "--epochs", "3"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a background shell may ignore SIGINT: undo that
    )
    state = out / "checkpoint" / "state.json"
    deadline = time.monotonic() + 600
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("edge-signs: error: interrupted after epoch "), line
    assert "--resume" in line and "--signs" in line
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[command.index("--out") + 1] == str(out) and command[command.index("--signs") + 1] == str(signs_dir)
    done = strict_json(state.read_text())["epoch"]
    assert f"after epoch {done} of 3" in line and (out / "checkpoint" / f"epoch-{done:04d}.keras").is_file()
    assert not (out / "model.keras").exists()
