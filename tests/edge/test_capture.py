"""The threads that read sources: LatestFrame (cameras: the newest frame, PrepareSchedule picking which to decode)
and ReadAhead (video files: every frame, decoded ahead of the loop)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from edge_signs.edge import sources
from edge_signs.edge.live import LiveOptions, run_live
from edge_signs.edge.sources import EndOfStream, FrameSource, LatestFrame, ReadAhead, SourceOptions, open_source
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from edge_signs.preprocess import Roi, frame_to_rgb
from tests.edge.test_sources import _write_video


def _opts(**kw) -> LiveOptions:
    return LiveOptions(headless=True, status_interval=0, **kw)


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


