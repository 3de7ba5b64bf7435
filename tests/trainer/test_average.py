"""The saved model is the average of the weights over the run's last epochs (recipe field average_last)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs import config  # noqa: E402
from edge_signs.data import train_val_split  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.trainer import keras  # noqa: E402
from edge_signs.trainer import train as train_module  # noqa: E402
from edge_signs.trainer.average import EVERY_STEPS, first_average_epoch  # noqa: E402
from edge_signs.trainer.train import TrainOptions, train  # noqa: E402
from tests.faults import interrupted_after  # noqa: E402
from tests.fixtures.make_tiny_model import build  # noqa: E402


def test_the_averaged_epochs_are_the_last_share_of_the_run():
    assert first_average_epoch(60, 0.33) == 41  # the last 20 of 60
    assert first_average_epoch(60, 1.0) == 1
    assert first_average_epoch(3, 0.1) == 3  # at least the last epoch
    with pytest.raises(EdgeSignsError, match="average_last must be a number in \\[0, 1\\]"):
        TrainOptions(overrides={"average_last": 1.5}).validate()


def test_a_run_saves_the_average_of_its_last_epochs_weights(tmp_path, signs, monkeypatch):
    monkeypatch.setattr(train_module, "build_resnet50", lambda **_kwargs: build(keras))  # a tiny model: the same mechanism in seconds
    run = tmp_path / "run"
    # batches of 2: more than EVERY_STEPS steps an epoch, so the averaged epoch adds a snapshot every EVERY_STEPS
    options = TrainOptions(recipe="camera", limit=24, batch_size=2, overrides={"epochs": 2, "average_last": 0.5})
    train(options, run, data=signs, verbose=0, log=quiet)
    metrics = json.loads((run / "metrics.json").read_text())
    steps = -(-metrics["dataset"]["train"] // 2)
    assert metrics["checkpoint"] == {"by": "the average of the weights", "from_epoch": 2, "every_steps": EVERY_STEPS,
                                     "snapshots": steps // EVERY_STEPS, "epoch": 2}
    # averaged weights need their own batch-norm statistics, even in a recipe that does not ask for them
    assert metrics["batchnorm_recalibrated"]["batches"] > 0

    with np.load(run / "checkpoint" / "average-0002.npz") as kept:
        count = int(kept["count"])
        mean = [kept[f"w{i}"] / count for i in range(len(kept.files) - 1)]
    last = keras.models.load_model(next((run / "checkpoint").glob("epoch-0002.keras")))
    saved = keras.models.load_model(run / "model.keras")
    assert count == metrics["checkpoint"]["snapshots"]
    assert len(mean) == len(saved.trainable_weights) == len(last.trainable_weights)
    for average, weight, final in zip(mean, saved.trainable_weights, last.trainable_weights):
        assert np.allclose(weight.numpy(), average, atol=1e-6)
    # and not the last step's weights: averaging changed the model
    assert any(not np.allclose(w.numpy(), f.numpy(), atol=1e-6) for w, f in zip(saved.trainable_weights, last.trainable_weights))


def test_an_interrupted_run_resumes_with_the_average_it_had(tmp_path, signs, monkeypatch):
    """Ctrl-C inside the averaged epochs, then --resume: the saved model averages every snapshot of both processes."""
    monkeypatch.setattr(train_module, "build_resnet50", lambda **_kwargs: build(keras))  # a tiny model: seconds, not minutes
    monkeypatch.setattr(config, "CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every epoch
    make_checkpoint = train_module.make_checkpoint_callback
    run = tmp_path / "run"
    options = TrainOptions(recipe="seed", limit=24, batch_size=2, overrides={"epochs": 3, "average_last": 0.67})
    monkeypatch.setattr(train_module, "make_checkpoint_callback", interrupted_after(make_checkpoint, 1))
    with pytest.raises(train_module.TrainingInterrupted):
        train(options, run, data=signs, verbose=0, log=quiet)
    train_idx, _ = train_val_split(signs.train.y, options.val_fraction, options.seed, options.limit)
    per_epoch = -(-len(train_idx) // 2) // EVERY_STEPS
    with np.load(run / "checkpoint" / "average-0002.npz") as kept:
        assert int(kept["count"]) == per_epoch  # epoch 2 is the first averaged

    monkeypatch.setattr(train_module, "make_checkpoint_callback", make_checkpoint)
    train(None, run, data=signs, resume=True, verbose=0, log=quiet)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["checkpoint"]["from_epoch"] == 2 and metrics["checkpoint"]["snapshots"] == 2 * per_epoch
    assert sorted(p.name for p in (run / "checkpoint").glob("average-*.npz")) == ["average-0003.npz"]
