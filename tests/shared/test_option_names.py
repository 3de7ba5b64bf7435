"""One meaning per option name (docs/cli.md): --signs is SIGNS, --own your own images, in every command;
the old names still work for a release, each with a one-line warning, and never beside their new name."""

from __future__ import annotations

import json

from tests.conftest import run_cli

WARNING = "warning: {old} is deprecated here and will go; use {new}"


def test_data_still_names_signs_in_live_with_a_warning(tiny_models, signs_dir):
    old = run_cli("live", tiny_models["int8"], "--testset", "--headless", "--max-frames", "3", "--data", signs_dir)
    new = run_cli("live", tiny_models["int8"], "--testset", "--headless", "--max-frames", "3", "--signs", signs_dir)
    assert old.returncode == 0 and new.returncode == 0, old.stderr + new.stderr
    assert WARNING.format(old="--data", new="--signs") in old.stderr.splitlines()
    assert "deprecated" not in new.stderr
    both = run_cli("live", tiny_models["int8"], "--testset", "--signs", signs_dir, "--data", signs_dir)
    assert both.returncode == 2 and "--data is the old name of --signs here: give --signs only" in both.stderr


def test_data_info_takes_signs_and_its_old_name(signs_dir):
    new = run_cli("data", "info", "--signs", signs_dir)
    old = run_cli("data", "info", "--data", signs_dir)
    assert new.returncode == old.returncode == 0 and new.stdout == old.stdout and "train 1080" in new.stdout, new.stderr
    assert WARNING.format(old="--data", new="--signs") in old.stderr


def test_evaluate_takes_signs_and_a_json_file_and_data_still_works(tiny_models, signs_dir, tmp_path):
    new = run_cli("evaluate", tiny_models["int8"], "--signs", signs_dir, "--runs", "1", "--json", tmp_path / "r.json", "--out", tmp_path / "a")
    assert new.returncode == 0 and "deprecated" not in new.stderr, new.stderr
    assert json.loads((tmp_path / "r.json").read_text())[0]["format"] == "int8"
    old = run_cli("evaluate", tiny_models["int8"], "--data", signs_dir, "--runs", "1", "--json", "--out", tmp_path / "b")
    assert old.returncode == 0 and WARNING.format(old="--data", new="--signs or --own") in old.stderr, old.stderr
    assert json.loads(old.stdout)[0]["accuracy"] == json.loads((tmp_path / "r.json").read_text())[0]["accuracy"]


def test_old_names_in_finetune_and_quantize_warn_before_anything_runs(tmp_path):
    (tmp_path / "mine" / "3").mkdir(parents=True)
    ft = run_cli("finetune", "--init", tmp_path / "missing.keras", "--data", tmp_path / "mine", "--out", tmp_path / "ft")
    assert ft.returncode == 1 and WARNING.format(old="--data", new="--own") in ft.stderr and "--init" in ft.stderr.splitlines()[-1]
    q = run_cli("quantize", tmp_path / "missing.keras", "--calibration", tmp_path / "mine")
    assert q.returncode == 1 and WARNING.format(old="--calibration", new="--own") in q.stderr and "model file not found" in q.stderr
    both = run_cli("quantize", tmp_path / "m.keras", "--calibration", tmp_path / "mine", "--own", tmp_path / "mine")
    assert both.returncode == 2 and "--calibration is the old name of --own here" in both.stderr
