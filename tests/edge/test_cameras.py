"""USB and Pi cameras with stand-ins for their drivers (cv2.VideoCapture, picamera2), alone and in the live loop."""

from __future__ import annotations

import json
import sys
import time
import types

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge import devices
from edge_signs.edge.live import LiveOptions, run_live
from edge_signs.edge.runtime import Classifier
from edge_signs.edge.sources import CameraSource, open_source
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from edge_signs.preprocess import Roi

FRAME = np.full((48, 64, 3), 90, np.uint8)


def _dying_capture(monkeypatch, frames: int, frame: np.ndarray = FRAME) -> dict:
    """cv2.VideoCapture whose read raises cv2.error (the USB cable pulled) after ``frames`` frames."""
    state = _fake_capture(monkeypatch)

    class Dying(state["camera"]):
        served = 0

        def grab(self):
            if Dying.served >= frames:
                raise cv2.error("VIDEOIO(V4L2:/dev/video0): can't read frame")
            Dying.served += 1
            time.sleep(0.002)
            return True

        def retrieve(self, buf=None):
            return True, frame.copy()

    monkeypatch.setattr(devices.cv2, "VideoCapture", _cameras_only(Dying))
    return state


def _cameras_only(camera):
    """cv2.VideoCapture with ``camera`` standing in for devices: a file (a --record video read back) is OpenCV's own."""
    real = cv2.VideoCapture

    def capture(*args):
        return real(*args) if args and isinstance(args[0], str) else camera(*args)

    return capture


def test_live_loop_camera_that_dies_ends_with_summary(tiny_models, monkeypatch):
    state = _dying_capture(monkeypatch, 6)
    summary = run_live(tiny_models["int8"], _opts(camera=0, max_frames=100), log=quiet)
    assert 1 <= summary.frames <= 6 and summary.frames + summary.dropped == 6
    assert summary.reason.startswith("camera 0 failed (error: ") and "can't read frame" in summary.reason
    assert state["released"] == 1
    _dying_capture(monkeypatch, 0)
    with pytest.raises(EdgeSignsError, match=r"camera 0 failed \(error: "):
        run_live(tiny_models["int8"], _opts(camera=0, max_frames=100), log=quiet)


def test_cli_camera_that_dies_is_a_summary_not_a_traceback(tiny_models, monkeypatch):
    from click.testing import CliRunner

    from edge_signs.cli import main

    _dying_capture(monkeypatch, 4)
    result = CliRunner().invoke(main, ["live", str(tiny_models["int8"]), "--camera", "0", "--headless", "--status-every", "0"])
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "ended: camera 0 failed (error: " in result.output and "Traceback" not in result.output
    _dying_capture(monkeypatch, 0)
    result = CliRunner().invoke(main, ["live", str(tiny_models["int8"]), "--camera", "0", "--headless", "--status-every", "0"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "camera 0 failed (error: " in result.output and isinstance(result.exception, SystemExit)


def test_live_loop_preprocesses_in_the_capture_thread(tiny_models, monkeypatch, tmp_path):
    """A camera through the capture thread scores exactly what predict_frame gives, and headless keeps no full frames."""
    import edge_signs.edge.live as live

    frame = np.random.default_rng(2).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    _dying_capture(monkeypatch, 10**6, frame)
    made, taken = [], []

    def spy(*args, **kwargs):
        made.append(open_source(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(live, "open_source", spy)
    roi = Roi(0.8, 0.45, 0.5)
    out = tmp_path / "frames.jsonl"
    summary = run_live(tiny_models["int8"], _opts(camera=0, width=640, height=480, max_frames=8, roi=roi, json_path=out), log=quiet,
                       on_frame=lambda r: taken.append(made[-1].prepared.shape))
    assert summary.frames == 8 and made[0].prepares and not made[0].keep_frames
    assert taken == [(config.IMAGE_SIZE, config.IMAGE_SIZE, 3)] * 8  # the model's input, made in the thread
    expected = Classifier(tiny_models["int8"]).predict_frame(frame, roi)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {(d["raw_label"], d["confidence"]) for d in lines} == {(expected.label, round(expected.confidence, 4))}
    made.clear()
    summary = run_live(tiny_models["int8"], _opts(camera=0, max_frames=3, record=tmp_path / "rec.avi"), log=quiet)
    assert summary.frames == 3 and made[0].keep_frames  # the overlay needs the full frame
    # Without prepare (collect, teach) every frame comes whole.
    src = open_source(_opts(camera=0))
    try:
        assert not src.prepares and src.keep_frames and next(iter(src))[0].shape == frame.shape
    finally:
        src.close()


# -- a USB camera, with a stand-in for cv2.VideoCapture ------------------------------------------------


def _fake_capture(monkeypatch, *, opens: bool = True, script: str = "f" * 1000) -> dict:
    state = {"released": 0, "set": {}, "bufs": [], "args": None}
    steps = list(script)

    class FakeCapture:
        def __init__(self, *args):
            state["args"] = args

        def isOpened(self):
            return opens

        def set(self, prop, value):
            state["set"][prop] = value
            return True

        def get(self, prop):
            return 25.0 if prop == cv2.CAP_PROP_FPS else 0.0

        def grab(self):
            return bool(steps) and steps.pop(0) == "f"

        def retrieve(self, buf=None):
            state["bufs"].append(buf)
            return True, FRAME.copy() if buf is None else buf

        def release(self):
            state["released"] += 1

    monkeypatch.setattr(devices.cv2, "VideoCapture", _cameras_only(FakeCapture))
    monkeypatch.setattr(config, "READ_RETRY_SLEEP_S", 0.0)
    state["camera"] = FakeCapture
    return state


def test_camera_that_cannot_open_names_the_fix(monkeypatch):
    state = _fake_capture(monkeypatch, opens=False)
    with pytest.raises(EdgeSignsError) as err:
        CameraSource(3, 640, 480, 30)
    assert "camera 3 cannot be opened" in str(err.value) and "--picamera" in str(err.value) and "\n" not in str(err.value)
    assert state["released"] == 1


def test_camera_settings_frames_and_buffer_reuse(monkeypatch):
    state = _fake_capture(monkeypatch, script="f-ff")
    cam = CameraSource(2, 320, 240, 15)
    assert state["args"][0] == 2
    assert state["set"][cv2.CAP_PROP_FRAME_WIDTH] == 320 and state["set"][cv2.CAP_PROP_FRAME_HEIGHT] == 240
    assert state["set"][cv2.CAP_PROP_BUFFERSIZE] == 1 and cam.fps == 25.0 and cam.live
    frames = list(cam)
    assert len(frames) == 3 and all(truth is None for _, truth in frames)
    assert cam.ended == f"camera 2 stopped delivering frames ({config.READ_RETRIES} failed reads)"
    assert state["bufs"][0] is None and state["bufs"][-1] is frames[0][0]  # later reads decode into the same array
    cam.close()
    assert state["released"] == 1


def test_camera_that_opens_but_delivers_nothing(monkeypatch):
    _fake_capture(monkeypatch, script="")
    with pytest.raises(EdgeSignsError, match="camera 0 opened but delivered no frames"):
        list(CameraSource(0, 640, 480, 30))


# -- the Pi camera, with a stand-in for picamera2 -------------------------------------------------------------


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


def _opts(**kw) -> LiveOptions:
    return LiveOptions(headless=True, status_interval=0, **kw)


def test_picamera_missing_says_how_to_install(tiny_models, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)  # import picamera2 -> ImportError
    with pytest.raises(EdgeSignsError, match=r"sudo apt install python3-picamera2.*--system-site-packages"):
        run_live(tiny_models["int8"], _opts(picamera=True), log=quiet)


def test_picamera_frames_and_release(tiny_models, monkeypatch):
    state = _fake_picamera2(monkeypatch)
    summary = run_live(tiny_models["int8"], _opts(picamera=True, width=320, height=240, max_frames=4), log=quiet)
    assert summary.frames == 4 and summary.scored == 0 and summary.accuracy is None
    assert state["config"]["main"] == {"size": (320, 240), "format": "RGB888"}
    assert state["config"]["controls"] == {"FrameRate": float(config.CAMERA_FPS)}
    assert state["closed"]


def test_camera_that_stops_ends_with_summary(tiny_models, monkeypatch):
    state = _fake_picamera2(monkeypatch, frames_before_failing=3)
    summary = run_live(tiny_models["int8"], _opts(picamera=True, max_frames=50, capture_thread=False), log=quiet)
    assert summary.frames == 3 and "stopped delivering frames" in summary.reason and state["closed"]
    assert summary.dropped is None  # no capture thread, nothing dropped
    # Through the capture thread: every frame the camera delivered is either classified or dropped for a newer one.
    state = _fake_picamera2(monkeypatch, frames_before_failing=3)
    summary = run_live(tiny_models["int8"], _opts(picamera=True, max_frames=50), log=quiet)
    assert 1 <= summary.frames <= 3 and summary.frames + summary.dropped == 3
    assert "stopped delivering frames" in summary.reason and state["closed"]


def test_camera_with_no_frames_or_no_start_is_an_error(tiny_models, monkeypatch):
    _fake_picamera2(monkeypatch, frames_before_failing=0)
    with pytest.raises(EdgeSignsError, match="delivered no frames"):
        run_live(tiny_models["int8"], _opts(picamera=True), log=quiet)
    state = _fake_picamera2(monkeypatch, start_error=IndexError("list index out of range"))
    with pytest.raises(EdgeSignsError, match="rpicam-hello --list-cameras"):
        run_live(tiny_models["int8"], _opts(picamera=True), log=quiet)
    assert state["closed"]  # a camera that failed to start is still released


