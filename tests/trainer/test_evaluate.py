"""The trainer's half of `edge-signs evaluate`: .keras files in the table, and where int8 loses accuracy.

The end-to-end table uses the one-epoch ResNet50 (slow); the rest a tiny Keras model
(tests/fixtures/make_tiny_model.py) converted here, in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from edge_signs import metrics  # noqa: E402
from edge_signs.edge import evaluate as edge_evaluate  # noqa: E402
from edge_signs.edge.evaluate import edge_runners, evaluate_models, layer_table, run_evaluation  # noqa: E402
from edge_signs.edge.runtime import Classifier  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.trainer.evaluate import diagnose_int8, register  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.fixtures.make_tiny_model import build  # noqa: E402


def trainer_runners():
    """What the CLI gives `evaluate` where a Keras file is named: .tflite files, Keras files, the int8 diagnosis."""
    runners = edge_runners()
    register(runners)
    return runners


@pytest.mark.slow
def test_table_for_tflite_and_keras(tflite_models, tiny_run, signs_dir, signs, tmp_path):
    models = [tiny_run / "model.keras", tflite_models["float32"], tflite_models["float16"], tflite_models["int8"]]
    result = run_cli("evaluate", *models, "--signs", signs_dir, "--runs", 5, "--warmup", 1, "--json", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["format"] for r in rows] == ["keras float32", "float32", "float16", "int8"]
    for row in rows:
        assert {"model", "format", "size_mb", "accuracy", "loss", "agreement", "latency_ms_p50"} <= set(row)
        assert row["latency_ms_p50"] > 0 and row["latency_ms_p90"] >= row["latency_ms_p50"]
        assert sum(map(sum, row["confusion"])) == 120
    assert rows[0]["agreement"] == 1.0
    assert rows[1]["agreement"] >= 0.95  # the float32 TFLite file is the Keras model, converted
    assert rows[1]["accuracy"] == pytest.approx(rows[0]["accuracy"], abs=0.05)
    # the numbers are those of the model on the real test set
    probs = Classifier(tflite_models["int8"]).predict_batch(signs.test.x)
    assert rows[3]["accuracy"] == pytest.approx(metrics.accuracy(probs, signs.test.y))
    assert rows[3]["loss"] == pytest.approx(metrics.cross_entropy(probs, signs.test.y))
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["models"] == rows
    assert len(report["models"]) == 4 and report["data"]["test_images"] == 120
    assert "| model_int8.tflite | int8 |" in (tmp_path / "evaluation.md").read_text()
    assert cv2.imread(str(tmp_path / "confusion_model_int8.png")) is not None


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory, signs) -> dict:
    """tiny.keras (two epochs) with its float32 and int8 files beside it, as `quantize` leaves them."""
    from edge_signs.preprocess import to_model_input
    from edge_signs.trainer import keras
    from edge_signs.trainer.quantize import quantize

    folder = tmp_path_factory.mktemp("tiny_keras")
    keras.utils.set_random_seed(0)
    model = build(keras)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(to_model_input(signs.train.x), signs.train.y, batch_size=32, epochs=2, verbose=0)
    model.save(folder / "tiny.keras")
    paths = quantize(folder / "tiny.keras", ["float32", "int8"], data=signs, log=quiet)
    return {"keras": folder / "tiny.keras", **{p.stem.rsplit("_", 1)[1]: p for p in paths}}


def test_keras_runner_scores_like_its_tflite_file(tiny_keras, signs):
    x, y = signs.test.x, signs.test.y
    keras_report, tflite_report = evaluate_models([tiny_keras["keras"], tiny_keras["float32"]], x, y, runs=3, warmup=1, runners=trainer_runners(), log=quiet)
    assert (keras_report.format, tflite_report.format) == ("keras float32", "float32")
    assert keras_report.backend.startswith("tensorflow ") and keras_report.latency_ms_p50 > 0
    assert tflite_report.agreement >= 0.98  # agreement with the Keras model, the first
    assert tflite_report.accuracy == pytest.approx(keras_report.accuracy, abs=0.02)
    assert tflite_report.loss == pytest.approx(keras_report.loss, abs=0.01)


def test_diagnose_int8_ranks_the_layers_of_the_source_model(tiny_keras, signs):
    report = evaluate_models([tiny_keras["int8"]], signs.test.x[:8], signs.test.y[:8], runs=1, warmup=0, log=quiet)[0]
    log: list[str] = []
    findings = diagnose_int8([(report, 0.2)], signs, log=log.append)
    assert len(findings) == 1 and findings[0]["model"] == str(tiny_keras["int8"]) and findings[0]["accuracy_drop"] == 0.2
    layers = findings[0]["layers"]
    errors = [row["rmse_over_scale"] for row in layers]
    assert 1 <= len(layers) <= 8 and errors == sorted(errors, reverse=True) and np.isfinite(errors).all()
    assert "running the quantization debugger on tiny.keras" in log[0]
    table = layer_table(findings)
    assert "tiny_int8.tflite: 0.200 below float" in table and "| layer | op | rmse / scale |" in table
    assert table.count("\n| ") == 1 + len(layers)  # the header row and one per layer


def test_diagnose_int8_without_its_source_model_says_where_to_run(tiny_models, signs):
    """The committed tiny int8 file names tiny.keras as its source, which is not beside it."""
    report = evaluate_models([tiny_models["int8"]], signs.test.x[:8], signs.test.y[:8], runs=1, warmup=0, log=quiet)[0]
    log: list[str] = []
    assert diagnose_int8([(report, 0.1)], signs, log=log.append) == []
    assert len(log) == 1 and "where TensorFlow and tiny.keras are" in log[0]


def test_evaluation_attaches_the_diagnosis_to_its_model(tiny_keras, signs, monkeypatch):
    """When an int8 file loses accuracy, the report says which layers lose it, under that model."""
    monkeypatch.setattr(edge_evaluate, "int8_losses", lambda reports: [(r, 0.3) for r in reports if r.format == "int8"])
    result = run_evaluation([tiny_keras["float32"], tiny_keras["int8"]], signs, runs=2, warmup=0, runners=trainer_runners(), log=quiet)
    float32, int8 = result["models"]
    assert "int8_layer_errors" not in float32
    assert int8["int8_layer_errors"]["accuracy_drop"] == 0.3 and int8["int8_layer_errors"]["layers"]
    assert "## Where int8 loses accuracy" in result["markdown"] and "tiny_int8.tflite: 0.300 below float" in result["markdown"]


@pytest.mark.slow
def test_recipe_report_names_a_missing_file_in_one_line(tiny_run, tmp_path, signs):
    import shutil
    import subprocess
    import sys

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "options.json", "metrics.json"):
        shutil.copy(tiny_run / name, run / name)  # quantize never ran here
    tool = Path(__file__).resolve().parents[2] / "tools" / "recipe_report.py"
    proc = subprocess.run([sys.executable, str(tool), str(run), "--data", str(signs.source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{run / 'model_float16.tflite'}: model file not found" in proc.stderr.strip().splitlines()[-1]
