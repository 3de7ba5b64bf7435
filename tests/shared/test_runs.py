"""Run folders: runs/<command>/<name><N> when no --out is given, and the newest run as quantize's and evaluate's default."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

from edge_signs import runs
from edge_signs.errors import EdgeSignsError
from tests.conftest import run_cli
from tests.edge.test_no_tensorflow import BLOCKER


def test_the_counter_goes_one_past_the_highest_run_of_that_name(tmp_path):
    assert runs.next_run_dir("train", root=tmp_path) == tmp_path / "train" / "run1"
    assert runs.next_run_dir("train", root=tmp_path) == tmp_path / "train" / "run2"
    (tmp_path / "train" / "run7").mkdir()
    (tmp_path / "train" / "other12").mkdir()
    (tmp_path / "train" / "run8").write_text("")  # a file: not a run, and its name is taken
    assert runs.next_run_dir("train", root=tmp_path) == tmp_path / "train" / "run9"
    assert runs.next_run_dir("train", "other", root=tmp_path) == tmp_path / "train" / "other13"
    assert runs.next_run_dir("finetune", "hands", root=tmp_path) == tmp_path / "finetune" / "hands1"
    assert all(p.is_dir() and not any(p.iterdir()) for p in (tmp_path / "train").glob("run*") if p.name != "run8")
    with pytest.raises(EdgeSignsError, match="--name '../up'"):
        runs.next_run_dir("train", "../up", root=tmp_path)


def _model(folder, name="model.keras", mtime=None):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_the_newest_run_is_the_one_with_the_newest_model(tmp_path):
    with pytest.raises(EdgeSignsError, match="no MODEL named"):
        runs.newest_keras_model(tmp_path)
    _model(tmp_path / "train" / "run9", mtime=1_000_000)
    newest = _model(tmp_path / "finetune" / "run1", mtime=2_000_000)
    _model(tmp_path / "train" / "run10", mtime=1_500_000)
    (tmp_path / "train" / "run11").mkdir()  # started, nothing written yet
    assert runs.newest_keras_model(tmp_path) == newest


def test_evaluate_defaults_to_the_newest_quantized_run_float32_first(tiny_models, signs_dir, tmp_path):
    run = tmp_path / "runs" / "train" / "run3"
    run.mkdir(parents=True)
    for fmt in ("int8", "float16", "float32"):
        shutil.copy(tiny_models[fmt], run / f"model_{fmt}.tflite")
        shutil.copy(tiny_models[fmt].with_suffix(".json"), run / f"model_{fmt}.json")
    assert [p.name for p in runs.newest_tflite_models(tmp_path / "runs")] == ["model_float32.tflite", "model_float16.tflite", "model_int8.tflite"]
    proc = run_cli("evaluate", "--signs", signs_dir, "--runs", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "models: runs/train/run3/model_float32.tflite, runs/train/run3/model_float16.tflite, runs/train/run3/model_int8.tflite (the newest run)" in proc.stderr
    assert "| model_int8.tflite | int8 |" in proc.stdout and (run / "evaluation.json").is_file()


def _cli_here(cwd, *args) -> subprocess.CompletedProcess:
    """`edge-signs ARGS` run in ``cwd`` with TensorFlow blocked (the inputs are all checked before it would come in)."""
    body = textwrap.dedent(f"""
        from edge_signs.cli import main
        main({[str(a) for a in args]!r})
    """)
    return subprocess.run([sys.executable, "-c", BLOCKER + body], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_quantize_defaults_to_the_newest_run_and_finetune_makes_one(tmp_path):
    proc = _cli_here(tmp_path, "quantize")
    assert proc.returncode == 1 and "no MODEL named, and no runs/train/*/model.keras" in proc.stderr, proc.stderr
    model = _model(tmp_path / "runs" / "train" / "run1")
    proc = _cli_here(tmp_path, "quantize", "--fp32")
    assert "model: runs/train/run1/model.keras (the newest run)" in proc.stderr and "needs TensorFlow" in proc.stderr, proc.stderr
    (tmp_path / "mine" / "3").mkdir(parents=True)
    proc = _cli_here(tmp_path, "finetune", "--init", model, "--own", tmp_path / "mine")
    assert proc.stderr.splitlines()[0] == "run folder: runs/finetune/run1", proc.stderr
    assert (tmp_path / "runs" / "finetune" / "run1").is_dir()
    proc = _cli_here(tmp_path, "finetune", "--init", model, "--own", tmp_path / "mine", "--resume")
    assert proc.returncode == 2 and "--resume needs --out RUN_FOLDER" in proc.stderr
