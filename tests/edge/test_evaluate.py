"""`edge-signs evaluate` on .tflite files: the comparison table, the harness, the robustness report.

Runs on the committed tiny models (tests/fixtures), without TensorFlow. The Keras
half (a .keras file in the table, the int8 layer diagnosis) is in tests/trainer.
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from edge_signs import config, metrics, perturb
from edge_signs.edge import evaluate
from edge_signs.edge.evaluate import (
    TFLITE,
    ModelReport,
    edge_runners,
    evaluate_models,
    int8_losses,
    markdown_table,
    robustness,
    robustness_table,
    run_evaluation,
    tflite_runner,
)
from edge_signs.edge.runtime import Backend, Classifier, find_backend, sidecar_path
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from edge_signs.runners import ModelKind, Runners
from tests.conftest import run_cli
from tests.faults import one_line_error

# The report order of the perturbations, written out: a renamed or dropped one must show up here.
PERTURBATIONS = ["brightness_up", "brightness_down", "contrast_low", "contrast_high", "color_cast_warm", "color_cast_cool",
                 "sensor_noise", "blur", "jpeg", "mirror", "shift", "rotate", "scale"]


def test_table_for_every_tflite_format(tiny_models, signs_dir, signs, tmp_path):
    models = [tiny_models["float32"], tiny_models["float16"], tiny_models["int8"]]
    result = run_cli("evaluate", *models, "--signs", signs_dir, "--runs", 5, "--warmup", 1, "--json", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["format"] for r in rows] == ["float32", "float16", "int8"]
    for row, path in zip(rows, models):
        assert {"model", "format", "backend", "size_mb", "accuracy", "loss", "agreement", "latency_ms_p50", "per_class_accuracy"} <= set(row)
        assert row["latency_ms_p50"] > 0 and row["latency_ms_p90"] >= row["latency_ms_p50"]
        assert sum(map(sum, row["confusion"])) == 120 and row["threads"] == config.THREADS
        assert row["size_mb"] == pytest.approx(path.stat().st_size / 1e6)
        # the numbers are those of the model on the real test set
        probs = Classifier(path).predict_batch(signs.test.x)
        assert row["accuracy"] == pytest.approx(metrics.accuracy(probs, signs.test.y))
        assert row["loss"] == pytest.approx(metrics.cross_entropy(probs, signs.test.y), rel=1e-5)
        assert row["agreement"] == pytest.approx(float(np.mean(probs.argmax(1) == Classifier(models[0]).predict_batch(signs.test.x).argmax(1))))
    assert rows[0]["agreement"] == 1.0 and rows[1]["agreement"] >= 0.95  # float16 is float32 with rounded weights
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["models"] == rows
    assert len(report["models"]) == 3 and report["data"]["test_images"] == 120
    assert "| tiny_int8.tflite | int8 |" in (tmp_path / "evaluation.md").read_text()
    assert cv2.imread(str(tmp_path / "confusion_tiny_int8.png")) is not None


def test_bad_model_inputs(tmp_path, signs_dir):
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"\x00" * 64)
    result = run_cli("evaluate", fake, "--signs", signs_dir)
    assert result.returncode == 1 and "not a TFLite model" in result.stderr
    result = run_cli("evaluate", tmp_path / "missing.tflite", "--signs", signs_dir)
    assert result.returncode == 1 and "model file not found" in result.stderr
    result = run_cli("evaluate", tmp_path / "notes.txt", "--signs", signs_dir)
    assert result.returncode == 1 and "not a model file" in result.stderr
    assert "Traceback" not in result.stderr


# -- the runner registry -----------------------------------------------------------------------------------


def _copy_model(model, folder, name):
    """The model and its sidecar under another name (the sidecar names the model's bytes, which stay the same)."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(model.read_bytes())
    sidecar_path(folder / name).write_bytes(sidecar_path(model).read_bytes())
    return folder / name


def test_runners_pick_the_kind_by_file_suffix(tiny_models, signs, tmp_path):
    """A kind registered for a suffix runs that suffix's files; the others keep theirs."""
    renamed = _copy_model(tiny_models["int8"], tmp_path, "tiny_int8.lite")
    runners = edge_runners()
    runners.register(ModelKind((".lite",), ".lite from this test", TFLITE.check,
                               lambda path, threads, backend: dataclasses.replace(tflite_runner(path, threads, backend), backend="relabelled")))
    x, y = signs.test.x[:12], signs.test.y[:12]
    lite, plain = evaluate_models([renamed, tiny_models["int8"]], x, y, runs=1, warmup=0, runners=runners, log=quiet)
    assert lite.backend == "relabelled" and plain.backend == str(find_backend())
    assert (lite.accuracy, lite.confusion) == (plain.accuracy, plain.confusion)  # the same bytes, run by the same interpreter
    with pytest.raises(EdgeSignsError, match=r"not a model file \(expected \.tflite from 'edge-signs quantize'\)"):
        evaluate_models([renamed], x, y, runs=1, warmup=0, log=quiet)  # the edge side alone has no .lite kind
    with pytest.raises(EdgeSignsError, match="no model kind is available here"):
        Runners().check(tiny_models["int8"])


def _recording_backend() -> tuple[Backend, list[dict]]:
    """The installed interpreter, with a record of how each instance was constructed."""
    real = find_backend()
    made: list[dict] = []

    class RecordingInterpreter(real.interpreter_class):
        def __init__(self, *args, **kwargs):
            made.append({"args": args, **kwargs})
            super().__init__(*args, **kwargs)

    return Backend(RecordingInterpreter, real.name, real.version), made


def test_same_harness_for_every_format(tiny_models, signs):
    x, y = signs.test.x[:12], signs.test.y[:12]
    paths = [tiny_models["float32"], tiny_models["int8"]]
    reference = evaluate_models(paths, x, y, runs=3, warmup=1, log=quiet)
    assert [r.format for r in reference] == ["float32", "int8"]
    assert all(r.threads == config.THREADS and r.backend == str(find_backend()) for r in reference)
    # the thread count reaches the interpreter itself, once per model ...
    recording, made = _recording_backend()
    two = evaluate_models(paths, x, y, threads=2, runs=3, warmup=1, backend=recording, log=quiet)
    assert made == [{"args": (), "model_path": str(p), "num_threads": 2} for p in paths]
    # ... and the numbers do not depend on it, nor on who built the interpreter
    for a, b in zip(reference, two):
        assert (b.format, b.accuracy, b.loss, b.agreement, b.confusion, b.per_class_accuracy) == \
               (a.format, a.accuracy, a.loss, a.agreement, a.confusion, a.per_class_accuracy)
        assert b.threads == 2 and b.latency_ms_p50 > 0


def test_robustness_against_independent_predictions(tiny_models, signs):
    x, y = signs.test.x, signs.test.y
    path = tiny_models["int8"]
    log: list[str] = []
    report = robustness(path, x, y, seed=1, log=log.append)
    assert report["model"] == str(path) and report["format"] == "int8"
    assert list(report["perturbations"]) == PERTURBATIONS
    # every number, recomputed from the classifier and the perturbations directly
    clf = Classifier(path)
    assert report["clean"] == pytest.approx(metrics.accuracy(clf.predict_batch(x), y))
    expected = [metrics.accuracy(clf.predict_batch(perturb.apply(name, x, seed=1)), y) for name in PERTURBATIONS]
    assert list(report["perturbations"].values()) == pytest.approx(expected)
    assert report["mean"] == pytest.approx(sum(expected) / len(PERTURBATIONS))
    # seed 1 matters: with the default seed the random perturbations score otherwise, so the match above says the seed was used
    random = [PERTURBATIONS.index(name) for name in ("sensor_noise", "shift", "rotate", "scale")]
    seed0 = [metrics.accuracy(clf.predict_batch(perturb.apply(PERTURBATIONS[i], x, seed=0)), y) for i in random]
    assert seed0 != [expected[i] for i in random]
    assert [line.split()[0] for line in log] == PERTURBATIONS
    table = robustness_table([report])
    assert "| clean |" in table and f"**{report['mean']:.3f}**" in table
    assert len(table.splitlines()) == 2 + 1 + 13 + 1


def test_robustness_cli(tiny_models, signs_dir, tmp_path):
    result = run_cli("evaluate", tiny_models["int8"], "--robustness", "--json", "--runs", 2, "--signs", signs_dir, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert list(out[0]["robustness"]["perturbations"]) == PERTURBATIONS
    assert "## Robustness" in (tmp_path / "evaluation.md").read_text()


def _report(fmt: str, accuracy: float) -> ModelReport:
    return ModelReport(model=f"m_{fmt}.tflite", format=fmt, backend="b", size_mb=1.0, accuracy=accuracy, loss=1.0,
                       agreement=1.0, latency_ms_p50=2.0, latency_ms_p90=3.0, threads=1, confusion=[[1, 0], [0, 1]])


def test_int8_losses_are_measured_against_the_best_float():
    f32, f16 = _report("float32", 0.90), _report("float16", 0.92)
    ok, bad = _report("int8", 0.915), _report("int8", 0.80)
    assert int8_losses([f32, ok]) == []  # within tolerance of float32
    losses = int8_losses([f32, f16, ok, bad])
    assert [(r, round(d, 6)) for r, d in losses] == [(bad, 0.12)]  # 0.92 - 0.80, and 0.005 is within tolerance
    assert int8_losses([ok, bad]) == []  # no float model to compare with
    assert int8_losses([_report("keras float32", 0.95), ok])[0][1] == pytest.approx(0.035)


def test_markdown_table_speed_up_is_relative_to_the_first():
    a, b = _report("float32", 0.9), _report("int8", 0.9)
    b.latency_ms_p50 = 0.5
    lines = markdown_table([a, b]).splitlines()
    assert lines[2].endswith("| 1.00x |") and lines[3].endswith("| 4.00x |")
    assert "2 test images" in lines[-2] and lines[-1].startswith("Runtime: ")


# -- your own images, side by side with SIGNS ----------------------------------------------------------


def _as_labelled_folder(signs, folder):
    """The SIGNS test images as a labelled folder of PNGs (lossless), 4 per session: own data with known answers."""
    for i, (image, label) in enumerate(zip(signs.test.x, signs.test.y)):
        path = folder / config.LABELS[label] / f"s{i // 4:03d}_{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def test_own_folder_side_by_side_with_signs(tiny_models, signs_dir, signs, tmp_path):
    own = _as_labelled_folder(signs, tmp_path / "mine")
    model = tiny_models["int8"]
    result = run_cli("evaluate", model, "--signs", signs_dir, "--own", own, "--runs", 2, "--warmup", 0, "--json", "--out", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)[0]
    truth = metrics.accuracy(Classifier(model).predict_batch(signs.test.x), signs.test.y)
    # the same pixels through the folder path give the same numbers as the SIGNS test set
    assert row["datasets"]["SIGNS test"]["accuracy"] == pytest.approx(truth) == row["accuracy"]
    assert row["datasets"]["mine all"]["accuracy"] == pytest.approx(truth)
    assert row["datasets"]["mine all"]["images"] == 120
    report = json.loads((tmp_path / "report" / "evaluation.json").read_text())
    assert [d["name"] for d in report["datasets"]] == ["SIGNS test", "mine all"]
    md = (tmp_path / "report" / "evaluation.md").read_text()
    assert "## Accuracy by dataset" in md and "| SIGNS test (120) | mine all (120) |" in md
    assert cv2.imread(str(tmp_path / "report" / "confusion_tiny_int8_mine-all.png")) is not None


def test_own_folder_heldout_split_scores_whole_sessions_only(tiny_models, signs, tmp_path):
    from edge_signs.own_data import grouped_split, load_labelled

    own = _as_labelled_folder(signs, tmp_path / "mine")
    result = run_cli("evaluate", tiny_models["int8"], "--own", own, "--split", "heldout", "--runs", 1, "--warmup", 0, "--json", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)[0]
    loaded = load_labelled(own)
    _, held = grouped_split(loaded.groups, config.HOLDOUT_FRACTION, config.HOLDOUT_SALT)
    assert 0 < len(held) < 120 and len(held) % 4 == 0  # whole sessions of four
    expected = metrics.accuracy(Classifier(tiny_models["int8"]).predict_batch(loaded.x[held]), loaded.y[held])
    assert sum(map(sum, row["confusion"])) == len(held) and row["accuracy"] == pytest.approx(expected)


def test_scoring_the_folder_a_model_was_fine_tuned_on_says_so(tiny_models, signs, tmp_path):
    own = _as_labelled_folder(signs, tmp_path / "mine")
    run = tmp_path / "run"
    run.mkdir()
    for suffix in (".tflite", ".json"):
        (run / f"model_int8{suffix}").write_bytes(tiny_models["int8"].with_suffix(suffix).read_bytes())
    (run / "metrics.json").write_text(json.dumps({"dataset": {"own": [str(own)]}}))
    result = run_cli("evaluate", run / "model_int8.tflite", "--own", own, "--runs", 1, "--warmup", 0, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "was fine-tuned on" in result.stderr and "--split heldout" in result.stderr
    quiet_run = run_cli("evaluate", run / "model_int8.tflite", "--own", own, "--split", "heldout", "--runs", 1, "--warmup", 0, "--out", tmp_path)
    assert quiet_run.returncode == 0 and "was fine-tuned on" not in quiet_run.stderr


def test_own_folder_errors_are_one_line(tiny_models, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("evaluate", tiny_models["int8"], "--own", tmp_path / "empty", "--out", tmp_path)
    assert result.returncode == 1 and "no class folders" in result.stderr and "Traceback" not in result.stderr


def test_a_split_of_a_folder_with_train_and_test_folders_names_the_ambiguity(tiny_models, signs, tmp_path):
    """--split heldout on a folder with train/ and test/ image folders: not scored as "SIGNS test" with the split
    ignored; one line naming the folder, the layout it has, and what to pass instead."""
    own = tmp_path / "mine"
    _as_labelled_folder(signs, own / "train")
    _as_labelled_folder(signs, own / "test")
    for split in ("heldout", "train"):
        result = run_cli("evaluate", tiny_models["int8"], "--own", own, "--split", split, "--runs", 1, "--warmup", 0, "--out", tmp_path / "ev")
        one_line_error(result, f"--data {own} --split {split}", "train/ and test/", str(own / "train"))
        assert not (tmp_path / "ev").exists()


def _held_out_sessions(count: int) -> list[str]:
    """Session names the fixed held-out split holds out, every one of them."""
    from edge_signs.own_data import grouped_split

    names = [f"s{k:04d}" for k in range(400)]
    _, held = grouped_split(names, config.HOLDOUT_FRACTION, config.HOLDOUT_SALT)
    return [names[i] for i in held[:count]]


def test_a_split_left_empty_is_one_line_naming_the_folder(tiny_models, signs, tmp_path):
    """--split train on a folder whose every session is held out: one line naming the folder (no IndexError, no
    numpy RuntimeWarning, no nan in a table)."""
    own = tmp_path / "mine"
    for session, k in zip(_held_out_sessions(6), range(6)):
        path = own / config.LABELS[k] / f"{session}_00001.png"
        path.parent.mkdir(parents=True)
        cv2.imwrite(str(path), cv2.cvtColor(signs.test.x[k], cv2.COLOR_RGB2BGR))
    result = run_cli("evaluate", tiny_models["int8"], "--own", own, "--split", "train", "--runs", 1, "--warmup", 0, "--out", tmp_path / "ev")
    one_line_error(result, str(own), "--split train", "no images")
    assert "RuntimeWarning" not in result.stderr and "nan" not in result.stdout


# -- where int8 loses accuracy ----------------------------------------------------------------------------


def _int8_always_loses(monkeypatch):
    monkeypatch.setattr(evaluate, "int8_losses", lambda reports: [(r, 0.25) for r in reports if r.format == "int8"])


def test_an_int8_loss_without_a_diagnosis_says_where_to_run_one(tiny_models, signs, monkeypatch):
    _int8_always_loses(monkeypatch)
    log: list[str] = []
    result = run_evaluation([tiny_models["float32"], tiny_models["int8"]], signs, runs=1, warmup=0, log=log.append)
    assert any("tiny_int8.tflite: int8 loses 0.250" in line and "where TensorFlow and its source model are" in line for line in log)
    assert "## Where int8 loses accuracy" not in result["markdown"]
    assert all("int8_layer_errors" not in m for m in result["models"])


def test_a_registered_diagnosis_is_attached_to_its_model(tiny_models, signs, monkeypatch):
    """The diagnosis a registry carries (the trainer's, from the CLI) is called with the losses and the SIGNS scored on."""
    _int8_always_loses(monkeypatch)
    calls = []

    def diagnose(losses, data, log):
        calls.append(([(r.model, drop) for r, drop in losses], data))
        return [{"model": r.model, "accuracy_drop": drop, "layers": [{"layer": "conv", "op": "CONV_2D", "rmse_over_scale": 1.5}]}
                for r, drop in losses]

    runners = Runners([TFLITE], diagnose_int8=diagnose)
    result = run_evaluation([tiny_models["float32"], tiny_models["int8"]], signs, runs=1, warmup=0, runners=runners, log=quiet)
    assert len(calls) == 1 and calls[0][0] == [(str(tiny_models["int8"]), 0.25)] and calls[0][1] is signs
    float32, int8 = result["models"]
    assert "int8_layer_errors" not in float32 and int8["int8_layer_errors"]["layers"][0]["op"] == "CONV_2D"
    assert "## Where int8 loses accuracy" in result["markdown"] and "| conv | CONV_2D | 1.50 |" in result["markdown"]

