"""Frame sources: retries and endings (FrameSource), USB and Pi cameras with stand-ins for their
drivers, video files with a labels CSV, and the test set replayed as frames.

A source says "no frame now" by returning None from read() and "no frames left" by
raising EndOfStream; iterating it owns the retries, and ``ended`` says why it stopped.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import types

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge import devices, frame_source, sources
from edge_signs.edge.live import LiveOptions, run_live
from edge_signs.edge.runtime import Classifier
from edge_signs.edge.sources import (CameraSource, EndOfStream, FrameSource, LatestFrame, ReadAhead, SourceOptions, TestsetSource,
                                     VideoSource, open_source)
from edge_signs.preprocess import Roi, frame_to_rgb
from edge_signs.edge.truth import LabelRanges, read_label_ranges
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet

FRAME = np.full((48, 64, 3), 90, np.uint8)


class Scripted(FrameSource):
    """Plays a script: a frame ("f"), a failed read ("-"), then EndOfStream when the script runs out (if ``ends``)."""

    def __init__(self, script: str, *, live: bool = False, ends: bool = True):
        self.script = list(script)
        self.live = live
        self.ends = ends
        self.reads = 0
        self.delivered: list[int] = []  # the read numbers that gave a frame
        self.closed = 0
        self.name = "scripted"
        self.end_reason = "scripted source stopped"
        self.no_frames_message = "scripted source delivered no frames"

    def read(self):
        self.reads += 1
        if not self.script:
            if self.ends:
                raise EndOfStream
            return None
        if self.script.pop(0) != "f":
            return None
        self.delivered.append(self.reads)
        return FRAME, None

    def close(self):
        self.closed += 1


@pytest.fixture
def sleeps(monkeypatch) -> list:
    slept: list = []
    monkeypatch.setattr(frame_source.time, "sleep", slept.append)
    return slept


# -- FrameSource: retries and endings --------------------------------------------------------------


def test_failed_reads_are_retried_and_frames_come_through(sleeps):
    src = Scripted("f--f-f")
    frames = list(src)
    assert src.delivered == [1, 4, 6]  # every read after a failure was retried
    assert len(frames) == 3 and all(f is FRAME and t is None for f, t in frames)
    assert src.ended == "scripted source stopped" and sleeps == []  # a file-like source is not waited on


def test_a_live_source_sleeps_between_failed_reads(sleeps):
    frames = list(Scripted("f--f", live=True))
    assert len(frames) == 2 and sleeps == [config.READ_RETRY_SLEEP_S] * 2


def test_too_many_failed_reads_end_the_source(sleeps):
    src = Scripted("ff" + "-" * config.READ_RETRIES + "f", live=True)
    assert len(list(src)) == 3  # READ_RETRIES failures in a row are still retried
    src = Scripted("ff", live=True, ends=False)  # then nothing, ever
    assert len(list(src)) == 2
    assert src.ended == "scripted source stopped" and src.reads == 2 + config.READ_RETRIES + 1
    assert len(sleeps) == config.READ_RETRIES + config.READ_RETRIES


def test_a_source_that_never_delivers_is_an_error(sleeps):
    src = Scripted("", ends=False)
    with pytest.raises(EdgeSignsError, match="scripted source delivered no frames"):
        list(src)
    assert src.reads == config.READ_RETRIES + 1


def test_end_of_stream_is_an_ending_not_an_error():
    src = Scripted("")
    assert list(src) == [] and src.ended == "scripted source stopped" and src.reads == 1


def test_context_manager_closes():
    with Scripted("f") as src:
        pass
    assert src.closed == 1


def test_live_loop_runs_on_any_frame_source(tiny_models, monkeypatch, sleeps):
    """run_live takes whatever open_source gives: dropped frames cost nothing, a dead source ends the run."""
    import edge_signs.edge.live as live

    src = Scripted("f-f--f" + "f" * 5, live=True, ends=False)
    monkeypatch.setattr(live, "open_source", lambda options, labels, **kw: src)
    summary = run_live(tiny_models["int8"], LiveOptions(headless=True, status_interval=0), log=quiet)
    assert summary.frames == 8 and summary.reason == "scripted source stopped" and src.closed == 1
    assert summary.source == "scripted" and summary.scored == 0 and summary.accuracy is None
    src = Scripted("f" * 20, live=True)
    summary = run_live(tiny_models["int8"], LiveOptions(headless=True, status_interval=0, max_frames=7), log=quiet)
    assert summary.frames == 7 and summary.reason == "--max-frames 7 reached" and src.closed == 1


# -- the capture thread (LatestFrame) -------------------------------------------------------------


class Numbered(FrameSource):
    """A live camera stand-in: frame k is filled with k (uint16, so numbers go past 255), every ``period`` s.

    Reads into one reused buffer, as CameraSource does; ``fail_after`` raises OSError after that
    many frames (a camera unplugged mid-stream); ``count`` frames and then EndOfStream, or forever.
    """

    live = True

    def __init__(self, count: int | None = None, period: float = 0.0, fail_after: int | None = None, shape=(6, 8)):
        self.name = "numbered camera"
        self.end_reason = "numbered camera ran out"
        self.count, self.period, self.fail_after = count, period, fail_after
        self.buf = np.zeros(shape, np.uint16)
        self.n = 0
        self.closed = threading.Event()

    def read(self):
        if self.closed.is_set():
            raise EndOfStream
        if self.fail_after is not None and self.n >= self.fail_after:
            raise OSError(19, "No such device")
        if self.count is not None and self.n >= self.count:
            raise EndOfStream
        if self.period:
            time.sleep(self.period)
        self.buf.fill(self.n)
        self.n += 1
        return self.buf, self.n - 1

    def close(self):
        self.closed.set()


def test_capture_thread_newest_frame_wins_and_counts_drops():
    """A camera faster than the loop: the loop never sees an older frame after a newer one, and every frame is seen or dropped."""
    cam = Numbered(count=400)
    src = LatestFrame(cam)
    seen = []
    for frame, truth in src:
        assert (frame == truth).all()  # a frame and its truth travel together, and the copy was not overwritten
        seen.append(truth)
        time.sleep(0.002)  # a slow model
    assert src.ended == "numbered camera ran out"
    assert seen == sorted(set(seen))  # strictly newer each time
    assert seen[-1] == 399  # the camera's last frame is the one the loop ends on
    assert src.captured == 400 and src.dropped == 400 - len(seen) and src.dropped > 0
    src.close()


def test_capture_thread_prepares_each_frame_in_the_thread():
    """prepare runs in the capture thread; ``prepared`` belongs to the frame read() returned; keep_frames=False copies nothing."""
    threads = set()

    def prepare(frame):
        threads.add(threading.current_thread().name)
        return frame.astype(np.int64) + 1000

    src = LatestFrame(Numbered(count=50), prepare=prepare)
    for frame, truth in src:
        assert (src.prepared == truth + 1000).all() and (frame == truth).all()
        time.sleep(0.001)
    assert threads == {"capture: numbered camera"}
    src = LatestFrame(Numbered(count=50), prepare=prepare, keep_frames=False)
    items = list(src)
    assert items and all(frame is None for frame, _ in items)
    assert (src.prepared == items[-1][1] + 1000).all()
    assert src.captured == 50 and src.taken == len(items) and src.retrieved >= len(items)
    with pytest.raises(ValueError, match="needs prepare"):
        LatestFrame(Numbered(count=1), keep_frames=False)


def simulate_schedule(loop_ms: float, camera_ms: float, prepare_ms: float, seconds: float = 2.0, jitter: float = 0.0) -> dict:
    """A camera, the capture thread and the loop on one clock, PrepareSchedule deciding: no threads, no sleeps.

    The camera delivers a frame every ``camera_ms``; the capture thread grabs it (the newest one when
    it was busy: older ones are the device's loss), asks the schedule, and preparing takes
    ``prepare_ms`` (the thread grabs nothing meanwhile; the frame prepared before stays ready for
    the loop until the new one is done); the loop takes the ready frame every ``loop_ms``, or waits
    for one. With ``jitter`` each loop period and each preparation is off by up to that fraction.
    """
    sched = sources.PrepareSchedule()
    rng = np.random.default_rng(0)

    def draw(ms: float) -> float:
        return ms / 1e3 * (1 + rng.uniform(-jitter, jitter))

    cam = camera_ms / 1e3
    slot = None  # arrival time of the prepared frame the loop has not taken
    busy = None  # (arrival, done) of the frame being prepared
    free = 0.0  # when the capture thread can grab again
    k = 0  # the camera's next frame arrives at k * cam
    take = draw(loop_ms)
    taken, prepared, lags, waits = 0, 0, [], 0.0

    def grab_next(waiting: bool) -> bool:
        nonlocal k, busy, free, prepared
        k = max(k, int(free / cam))  # frames that came while the thread was busy: only the newest is there
        grab = max(k * cam, free)
        if sched.wants(grab, ready=slot is not None, waiting=waiting):
            seconds_ = draw(prepare_ms)
            busy, free, prepared = (k * cam, grab + seconds_), grab + seconds_, prepared + 1
            sched.prepared(seconds_)
        else:
            free = grab
        k += 1
        return busy is not None

    while take < seconds:
        if busy is not None and busy[1] <= min(take, max(k * cam, free)):
            slot, busy = busy[0], None  # published
        if busy is None and max(k * cam, free) < take:
            grab_next(waiting=False)  # the capture thread acts before the loop's take
            continue
        if busy is not None and busy[1] <= take:
            slot, busy = busy[0], None
        if slot is None:  # nothing ready: the loop waits for the frame in preparation, or the next one and its preparation
            while busy is None:
                grab_next(waiting=True)
            waits += busy[1] - take
            take, slot, busy = busy[1], busy[0], None
        lags.append(take - slot)
        taken += 1
        sched.took(take)
        slot = None
        take += draw(loop_ms)
    return {"taken": taken, "prepared": prepared, "frames": k, "lag_ms": 1e3 * float(np.mean(lags)), "wait_ms": 1e3 * waits}


CADENCES = [(10, 2, 1), (66, 33, 6), (1.9, 0.97, 0.9), (60, 16.7, 4), (50, 33, 5)]  # loop, camera, prepare (ms)


@pytest.mark.parametrize("loop_ms, camera_ms, prepare_ms", CADENCES)
def test_prepare_schedule_prepares_few_fresh_frames(loop_ms, camera_ms, prepare_ms):
    """A camera faster than the model: at most two frames prepared per frame the loop takes, the one taken among the newest."""
    r = simulate_schedule(loop_ms, camera_ms, prepare_ms)
    assert r["frames"] > 1.2 * r["taken"]  # the camera outruns the loop
    assert r["prepared"] <= 2.2 * r["taken"] + 3  # every frame would be frames / taken
    # The frame the loop gets arrived at most a camera period plus a preparation before the take;
    # "the first frame after each take" alone would make it up to a loop period old.
    assert r["lag_ms"] <= camera_ms + prepare_ms + 1e-6
    assert r["wait_ms"] <= 0.01 * r["taken"] * loop_ms  # the loop (almost) never waits for a frame


@pytest.mark.parametrize("loop_ms, camera_ms, prepare_ms", CADENCES)
def test_prepare_schedule_with_jitter_never_starves_the_loop(loop_ms, camera_ms, prepare_ms):
    """Loop periods and preparations off by up to 40 %: still few frames prepared, and the loop waits under 3 % of its time."""
    r = simulate_schedule(loop_ms, camera_ms, prepare_ms, jitter=0.4)
    assert r["prepared"] <= 2.2 * r["taken"] + 3
    assert r["wait_ms"] <= 0.03 * r["taken"] * loop_ms
    assert r["lag_ms"] <= loop_ms  # never a loop period behind, on average


def test_prepare_schedule_keeps_preparing_when_preparing_is_the_bottleneck():
    """A preparation nearly as long as the loop's period (MJPG decoding on a busy CPU): the loop never waits, and gets a recent frame."""
    for cadence in [(3.5, 1.7, 2.5), (2.4, 0.96, 1.5)]:
        r = simulate_schedule(*cadence)
        assert r["wait_ms"] == 0.0
        assert r["lag_ms"] <= cadence[1] + 2 * cadence[2]


def test_prepare_schedule_prepares_every_frame_when_it_must():
    """Unknown rates, a waiting loop, a camera slower than the loop, nothing ready for a due take: prepare."""
    sched = sources.PrepareSchedule()
    sched.took(0.000)
    for ms in range(11):  # a 1 ms camera; the loop's period is not known yet
        assert sched.wants(ms / 1e3, ready=False, waiting=False)
    sched.took(0.010)  # the loop takes every 10 ms
    sched.prepared(0.001)
    assert not sched.wants(0.012, ready=True, waiting=False)  # 1 ms camera: frames up to 0.017 can still make the 0.020 take
    assert sched.wants(0.013, ready=True, waiting=True)  # the loop is waiting: always
    assert sched.wants(0.0135, ready=False, waiting=False)  # the loop took the last one: keep one ready
    assert sched.wants(0.0175, ready=True, waiting=False)  # the newest frame that can still be ready at 0.020
    assert not sched.wants(0.0195, ready=True, waiting=False)  # too late for the 0.020 take: the loop takes the ready one
    r = simulate_schedule(loop_ms=10, camera_ms=33, prepare_ms=1)  # a model faster than the camera: every frame is used
    assert r["prepared"] == r["frames"]


def test_capture_thread_skips_frames_the_loop_would_not_take():
    """A paced camera and a slower loop: far fewer frames retrieved than grabbed, the loop gets recent ones, in order."""
    cam = Numbered(period=0.001)  # a 1 kHz camera
    prepared = []
    src = LatestFrame(cam, prepare=lambda f: prepared.append(int(f.flat[0])) or f)
    seen, lags = [], []
    for _, truth in src:
        lags.append(cam.n - 1 - truth)  # frames the camera delivered after this one
        seen.append(truth)
        if len(seen) == 60:
            break
        time.sleep(0.008)  # a slow model
    src.close()
    assert seen == sorted(set(seen))
    # How many frames a busy machine lets the schedule skip varies; that it skips most of them does not. Retrieving
    # every frame would make retrieved == captured, and prepared (what the thread decoded) says the same from outside.
    assert src.captured > 3 * src.taken and src.retrieved <= src.captured // 2 and len(prepared) == src.retrieved
    assert src.dropped >= src.captured - src.retrieved > 0  # every frame grabbed and never decoded counts as dropped
    assert src.captured - src.dropped - len(seen) in (0, 1)  # each frame was taken, dropped, or is the one still waiting
    assert float(np.median(lags)) <= 4  # the first frame after each take would be about 8 behind


def test_capture_thread_prepares_exactly_what_predict_frame_does():
    """The live loop's prepare is preprocess.frame_to_rgb itself: the capture thread's input equals predict_frame's."""
    frame = np.random.default_rng(1).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    roi = Roi(0.7, 0.4, 0.6)

    class Still(FrameSource):
        live = True
        name = "still camera"

        def read(self):
            return frame, None

    src = LatestFrame(Still(), prepare=lambda f: frame_to_rgb(f, roi))
    first = next(iter(src))
    np.testing.assert_array_equal(src.prepared, frame_to_rgb(frame, roi))
    np.testing.assert_array_equal(first[0], frame)
    src.close()


def test_capture_thread_stops_cleanly():
    """close() ends the thread promptly and closes the camera; no frame comes after it."""
    cam = Numbered(period=0.001)  # never ends by itself
    src = LatestFrame(cam)
    it = iter(src)
    assert [next(it)[1] >= 0 for _ in range(5)] == [True] * 5
    t0 = time.perf_counter()
    src.close()
    assert time.perf_counter() - t0 < 1.0
    assert "capture: numbered camera" not in {t.name for t in threading.enumerate()} and cam.closed.is_set()
    assert next(it, None) is None  # nothing after close, though frames were coming
    with pytest.raises(EndOfStream):
        src.read()
    src.close()  # twice is fine


def test_capture_thread_camera_that_dies_mid_stream():
    """A driver that raises after some frames ends the stream with the reason; before any frame it is a one-line error."""
    src = LatestFrame(Numbered(fail_after=3, period=0.001))
    frames = list(src)
    assert 1 <= len(frames) <= 3 and src.captured == 3
    assert src.ended == "numbered camera failed (OSError: [Errno 19] No such device)"
    src.close()
    src = LatestFrame(Numbered(fail_after=0))
    with pytest.raises(EdgeSignsError, match=r"^numbered camera failed \(OSError: \[Errno 19\] No such device\)$"):
        list(src)
    src.close()
    # A frame the preprocessing refuses, after good ones: the same kind of ending, named.
    src = LatestFrame(Numbered(count=5), prepare=lambda f: frame_to_rgb(f))
    with pytest.raises(EdgeSignsError, match="numbered camera failed .*expected uint8 pixels"):
        list(src)
    src.close()


def test_a_source_that_raises_without_the_thread_ends_the_same_way():
    src = Numbered(fail_after=2)
    assert len(list(src)) == 2 and src.ended == "numbered camera failed (OSError: [Errno 19] No such device)"
    with pytest.raises(EdgeSignsError, match="numbered camera failed"):
        list(Numbered(fail_after=0))


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


# -- the SIGNS test set as frames -----------------------------------------------------------------------------


def test_testset_source_gives_bgr_frames_with_labels():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    src = TestsetSource(rgb, np.array([4, 0, 2]))
    frames = list(src)
    assert [t for _, t in frames] == [4, 0, 2] and src.ended == "end of test set"
    assert all(np.array_equal(f[..., ::-1], im) for (f, _), im in zip(frames, rgb))
    assert src.has_truth and src.independent_frames and not src.live
    looped = TestsetSource(rgb, np.array([4, 0, 2]), loop=True)
    it = iter(looped)
    assert [next(it)[1] for _ in range(7)] == [4, 0, 2, 4, 0, 2, 4]
    assert list(TestsetSource(rgb[:0], np.array([], int), loop=True)) == []  # an empty loop ends at once


# -- video files and their ground truth -------------------------------------------------------------------------


def _write_video(path, n: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()


def test_video_file_frames_truth_and_loop(tmp_path):
    video = tmp_path / "clip.avi"
    _write_video(video, 5)
    ranges = LabelRanges([(1, 2, 3)])
    src = VideoSource(str(video), ranges)
    frames = list(src)
    assert len(frames) == 5 and src.ended == "end of video" and not src.live and src.has_truth
    assert [t for _, t in frames] == [None, 3, 3, None, None]
    assert src.fps == pytest.approx(10.0)
    assert frames[4][0].mean() == pytest.approx(80, abs=3)  # in order
    src.close()
    looped = iter(VideoSource(str(video), ranges, loop=True))
    assert [next(looped)[1] for _ in range(8)] == [None, 3, 3, None, None, None, 3, 3]  # the CSV counts from 0 again


# -- video files decoded ahead of the loop (ReadAhead) ---------------------------------------------------------


class NumberedFile(Numbered):
    """A file stand-in: Numbered frames that wait for the reader (not live)."""

    live = False


def test_read_ahead_gives_every_frame_in_order_however_slow_the_loop():
    for pause in (0.0, 0.003):  # a loop faster and slower than decoding
        src = ReadAhead(NumberedFile(count=60), ahead=3)
        seen = []
        for frame, truth in src:
            assert (frame == truth).all()  # its own pixels: the file's decoder reuses one buffer
            seen.append(truth)
            time.sleep(pause)
        assert seen == list(range(60)) and src.ended == "numbered camera ran out" and src.dropped is None
        src.close()


def test_read_ahead_prepares_in_its_thread_and_can_keep_no_frames():
    threads = set()

    def prepare(frame):
        threads.add(threading.current_thread().name)
        return frame.astype(np.int64) + 1000

    src = ReadAhead(NumberedFile(count=20), prepare=prepare, keep_frames=False)
    items = []
    for frame, truth in src:
        assert frame is None and (src.prepared == truth + 1000).all()
        items.append(truth)
    assert items == list(range(20)) and src.prepares and threads == {"read-ahead: numbered camera"}
    src.close()
    with pytest.raises(ValueError, match="needs prepare"):
        ReadAhead(NumberedFile(count=1), keep_frames=False)


def test_read_ahead_a_file_that_fails_ends_cleanly_with_every_frame_before_it():
    src = ReadAhead(NumberedFile(fail_after=5))
    assert [t for _, t in src] == list(range(5))
    assert src.ended == "numbered camera failed (OSError: [Errno 19] No such device)"
    src.close()
    with pytest.raises(EdgeSignsError, match=r"^numbered camera failed \(OSError"):
        list(ReadAhead(NumberedFile(fail_after=0)))
    src = ReadAhead(NumberedFile(count=5), prepare=lambda f: frame_to_rgb(f))  # uint16 frames: the preprocessing refuses them
    with pytest.raises(EdgeSignsError, match="numbered camera failed .*expected uint8 pixels"):
        list(src)
    src.close()


def test_read_ahead_closes_promptly_mid_file():
    cam = NumberedFile()  # never ends by itself
    src = ReadAhead(cam, ahead=2)
    it = iter(src)
    assert [next(it)[1] for _ in range(5)] == [0, 1, 2, 3, 4]
    t0 = time.perf_counter()
    src.close()
    assert time.perf_counter() - t0 < 1.0 and cam.closed.is_set()
    assert "read-ahead: numbered camera" not in {t.name for t in threading.enumerate()}
    assert cam.n <= 5 + 2 + 2  # it read a bounded way ahead, never the whole file
    assert next(it, None) is None


def test_live_on_a_video_file_scores_the_same_with_and_without_reading_ahead(tiny_models, tmp_path):
    video, labels = tmp_path / "clip.avi", tmp_path / "clip.csv"
    _write_video(video, 12)
    labels.write_text("0,5,0\n6,11,1\n")
    runs = {}
    for thread in (True, False):
        out = tmp_path / f"frames-{thread}.jsonl"
        summary = run_live(tiny_models["int8"], _opts(video=str(video), labels_csv=labels, json_path=out, capture_thread=thread), log=quiet)
        assert summary.frames == 12 and summary.scored == 12 and summary.reason == "end of video"
        runs[thread] = [{k: v for k, v in json.loads(line).items() if k not in ("time", "inference_ms")} for line in out.read_text().splitlines()]
    assert runs[True] == runs[False]
    source = open_source(SourceOptions(video=str(video)), prepare=frame_to_rgb, keep_frames=False)
    try:
        assert isinstance(source, ReadAhead) and source.prepares and not source.live
    finally:
        source.close()


def test_video_errors_are_one_line(tmp_path):
    with pytest.raises(EdgeSignsError, match="video file not found"):
        VideoSource(str(tmp_path / "none.avi"))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(EdgeSignsError, match="OpenCV cannot open this video file"):
        VideoSource(str(junk))
    if not any(line.strip().startswith("GStreamer:") and "YES" in line for line in cv2.getBuildInformation().splitlines()):
        with pytest.raises(EdgeSignsError, match="GStreamer"):
            VideoSource("libcamerasrc ! videoconvert ! appsink")


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
    assert len(ranges) == 2
    assert [ranges.lookup(i) for i in (0, 2, 3, 9, 10, 12, 13)] == [0, 0, None, None, 5, 5, None]


def test_labels_by_name_or_index(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("0,0,b\n1,1,2\n")
    ranges = read_label_ranges(path, ["a", "b", "c"])
    assert [ranges.lookup(0), ranges.lookup(1)] == [1, 2]
    with pytest.raises(EdgeSignsError, match="labels CSV not found"):
        read_label_ranges(tmp_path / "none.csv", config.LABELS)
