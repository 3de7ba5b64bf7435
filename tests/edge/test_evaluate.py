"""`edge-signs evaluate`: the comparison table, the robustness report, and running without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_signs import metrics, perturb
from edge_signs.edge.evaluate import evaluate_models, robustness
from edge_signs.edge.runtime import Classifier
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

# Simulates a Raspberry Pi: TensorFlow and Keras cannot be imported in this process.
NO_TENSORFLOW = """
import sys
for name in ("tensorflow", "keras", "tf_keras"):
    sys.modules[name] = None  # makes `import tensorflow` raise ImportError
from edge_signs.cli import main
try:
    main(sys.argv[1:])
finally:
    loaded = sorted(m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
    print("TF-MODULES-LOADED:", loaded, file=sys.stderr)
"""


def run_without_tensorflow(*args):
    return subprocess.run([sys.executable, "-c", NO_TENSORFLOW, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_table_for_tflite_and_keras(tflite_models, tiny_run, signs_dir, signs, tmp_path):
    models = [tiny_run / "model.keras", tflite_models["float32"], tflite_models["float16"], tflite_models["int8"]]
    result = run_cli("evaluate", *models, "--data", signs_dir, "--runs", 5, "--warmup", 1, "--json", "--out", tmp_path)
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


def test_evaluate_tflite_without_tensorflow(tflite_models, signs_dir, tmp_path):
    result = run_without_tensorflow("evaluate", tflite_models["int8"], tflite_models["float32"], "--data", signs_dir, "--runs", 3, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "| model_int8.tflite | int8 |" in result.stdout
    assert "TF-MODULES-LOADED: []" in result.stderr


def test_keras_model_without_tensorflow_is_a_clear_error(tiny_run, signs_dir):
    result = run_without_tensorflow("evaluate", tiny_run / "model.keras", "--data", signs_dir)
    assert result.returncode == 1
    assert "needs TensorFlow" in result.stderr and "Traceback" not in result.stderr


def test_bad_model_inputs(tmp_path, signs_dir):
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"\x00" * 64)
    result = run_cli("evaluate", fake, "--data", signs_dir)
    assert result.returncode == 1 and "not a TFLite model" in result.stderr
    result = run_cli("evaluate", tmp_path / "missing.tflite", "--data", signs_dir)
    assert result.returncode == 1 and "model file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_robustness_report_end_to_end(tflite_models, signs):
    report = robustness(tflite_models["int8"], signs.test.x, signs.test.y, log=lambda m: None)
    assert list(report["perturbations"]) == perturb.names()
    accs = np.array(list(report["perturbations"].values()))
    assert ((0 <= accs) & (accs <= 1)).all()
    assert report["mean"] == pytest.approx(accs.mean())
    mirrored = Classifier(tflite_models["int8"]).predict_batch(perturb.apply("mirror", signs.test.x))
    assert report["perturbations"]["mirror"] == pytest.approx(metrics.accuracy(mirrored, signs.test.y))


def test_robustness_cli(tflite_models, signs_dir, tmp_path):
    result = run_cli("evaluate", tflite_models["int8"], "--robustness", "--json", "--runs", 2, "--data", signs_dir, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out[0]["robustness"]["perturbations"]) == set(perturb.names())
    assert "## Robustness" in (tmp_path / "evaluation.md").read_text()


def test_same_harness_for_every_format(tflite_models, signs):
    x, y = signs.test.x[:12], signs.test.y[:12]
    reports = evaluate_models([tflite_models["float32"], tflite_models["int8"]], x, y, runs=3, warmup=1, log=lambda m: None)
    assert [r.format for r in reports] == ["float32", "int8"]
    assert all(r.threads == 1 for r in reports)
    # the thread count reaches the interpreter, and the numbers do not depend on it
    two = evaluate_models([tflite_models["int8"]], x, y, threads=2, runs=3, warmup=1, log=lambda m: None)[0]
    assert two.threads == 2 and two.latency_ms_p50 > 0
    assert two.accuracy == reports[1].accuracy and two.confusion == reports[1].confusion
