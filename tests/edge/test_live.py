"""The live loop: the same numbers as offline evaluation, playable outputs, one-line errors.

Uses the committed tiny int8 model (tests/fixtures), without TensorFlow. Runs are
kept short: the test set is 120 frames and most other runs stop at --max-frames.
Sources (cameras, videos, the test set) are tested on their own in test_sources.py;
running without TensorFlow in test_no_tensorflow.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge.live import LiveOptions, parse_roi, run_live
from edge_signs.edge.loop import RollingStats
from edge_signs.edge.predict import Smoother
from edge_signs.edge.runtime import Classifier
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from edge_signs.metrics import confusion_matrix
from edge_signs.preprocess import Roi
from tests.conftest import REPO, load_tool, run_cli

JSON_KEYS = {"frame", "label", "raw_label", "confidence", "inference_ms"}


def _opts(**kw) -> LiveOptions:
    return LiveOptions(headless=True, status_interval=0, **kw)


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} is not readable by OpenCV"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


@pytest.fixture(scope="module")
def int8(tiny_models) -> Path:
    return tiny_models["int8"]


@pytest.fixture(scope="module")
def batch_preds(int8, signs) -> np.ndarray:
    """The offline reference: Classifier.predict_batch on the RGB test images."""
    return Classifier(int8).predict_batch(signs.test.x)


# -- accuracy equals offline evaluation -----------------------------------------------------------


def test_testset_replay_matches_predict_batch(int8, signs, signs_dir, batch_preds):
    summary = run_live(int8, _opts(testset=True, data=signs_dir), log=quiet)
    expected = batch_preds.argmax(axis=1)
    assert summary.frames == summary.scored == len(signs.test)
    assert summary.reason == "end of test set"
    assert summary.accuracy == pytest.approx(float(np.mean(expected == signs.test.y)), abs=1e-12)
    # Frame for frame the same predictions, not just the same total.
    np.testing.assert_array_equal(summary.confusion, confusion_matrix(signs.test.y, expected, config.NUM_CLASSES))
    assert summary.fps > 0 and summary.median_inference_ms > 0 and summary.median_overhead_ms >= 0


def test_cli_testset_prints_backend_and_accuracy(int8, signs, signs_dir, batch_preds, tmp_path):
    proc = run_cli("live", int8, "--testset", "--headless", "--signs", signs_dir, "--report", tmp_path / "report", "--status-every", "0")
    assert proc.returncode == 0, proc.stderr
    expected = float(np.mean(batch_preds.argmax(axis=1) == signs.test.y))
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("accuracy "))
    assert float(line.split()[1]) == pytest.approx(expected, abs=1e-4)
    assert f"({round(expected * len(signs.test))}/{len(signs.test)} frames)" in line
    assert "ai-edge-litert" in proc.stderr or "tflite-runtime" in proc.stderr  # clf.describe() names the backend
    assert "true\\pred" in proc.stdout
    report = json.loads((tmp_path / "report" / "live_summary.json").read_text())
    assert report["frames"] == len(signs.test) and len(report["confusion"]) == config.NUM_CLASSES
    assert cv2.imread(str(tmp_path / "report" / "confusion_matrix.png")) is not None


def test_cli_runs_headless_by_itself_where_no_window_can_open(int8, signs_dir):
    env = {"DISPLAY": ""}  # a window needs a GUI build and a display: here neither
    proc = run_cli("live", int8, "--testset", "--max-frames", "5", "--signs", signs_dir, env=env)
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("running headless: ")] != []
    assert "\n5 frames from " in "\n" + proc.stdout, proc.stdout
    forced = run_cli("live", int8, "--testset", "--max-frames", "5", "--signs", signs_dir, "--window", env=env)
    lines = [ln for ln in forced.stderr.splitlines() if ln.strip()]
    assert forced.returncode == 1 and lines[-1].startswith("edge-signs: error: --window: ") and "Traceback" not in forced.stderr, forced.stderr


# -- labelled video ------------------------------------------------------------------------------------


def test_labelled_video_accuracy_matches_per_image(int8, signs, signs_dir, batch_preds, tmp_path):
    make = load_tool("make_labelled_video").make_labelled_video
    pick = np.concatenate([np.flatnonzero(signs.test.y == c)[:2] for c in range(config.NUM_CLASSES)])
    k, gap = 3, 1
    video, csv = tmp_path / "clip.avi", tmp_path / "clip.csv"
    # 4x nearest upscale: the area downscale in the live path averages MJPG's losses away
    frames = make(video, csv, signs.test.x[pick], signs.test.y[pick], k, 256, gap=gap)
    assert frames == len(pick) * k + (len(pick) - 1) * gap
    jsonl = tmp_path / "clip.jsonl"
    summary = run_live(int8, _opts(video=str(video), labels_csv=csv, json_path=jsonl), log=quiet)

    assert summary.frames == frames and summary.reason == "end of video"
    assert summary.scored == len(pick) * k  # grey gap frames are outside every range
    per_image = batch_preds[pick]
    expected = float(np.mean(per_image.argmax(axis=1) == signs.test.y[pick]))
    assert summary.accuracy == pytest.approx(expected, abs=0.05)

    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    scored = [ln for ln in lines if ln["truth"] is not None]
    assert len(scored) == summary.scored
    assert all(ln["truth"] is None for ln in lines if ln["frame"] % (k + gap) >= k)
    # MJPG is lossy, but after upscale -> area downscale the model sees nearly the same pixels.
    image_of = {ln["frame"]: ln["frame"] // (k + gap) for ln in scored}
    agree = [int(ln["raw_label"]) == per_image[image_of[ln["frame"]]].argmax() for ln in scored]
    assert np.mean(agree) >= 0.9
    diffs = [abs(ln["confidence"] - per_image[image_of[ln["frame"]]].max()) for ln in scored]
    assert np.median(diffs) < 0.05
    assert all(ln["truth"] == config.LABELS[signs.test.y[pick][image_of[ln["frame"]]]] for ln in scored)


# -- recording and JSON lines -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_record_and_json_lines(int8, signs_dir, tmp_path, suffix):
    record, jsonl = tmp_path / f"rec{suffix}", tmp_path / "frames.jsonl"
    summary = run_live(int8, _opts(testset=True, data=signs_dir, max_frames=25, record=record, json_path=jsonl), log=quiet)
    assert summary.frames == 25 and summary.reason == "--max-frames 25 reached"
    assert _count_frames(record) == 25
    first = cv2.VideoCapture(str(record)).read()[1]
    assert min(first.shape[:2]) >= config.DISPLAY_MIN_SIDE  # 64x64 frames are upscaled so the overlay is legible
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [ln["frame"] for ln in lines] == list(range(25))
    for ln in lines:
        assert JSON_KEYS | {"truth"} <= ln.keys()
        assert ln["raw_label"] in config.LABELS and ln["truth"] in config.LABELS
        assert ln["label"] is None or ln["label"] in config.LABELS
        assert 0 <= ln["confidence"] <= 1 and ln["inference_ms"] > 0
    assert not list(tmp_path.glob(".rec*"))  # no temporary left behind


def test_smoothing_and_threshold(int8, signs_dir):
    seen = []
    run_live(int8, _opts(testset=True, data=signs_dir, max_frames=12, smoothing=1, threshold=0.0), log=quiet,
             on_frame=lambda r: seen.append((r.label, r.raw_label, r.smoothed_confidence, r.confidence)))
    assert all(label == raw and s == pytest.approx(c, abs=1e-6) for label, raw, s, c in seen)
    labels = []
    run_live(int8, _opts(testset=True, data=signs_dir, max_frames=12, smoothing=4, threshold=1.0), log=quiet,
             on_frame=lambda r: labels.append((r.label, r.smoothed_confidence)))
    assert len(labels) == 12
    assert all(label is None for label, conf in labels if conf < 1.0)  # below the threshold: no sign


@pytest.mark.parametrize("signum, reason", [(signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_finalizes_recording(int8, signs_dir, tmp_path, signum, reason):
    record, jsonl = tmp_path / "rec.avi", tmp_path / "frames.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_signs", "live", str(int8), "--testset", "--loop", "--headless", "--signs", str(signs_dir),
         "--record", str(record), "--json", str(jsonl), "--status-every", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # JSON lines stream into a temporary file beside the target until the run ends.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(len(p.read_text().splitlines()) >= 10 for p in tmp_path.glob(".frames.jsonl.tmp-*")):
        time.sleep(0.1)
    assert not jsonl.exists()  # not published while the run goes on
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"ended: {reason}" in out
    frames = int(out.split(" frames from ")[0].splitlines()[-1])
    assert frames >= 10
    # The signal ends the loop between frames: every counted frame is in the finalized, playable
    # recording and in the JSON lines, and no temporary file is left.
    recorded, lines = _count_frames(record), len(jsonl.read_text().splitlines())
    assert frames == lines == recorded, (frames, recorded, lines)
    assert not list(tmp_path.glob(".*.tmp-*"))


# -- errors a user makes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--camera", "9"], ["camera 9 cannot be opened", "--picamera", "video"]),
    (["--video", "no/such/clip.mp4"], ["video file not found"]),
    (["--testset", "--camera", "1"], ["name one source"]),
    (["--testset", "--record", "out.mkv"], [".avi"]),
    (["--testset", "--roi", "0.5,2,0.5"], ["--roi"]),
])
def test_user_errors_are_one_line(int8, args, words):
    proc = run_cli("live", int8, "--headless", *args)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edge-signs: error:"), proc.stderr
    assert "Traceback" not in proc.stderr and all(w in lines[0] for w in words)


def test_forced_window_without_gui_or_display_is_a_clear_error_before_the_source_opens(int8, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(EdgeSignsError, match="^--window: .*without --window it runs headless"):
        run_live(int8, LiveOptions(testset=True, window=True, data=Path("/nonexistent/signs")), log=quiet)  # not reached: the data is never looked for


def test_parse_roi():
    assert parse_roi("0.6") == Roi(0.6, 0.5, 0.5)
    assert parse_roi("0.5,0.25,0.75") == Roi(0.5, 0.25, 0.75)
    for bad in ("0", "1.5", "0.5,0.5", "a", "0.5,-0.1,0.5"):
        with pytest.raises(EdgeSignsError):
            parse_roi(bad)


# -- the window, with OpenCV's GUI calls stood in for (no display here) ------------------------------------------


def _fake_gui(monkeypatch, keys: dict[int, str], visible_until: int | None = None) -> "_Shown":
    import edge_signs.edge.display as display
    import edge_signs.edge.live as live

    shown = _Shown()
    checked: list = []
    monkeypatch.setattr(live, "check_gui", lambda: checked.append("run_live"))  # run_live's own check, imported by name
    monkeypatch.setattr(display, "check_gui", lambda: checked.append("Window"))  # the window's
    gui = display.cv2
    monkeypatch.setattr(gui, "namedWindow", lambda *a, **k: None)
    monkeypatch.setattr(gui, "imshow", lambda name, img: shown.append(img.shape))
    monkeypatch.setattr(gui, "waitKey", lambda ms: ord(keys[len(shown) - 1]) if len(shown) - 1 in keys else -1)
    monkeypatch.setattr(gui, "getWindowProperty", lambda *a: 1.0 if visible_until is None or len(shown) < visible_until else 0.0)
    monkeypatch.setattr(gui, "destroyWindow", lambda *a: None)
    shown.checked = checked
    return shown


class _Shown(list):
    """Shapes of the images shown, and which GUI checks ran."""

    checked: list


def test_window_keys_snapshot_and_quit(int8, signs_dir, tmp_path, monkeypatch):
    shown = _fake_gui(monkeypatch, {2: "s", 4: "q"})
    summary = run_live(int8, LiveOptions(testset=True, data=signs_dir, snapshot_dir=tmp_path, window=True), log=quiet)
    assert summary.frames == 5 and summary.reason == "quit from the window" and len(shown) == 5
    assert shown.checked == ["run_live", "Window"]  # checked before the source opens, and by the window itself
    assert all(min(shape[:2]) >= config.DISPLAY_MIN_SIDE for shape in shown)  # upscaled for a legible overlay
    (snap,) = tmp_path.glob("snapshot_*_000002.png")
    img = cv2.imread(str(snap))
    assert img is not None and min(img.shape[:2]) >= config.DISPLAY_MIN_SIDE


def test_window_close_button_quits(int8, signs_dir, monkeypatch):
    _fake_gui(monkeypatch, {}, visible_until=3)
    summary = run_live(int8, LiveOptions(testset=True, data=signs_dir, window=True), log=quiet)
    assert summary.frames == 3 and summary.reason == "quit from the window"


def test_smoother_averages_the_last_frames_and_resets():
    s = Smoother(3, 2)
    s.update(np.array([1.0, 0.0]))
    s.update(np.array([0.0, 1.0]))
    assert np.allclose(s.update(np.array([0.0, 1.0])), [1 / 3, 2 / 3])
    assert np.allclose(s.update(np.array([0.0, 1.0])), [0.0, 1.0])  # the first frame has left the window
    s.reset()
    assert np.allclose(s.update(np.array([1.0, 0.0])), [1.0, 0.0])


def test_testset_images_are_smoothed_on_their_own(int8, signs_dir):
    seen = []
    run_live(int8, _opts(testset=True, data=signs_dir, max_frames=10, smoothing=5, threshold=0.0), log=quiet,
             on_frame=lambda r: seen.append((r.label, r.raw_label)))
    assert all(label == raw for label, raw in seen)  # unrelated photos are not averaged together


def test_rolling_stats_keep_the_last_values():
    stats = RollingStats(size=3)
    assert np.isnan(stats.median())
    for v in (100.0, 1.0, 2.0, 3.0):
        stats.add(v)
    assert stats.median() == 2.0  # 100 has left the window


# -- the frame loop itself, with outputs of its own --------------------------------------------------------


def test_frame_loop_feeds_every_output_each_frame_and_closes_each_once():
    """An output plugs in by being in the list: each sees every frame in order, a stop reason ends the loop after the
    frame every output got, and a close that raises still lets the others close (then it is raised)."""
    from edge_signs.edge.loop import FrameLoop, FrameOutput
    from edge_signs.edge.sources import TestsetSource

    calls: list = []

    class Recording(FrameOutput):
        def __init__(self, name, stop_at=None, close_fails=False):
            self.name, self.stop_at, self.close_fails = name, stop_at, close_fails

        def on_frame(self, frame):
            calls.append((self.name, frame.index, frame.truth))
            return "enough" if frame.index == self.stop_at else None

        def close(self, completed):
            calls.append((self.name, "close", completed))
            if self.close_fails:
                raise OSError("disk gone")

    images = np.zeros((10, 8, 8, 3), np.uint8)
    source = TestsetSource(images, np.arange(10) % 6)
    run = FrameLoop(source, [Recording("a", stop_at=3), Recording("b")]).run()
    assert run.frames == 4 and run.reason == "enough"
    assert [c for c in calls if c[1] != "close"] == [(n, i, i % 6) for i in range(4) for n in "ab"]
    assert calls[-2:] == [("a", "close", True), ("b", "close", True)]
    calls.clear()
    with pytest.raises(OSError, match="disk gone"):
        FrameLoop(TestsetSource(images, np.arange(10) % 6), [Recording("a", close_fails=True), Recording("b")], max_frames=2).run()
    assert calls[-2:] == [("a", "close", True), ("b", "close", True)]


def test_an_output_of_the_callers_own_plugs_into_live(int8, signs_dir):
    """run_live(outputs=[...]): each frame's result after live's outputs, a stop reason that ends the run, one close."""
    from edge_signs.edge.loop import FrameOutput

    class Until(FrameOutput):
        def __init__(self):
            self.seen, self.closed = [], []

        def on_frame(self, frame):
            self.seen.append((frame.index, frame.result.raw_label, frame.truth is not None))
            return "three seen" if len(self.seen) == 3 else None

        def close(self, completed):
            self.closed.append(completed)

    mine = Until()
    summary = run_live(int8, _opts(testset=True, data=signs_dir), log=quiet, outputs=[mine])
    assert summary.frames == 3 and summary.reason == "three seen" and mine.closed == [True]
    assert [i for i, _, _ in mine.seen] == [0, 1, 2] and all(label in config.LABELS and truth for _, label, truth in mine.seen)
