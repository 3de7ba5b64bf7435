"""The live loop: the same numbers as offline evaluation, playable outputs, one-line errors, no TensorFlow.

Uses the session's tiny real model (tests/conftest.py). Runs are kept short:
the test set is 120 frames and most other runs stop at --max-frames.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.errors import EdgeSignsError
from edge_signs.edge.live import LiveOptions, parse_roi, read_label_ranges, run_live
from edge_signs.plots import confusion_matrix
from edge_signs.edge.preprocess import Roi
from edge_signs.edge.runtime import Classifier
from tests.conftest import REPO, run_cli

JSON_KEYS = {"frame", "label", "raw_label", "confidence", "inference_ms"}


def _quiet(msg: str) -> None:
    pass


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
def int8(tflite_models) -> Path:
    return tflite_models["int8"]


@pytest.fixture(scope="module")
def batch_preds(int8, signs) -> np.ndarray:
    """The offline reference: Classifier.predict_batch on the RGB test images."""
    return Classifier(int8).predict_batch(signs.test.x)


# -- accuracy equals offline evaluation -----------------------------------------------------------


def test_testset_replay_matches_predict_batch(int8, signs, signs_dir, batch_preds):
    summary = run_live(int8, _opts(testset=True, data=signs_dir), log=_quiet)
    expected = batch_preds.argmax(axis=1)
    assert summary.frames == summary.scored == len(signs.test)
    assert summary.reason == "end of test set"
    assert summary.accuracy == pytest.approx(float(np.mean(expected == signs.test.y)), abs=1e-12)
    # Frame for frame the same predictions, not just the same total.
    np.testing.assert_array_equal(summary.confusion, confusion_matrix(signs.test.y, expected, config.NUM_CLASSES))
    assert summary.fps > 0 and summary.median_inference_ms > 0 and summary.median_overhead_ms >= 0


def test_cli_testset_prints_backend_and_accuracy(int8, signs, signs_dir, batch_preds, tmp_path):
    proc = run_cli("live", int8, "--testset", "--headless", "--data", signs_dir, "--report", tmp_path / "report", "--status-every", "0")
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


# -- labelled video ------------------------------------------------------------------------------------


def test_labelled_video_accuracy_matches_per_image(int8, signs, signs_dir, batch_preds, tmp_path):
    make = _tool("make_labelled_video").make_labelled_video
    pick = np.concatenate([np.flatnonzero(signs.test.y == c)[:2] for c in range(config.NUM_CLASSES)])
    k, gap = 3, 1
    video, csv = tmp_path / "clip.avi", tmp_path / "clip.csv"
    frames = make(video, csv, signs.test.x[pick], signs.test.y[pick], k, 128, gap=gap)
    assert frames == len(pick) * k + (len(pick) - 1) * gap
    jsonl = tmp_path / "clip.jsonl"
    summary = run_live(int8, _opts(video=str(video), labels_csv=csv, json_path=jsonl), log=_quiet)

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


@pytest.mark.parametrize("content, message", [
    ("start_frame,end_frame,label\n0,4,7\n", "row 2: unknown label '7'"),
    ("0,x,1\n", "row 1: start_frame and end_frame must be integers"),
    ("5,4,1\n", "row 1: need 0 <= start_frame <= end_frame"),
    ("0,4,1\n3,6,2\n", "row 2: frames 3..4 overlap the range of row 1"),
    ("0,4\n", "row 1: expected 3 columns"),
    ("start_frame,end_frame,label\n", "no label rows"),
])
def test_bad_labels_csv_names_file_and_row(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(EdgeSignsError) as err:
        read_label_ranges(path, config.LABELS)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_label_ranges_lookup(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("# comment\nstart_frame,end_frame,label\n10,12,5\n0,2,0\n")
    ranges = read_label_ranges(path, config.LABELS)
    assert [ranges.lookup(i) for i in (0, 2, 3, 9, 10, 12, 13)] == [0, 0, None, None, 5, 5, None]


# -- recording and JSON lines -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_record_and_json_lines(int8, signs_dir, tmp_path, suffix):
    record, jsonl = tmp_path / f"rec{suffix}", tmp_path / "frames.jsonl"
    summary = run_live(int8, _opts(testset=True, data=signs_dir, max_frames=25, record=record, json_path=jsonl), log=_quiet)
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
    run_live(int8, _opts(testset=True, data=signs_dir, max_frames=12, smoothing=1, threshold=0.0), log=_quiet,
             on_frame=lambda r: seen.append((r.label, r.raw_label, r.smoothed_confidence, r.confidence)))
    assert all(label == raw and s == pytest.approx(c, abs=1e-6) for label, raw, s, c in seen)
    labels = []
    run_live(int8, _opts(testset=True, data=signs_dir, max_frames=12, smoothing=4, threshold=1.0), log=_quiet,
             on_frame=lambda r: labels.append((r.label, r.smoothed_confidence)))
    assert len(labels) == 12
    assert all(label is None for label, conf in labels if conf < 1.0)  # below the threshold: no sign


@pytest.mark.parametrize("signum, reason", [(signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_finalizes_recording(int8, signs_dir, tmp_path, signum, reason):
    record, jsonl = tmp_path / "rec.avi", tmp_path / "frames.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_signs", "live", str(int8), "--testset", "--loop", "--headless", "--data", str(signs_dir),
         "--record", str(record), "--json", str(jsonl), "--status-every", "0"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not jsonl.is_file() or len(jsonl.read_text().splitlines()) < 10):
        time.sleep(0.1)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"ended: {reason}" in out
    frames = int(out.split(" frames from ")[0].splitlines()[-1])
    assert frames >= 10 and _count_frames(record) == frames


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


def test_window_without_gui_or_display_is_a_clear_error(int8, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(EdgeSignsError, match="--headless"):
        run_live(int8, LiveOptions(testset=True), log=_quiet)


def test_parse_roi():
    assert parse_roi("0.6") == Roi(0.6, 0.5, 0.5)
    assert parse_roi("0.5,0.25,0.75") == Roi(0.5, 0.25, 0.75)
    for bad in ("0", "1.5", "0.5,0.5", "a", "0.5,-0.1,0.5"):
        with pytest.raises(EdgeSignsError):
            parse_roi(bad)


# -- the Pi camera, with a stand-in for picamera2 -------------------------------------------------------------


def test_picamera_missing_says_how_to_install(int8, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(EdgeSignsError, match=r"sudo apt install python3-picamera2.*--system-site-packages"):
        run_live(int8, _opts(picamera=True), log=_quiet)


def _fake_picamera2(monkeypatch, frames_before_failing: int | None = None, start_error: Exception | None = None):
    state = {"closed": False, "config": None, "served": 0}

    class Picamera2:
        def __init__(self, index=0):
            pass

        def create_video_configuration(self, main, controls):
            return {"main": main, "controls": controls}

        def configure(self, cfg):
            state["config"] = cfg

        def start(self):
            if start_error is not None:
                raise start_error

        def capture_array(self, name="main"):
            if frames_before_failing is not None and state["served"] >= frames_before_failing:
                raise RuntimeError("camera timed out")
            state["served"] += 1
            w, h = state["config"]["main"]["size"]
            return np.full((h, w, 3), 90, np.uint8)  # RGB888: BGR order in memory

        def stop(self):
            pass

        def close(self):
            state["closed"] = True

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Picamera2))
    monkeypatch.setattr(config, "READ_RETRY_SLEEP_S", 0.0)
    return state


def test_picamera_frames_and_release(int8, monkeypatch):
    state = _fake_picamera2(monkeypatch)
    summary = run_live(int8, _opts(picamera=True, width=320, height=240, max_frames=4), log=_quiet)
    assert summary.frames == 4 and summary.scored == 0 and summary.accuracy is None
    assert state["config"]["main"] == {"size": (320, 240), "format": "RGB888"}
    assert state["closed"]


def test_camera_that_stops_ends_with_summary(int8, monkeypatch):
    state = _fake_picamera2(monkeypatch, frames_before_failing=3)
    summary = run_live(int8, _opts(picamera=True, max_frames=50), log=_quiet)
    assert summary.frames == 3 and "stopped delivering frames" in summary.reason and state["closed"]


def test_camera_with_no_frames_or_no_start_is_an_error(int8, monkeypatch):
    _fake_picamera2(monkeypatch, frames_before_failing=0)
    with pytest.raises(EdgeSignsError, match="delivered no frames"):
        run_live(int8, _opts(picamera=True), log=_quiet)
    _fake_picamera2(monkeypatch, start_error=IndexError("list index out of range"))
    with pytest.raises(EdgeSignsError, match="rpicam-hello --list-cameras"):
        run_live(int8, _opts(picamera=True), log=_quiet)


# -- frames of every layout through predict_frame ----------------------------------------------------------------


def test_predict_frame_layouts(int8, signs):
    clf = Classifier(int8)
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (480, 640), dtype=np.uint8)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    reference = clf.predict_frame(bgr).probs
    for frame in (gray, gray[..., np.newaxis], bgra):
        pred = clf.predict_frame(frame)
        assert pred.probs.shape == (config.NUM_CLASSES,) and pred.probs.dtype == np.float32
        assert pred.label in config.LABELS and 0 <= pred.confidence <= 1
        np.testing.assert_array_equal(pred.probs, reference)  # same pixels, same answer, whatever the layout


def test_predict_frame_with_roi_on_another_size(int8, signs):
    """A test image placed where a non-default ROI looks, in a 400x600 frame of noise, gives the image's own answer."""
    clf = Classifier(int8)
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)
    roi = Roi(size=0.64, cx=0.3, cy=0.6)  # a 256 px square: 4x the model's 64
    x0, y0, x1, y1 = roi.box(400, 600)
    assert (x1 - x0, y1 - y0) == (256, 256) and (x0, y0) != ((600 - 256) // 2, (400 - 256) // 2)
    rgb = signs.test.x[7]
    frame[y0:y1, x0:x1] = cv2.resize(rgb[..., ::-1], (256, 256), interpolation=cv2.INTER_NEAREST)
    pred = clf.predict_frame(frame, roi)
    assert pred.probs.shape == (config.NUM_CLASSES,) and pred.probs.dtype == np.float32
    np.testing.assert_array_equal(pred.probs, clf.predict_rgb(rgb).probs)


# -- never TensorFlow ------------------------------------------------------------------------------------------


def test_live_runs_without_tensorflow(int8, signs_dir):
    script = textwrap.dedent(f"""
        import sys

        class NoTensorFlow:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("tensorflow", "keras"):
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, NoTensorFlow())
        import edge_signs
        from edge_signs.cli import main
        try:
            main(["live", {str(int8)!r}, "--testset", "--headless", "--data", {str(signs_dir)!r}, "--status-every", "0"])
        except SystemExit as exc:
            assert not exc.code, exc.code
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        assert not bad, bad
        try:
            import tensorflow  # noqa: F401 -- the blocker must really block, or this test proves nothing
        except ImportError:
            print("NO-TF-OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "NO-TF-OK" in proc.stdout and "accuracy " in proc.stdout


# -- the window, with OpenCV's GUI calls stood in for (this OpenCV has no GUI) ------------------------------------


def _fake_gui(monkeypatch, keys: dict[int, str], visible_until: int | None = None) -> list:
    import edge_signs.edge.live as live

    shown: list = []
    monkeypatch.setattr(live, "_check_gui", lambda: None)
    monkeypatch.setattr(cv2, "namedWindow", lambda *a, **k: None)
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: ord(keys[len(shown) - 1]) if len(shown) - 1 in keys else -1)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0 if visible_until is None or len(shown) < visible_until else 0.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    return shown


def test_window_keys_snapshot_and_quit(int8, signs_dir, tmp_path, monkeypatch):
    shown = _fake_gui(monkeypatch, {2: "s", 4: "q"})
    summary = run_live(int8, LiveOptions(testset=True, data=signs_dir, snapshot_dir=tmp_path), log=_quiet)
    assert summary.frames == 5 and summary.reason == "quit from the window" and len(shown) == 5
    (snap,) = tmp_path.glob("snapshot_*_000002.png")
    img = cv2.imread(str(snap))
    assert img is not None and min(img.shape[:2]) >= config.DISPLAY_MIN_SIDE


def test_window_close_button_quits(int8, signs_dir, monkeypatch):
    _fake_gui(monkeypatch, {}, visible_until=3)
    summary = run_live(int8, LiveOptions(testset=True, data=signs_dir), log=_quiet)
    assert summary.frames == 3 and summary.reason == "quit from the window"


def test_smoother_averages_the_last_frames_and_resets():
    from edge_signs.edge.live import Smoother

    s = Smoother(3, 2)
    s.update(np.array([1.0, 0.0]))
    s.update(np.array([0.0, 1.0]))
    assert np.allclose(s.update(np.array([0.0, 1.0])), [1 / 3, 2 / 3])
    assert np.allclose(s.update(np.array([0.0, 1.0])), [0.0, 1.0])  # the first frame has left the window
    s.reset()
    assert np.allclose(s.update(np.array([1.0, 0.0])), [1.0, 0.0])


def test_testset_images_are_smoothed_on_their_own(int8, signs_dir):
    seen = []
    run_live(int8, _opts(testset=True, data=signs_dir, max_frames=10, smoothing=5, threshold=0.0), log=_quiet,
             on_frame=lambda r: seen.append((r.label, r.raw_label)))
    assert all(label == raw for label, raw in seen)  # unrelated photos are not averaged together
