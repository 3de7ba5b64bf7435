"""The overlay is drawn only when someone looks: a window, a recording, or a browser viewer due a frame.

Headless runs, and --serve with nobody watching, must not pay for drawing. Uses the
committed tiny int8 model and the test set, without TensorFlow.
"""

from __future__ import annotations

import pytest

from edge_signs.edge import display
from edge_signs.edge.live import LiveOptions, run_live
from edge_signs.log import quiet


@pytest.fixture
def renders(monkeypatch) -> list:
    drawn: list = []
    real = display.Overlay.render

    def counting(self, frame, r, fps):
        drawn.append(r.frame)
        return real(self, frame, r, fps)

    monkeypatch.setattr(display.Overlay, "render", counting)
    return drawn


def _opts(signs_dir, **kw) -> LiveOptions:
    return LiveOptions(testset=True, data=signs_dir, headless=True, status_interval=0, max_frames=6, **kw)


def test_headless_draws_nothing(tiny_models, signs_dir, renders, tmp_path):
    summary = run_live(tiny_models["int8"], _opts(signs_dir, json_path=tmp_path / "f.jsonl"), log=quiet)
    assert summary.frames == 6 and renders == []


def test_serve_without_a_viewer_draws_nothing(tiny_models, signs_dir, renders):
    summary = run_live(tiny_models["int8"], _opts(signs_dir, serve="127.0.0.1:0"), log=quiet)
    assert summary.frames == 6 and renders == [] and summary.served["encoded"] == 0


def test_recording_draws_every_frame(tiny_models, signs_dir, renders, tmp_path):
    summary = run_live(tiny_models["int8"], _opts(signs_dir, record=tmp_path / "rec.avi"), log=quiet)
    assert summary.frames == 6 and renders == list(range(6))
