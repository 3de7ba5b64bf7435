"""The defaults in one place: recipes, and the committed calibration manifest where an install can find it."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest

from edge_signs import config


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
