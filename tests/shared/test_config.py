"""The defaults in one place: recipes, and the committed calibration manifest where an install can find it."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edge_signs import config
from tests.conftest import REPO


def test_default_recipe_is_a_recipe():
    assert config.DEFAULT_RECIPE in config.RECIPES and "seed" in config.RECIPES
    assert all(isinstance(r, config.Recipe) for r in config.RECIPES.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.RECIPES["seed"].epochs = 1  # type: ignore[misc]


def test_calibration_manifest_is_found():
    """In a checkout it is calibration/manifest.csv; in an installed wheel, package data (the CI's [pi] venv checks that)."""
    path = config.calibration_manifest()
    assert path.is_file(), path
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    rows = list(csv.DictReader(lines))
    assert list(rows[0]) == ["index", "label", "file", "pixels_sha256"]
    labels = np.array([int(r["label"]) for r in rows])
    assert np.bincount(labels, minlength=config.NUM_CLASSES).tolist() == [config.CALIBRATION_PER_CLASS] * config.NUM_CLASSES


def _cgroup(tmp_path, files: dict):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no limit
    ({"cpu.max": "200000 100000\n"}, 2),  # docker --cpus 2
    ({"cpu.max": "150000 100000\n"}, 2),  # --cpus 1.5 keeps two cores partly busy
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # cgroup v1, no limit
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
    ({"cpu.max": "garbage"}, None),
    ({}, None),  # not Linux, or no cgroup file system
])
def test_a_containers_cpu_quota_is_read_from_either_cgroup_version(tmp_path, files, quota):
    assert config.cpu_quota_cores(_cgroup(tmp_path, files)) == quota


def test_the_cores_available_are_the_affinity_mask_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert config.available_cores(_cgroup(tmp_path / "limited", {"cpu.max": "200000 100000"})) == 2
    assert config.available_cores(_cgroup(tmp_path / "free", {"cpu.max": "max 100000"})) == 64
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert config.available_cores(_cgroup(tmp_path / "limited", {})) == 1


def test_default_threads_are_the_cores_available_at_most_four(monkeypatch):
    for cores, threads in ((1, 1), (2, 2), (4, 4), (8, 4), (64, 4)):
        monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        assert config.default_threads() == threads
    assert 1 <= config.THREADS <= config.MAX_THREADS


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this system")
def test_every_command_that_runs_a_model_defaults_to_the_cores_it_may_use(tiny_models, signs_dir, tmp_path):
    """live and evaluate, run on one pinned core, default to one thread; on every core, to min(4, cores)."""
    cores = len(os.sched_getaffinity(0))
    pin_one = "import os, sys; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); from edge_signs.__main__ import main; sys.argv[0] = 'edge-signs'; main()"
    for code, threads in ((pin_one, 1), ("from edge_signs.__main__ import main; main()", min(4, cores))):
        live = subprocess.run([sys.executable, "-c", code, "live", str(tiny_models["int8"]), "--testset", "--max-frames", "2", "--headless",
                               "--signs", str(signs_dir)], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert live.returncode == 0, live.stderr
        assert f"{threads} thread(s)" in live.stderr, live.stderr
        ev = subprocess.run([sys.executable, "-c", code, "evaluate", str(tiny_models["int8"]), "--signs", str(signs_dir), "--runs", "1",
                             "--warmup", "0", "--json", "--out", str(tmp_path / f"ev{threads}")], capture_output=True, text=True, cwd=REPO, timeout=300)
        assert ev.returncode == 0, ev.stderr
        assert json.loads(ev.stdout)[0]["threads"] == threads
