"""Fixtures of the Pi-side tests that more than one file uses."""

from __future__ import annotations

import numpy as np
import pytest

from edge_signs.edge.runtime import Classifier
from tests.conftest import load_tool


@pytest.fixture(scope="session")
def held_video(tiny_models, signs, tmp_path_factory):
    """A video of signs each held 1.2 s, with 0.2 s of another sign between them: (video, labels CSV, held ranges)."""
    probs = Classifier(tiny_models["int8"]).predict_batch(signs.test.x)
    sure = (probs.argmax(1) == signs.test.y) & (probs.max(1) > 0.9)
    first = {c: int(np.flatnonzero(sure & (signs.test.y == c))[0]) for c in range(6)}
    held_order, between = [0, 1, 2, 3, 4, 5], [3, 4, 5, 0, 1]  # each transition differs from both neighbours
    images, per = [], 3  # frames per image: a held sign is 6 images (18 frames, 1.2 s at 15 fps), a transition one (0.2 s)
    for k, c in enumerate(held_order):
        images += [first[c]] * 6
        if k < len(between):
            images.append(first[between[k]])
    folder = tmp_path_factory.mktemp("held")
    video, csv = folder / "held.avi", folder / "held.csv"
    load_tool("make_labelled_video").make_labelled_video(video, csv, signs.test.x[images], signs.test.y[images], per, 128, fps=15.0)
    ranges, start = [], 0
    for k, c in enumerate(held_order):
        ranges.append((start, start + 6 * per - 1, str(c)))
        start += 6 * per + (per if k < len(between) else 0)
    return video, csv, ranges
