"""Sources read in a background thread, so the loop's own thread only invokes the model.

Two kinds, for two kinds of source:

- ``LatestFrame``: a camera or stream runs on without us. The thread grabs every frame
  and hands the loop the newest (``PrepareSchedule`` picks which to decode); the
  others are dropped and counted.
- ``ReadAhead``: a video file waits for us, and every one of its frames is scored. The
  thread decodes (and prepares) the next few frames while the loop invokes the model,
  into a bounded queue that never drops a frame.

Both run ``prepare`` (the live loop passes preprocess.frame_to_rgb with its ROI: the
one preprocessing definition, not a copy) in the thread, and leave its result for the
frame ``read()`` returned last in ``prepared``.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Optional

import numpy as np

from edge_signs import config
from edge_signs.edge.frame_source import EndOfStream, Frame, FrameSource, failure_message
from edge_signs.errors import EdgeSignsError

Prepare = Callable[[np.ndarray], np.ndarray]


class RunningTime:
    """A duration's running mean and mean deviation (as TCP estimates round trips): ``mean`` plus or minus ``2 * dev`` covers most."""

    GAIN = 0.2  # weight of the newest measurement

    def __init__(self):
        self.mean: Optional[float] = None
        self.dev = 0.0

    def add(self, seconds: float) -> None:
        if self.mean is None:
            self.mean = seconds
            return
        self.dev += self.GAIN * (abs(seconds - self.mean) - self.dev)
        self.mean += self.GAIN * (seconds - self.mean)


class PrepareSchedule:
    """Which camera frames the capture thread decodes and prepares for the model.

    A camera faster than the model delivers frames the loop never takes. Preparing
    every one (decode, crop, resize) spends a core the interpreter wants; preparing
    only the first after each take hands the loop frames up to a model period old.
    This prepares the newest frame that can still be ready when the loop next asks:
    a frame is skipped (grabbed, never decoded) when a later one will arrive in time
    to take its place. The loop's period, the camera's and the preparation's are
    running estimates of what was measured, and the schedule plans for an early
    take and a slow preparation (mean -/+ twice the deviation), so a jittery loop
    rarely finds nothing ready. Every frame is prepared while anything is unknown,
    while the loop waits or has taken the last prepared frame, and whenever a camera
    period plus a preparation is as long as the loop's period (preparing is then the
    bottleneck: a skipped frame would leave the loop waiting).
    """

    def __init__(self):
        self.loop_period = RunningTime()  # between the loop's takes
        self.camera_period = RunningTime()  # between grabs
        self.prepare = RunningTime()  # to retrieve and prepare one frame
        self.last_take: Optional[float] = None
        self.last_grab: Optional[float] = None

    def took(self, now: float) -> None:
        """The loop took a frame at ``now`` (perf_counter seconds)."""
        if self.last_take is not None:
            self.loop_period.add(now - self.last_take)
        self.last_take = now

    def prepared(self, seconds: float) -> None:
        """A frame took ``seconds`` to retrieve and prepare."""
        self.prepare.add(seconds)

    def wants(self, now: float, *, ready: bool, waiting: bool) -> bool:
        """Whether to prepare the frame grabbed at ``now``; ``ready``: an untaken prepared frame waits for the loop."""
        if self.last_grab is not None:
            self.camera_period.add(now - self.last_grab)
        self.last_grab = now
        loop, camera, prep = self.loop_period, self.camera_period, self.prepare
        if waiting or not ready or None in (loop.mean, camera.mean, prep.mean):
            return True  # the loop took the last one: keep one ready, so it never waits for the camera
        # A frame is ready. Replace it only with the newest one that can be ready for the loop's next take.
        prepare = prep.mean + 2 * prep.dev  # a slow preparation
        period = max(loop.mean - 2 * loop.dev, loop.mean / 2)  # a quick loop
        if camera.mean + prepare >= period:
            return True  # the first frame after a take could not be ready for the next one: keep preparing
        take = self.last_take + period  # when the loop may ask next
        if now + prepare > take:
            return False  # too late for it: the loop takes the ready one, and the first frame after that is prepared
        return now + camera.mean + prepare > take  # the next frame would be too late: this one is the newest that makes it


class _Ended(Exception):
    """``prepare`` refused a frame after good ones: the stream ends, and ``end_reason`` says why."""


class ThreadedSource(FrameSource):
    """What LatestFrame and ReadAhead share: the wrapped source's description, ``prepare`` in the thread, the thread.

    A subclass sets up its state, then calls ``_start``; its ``_read_all`` runs in the
    thread, and ``_finish`` after it, however it ended (``_error`` holds what it raised).
    """

    thread_name = "reader"

    def __init__(self, inner: FrameSource, *, prepare: Optional[Prepare], keep_frames: bool):
        if not keep_frames and prepare is None:
            raise ValueError(f"{type(self).__name__}(keep_frames=False) needs prepare: the loop would get nothing")
        self.inner = inner
        self.name, self.fps, self.has_truth, self.live = inner.name, inner.fps, inner.has_truth, inner.live
        self.independent_frames = inner.independent_frames
        self.end_reason, self.no_frames_message = inner.end_reason, inner.no_frames_message
        self.prepare, self.keep_frames = prepare, keep_frames
        self._error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{self.thread_name}: {inner.name}", daemon=True)

    @property
    def prepares(self) -> bool:
        return self.prepare is not None

    def _start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read_all()
        except _Ended:
            pass
        except BaseException as exc:  # handed to the loop's thread by read()
            self._error = exc
        finally:
            self._finish()

    def _read_all(self) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _prepared(self, frame: np.ndarray, first: bool) -> Optional[np.ndarray]:
        """``prepare(frame)``; a frame it refuses (wrong dtype, empty) is said, not a traceback: an error before any frame, else the end."""
        try:
            return self.prepare(frame) if self.prepare is not None else None
        except Exception as exc:  # noqa: BLE001 -- see above
            if first:
                raise EdgeSignsError(failure_message(self.inner.name, exc)) from None
            self.end_reason = failure_message(self.inner.name, exc)
            raise _Ended from None

    def display_frame(self) -> Optional[np.ndarray]:
        return self.inner.display_frame()


class LatestFrame(ThreadedSource):
    """A live source read in a background thread that hands the loop the newest frame.

    Inference never waits for the camera's next exposure when a frame is already
    there, and never works through a queue of stale ones. The thread grabs every
    frame the camera delivers (the device's queue never fills) and, with ``prepare``,
    retrieves and prepares only the ones ``PrepareSchedule`` picks: the newest that
    can be ready when the loop asks. A frame the loop never takes (skipped, or
    replaced by a newer one) is counted in ``dropped``. The capture thread owns the
    source's retries; the loop sees "no frame now" (None) only when nothing new
    arrives within ``wait_s``, and the source's own end or error after it.

    ``prepare`` (the live loop passes preprocess.frame_to_rgb with its ROI: the one
    preprocessing definition, not a copy) runs in the capture thread, so the loop's
    thread only invokes the model; its result for the frame ``read()`` returned last
    is ``prepared``. With ``keep_frames=False`` (only with ``prepare``: nobody looks
    at the frames) the full frame is not even copied, and ``read()`` returns
    ``(None, truth)``. Without ``prepare`` every frame is retrieved and copied. A
    source that raises, or a ``prepare`` that does, after frames came ends the
    stream with ``ended`` saying why; before any frame it is a one-line
    ``EdgeSignsError``.
    """

    thread_name = "capture"

    def __init__(self, inner: FrameSource, wait_s: float = config.FRAME_WAIT_S, *,
                 prepare: Optional[Prepare] = None, keep_frames: bool = True):
        super().__init__(inner, prepare=prepare, keep_frames=keep_frames)
        self.live = True  # the loop's "no frame now" is retried after a short sleep
        self.wait_s = wait_s
        self.prepared: Optional[np.ndarray] = None  # prepare(frame) of the frame read() returned last
        self.captured = 0  # frames the camera delivered
        self.retrieved = 0  # of those, decoded (and prepared): the rest were skipped
        self.taken = 0  # of those, returned by read()
        self.schedule = PrepareSchedule() if prepare is not None else None
        self._cond = threading.Condition()
        self._latest: Optional[tuple] = None  # (frame or None, truth, prepared or None)
        self._ready = False  # _latest holds a frame the loop has not taken
        self._waiting = False  # the loop is blocked in read()
        self._t_wanted = 0.0  # when the frame being retrieved was grabbed
        self._done = False
        self._start()

    @property
    def dropped(self) -> int:
        """Frames the camera delivered that the loop never took (skipped, or replaced by a newer one)."""
        return self.captured - self.taken - self._ready

    def _wanted(self) -> bool:
        """Asked by the source after each grab (capture thread): retrieve and prepare this frame?"""
        if self.schedule is None:
            return True
        self._t_wanted = now = time.perf_counter()
        return self.schedule.wants(now, ready=self._ready, waiting=self._waiting)

    def _read_all(self) -> None:
        for item in self.inner.frames(wanted=self._wanted):
            if self._stop.is_set():
                return  # closing: no frame after close()
            if item is None:  # grabbed, skipped: a newer frame will reach the loop in time
                with self._cond:
                    self.captured += 1
                continue
            frame, truth = item
            prepared = self._prepared(frame, first=self.captured == 0)
            # A copy: sources read into one reused buffer, which the loop may still be using.
            item = (frame.copy() if self.keep_frames else None, truth, prepared)
            with self._cond:
                self._latest = item
                self._ready = True
                self.captured += 1
                self.retrieved += 1
                self._cond.notify()
            if self.schedule is not None:
                self.schedule.prepared(time.perf_counter() - self._t_wanted)
        self.end_reason = self.inner.ended or self.end_reason

    def _finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify()

    def read(self) -> Optional[Frame]:
        with self._cond:
            self._waiting = True
            self._cond.wait_for(lambda: self._ready or self._done, timeout=self.wait_s)
            self._waiting = False
            if self._ready and not self._stop.is_set():
                self._ready = False
                self.taken += 1
                if self.schedule is not None:
                    self.schedule.took(time.perf_counter())
                frame, truth, self.prepared = self._latest
                return frame, truth
            if not self._done and not self._stop.is_set():
                return None  # no frame now
        if self._error is not None:
            raise self._error
        raise EndOfStream

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)  # a read blocked in the driver ends when the device is released
        self.inner.close()
        self._thread.join(timeout=2.0)


_END = object()  # the read-ahead thread's last item: the file ended, or it failed (``_error``)


class ReadAhead(ThreadedSource):
    """A video file decoded (and prepared) in a background thread, ahead of the loop: every frame, in order.

    The thread puts up to ``ahead`` frames in a queue and waits when it is full, so
    nothing is dropped and memory stays bounded; the loop's ``read()`` waits only
    when the decoder is behind. Full frames are copied (the file's decoder reuses
    one buffer) into buffers the loop hands back when it asks for the next frame;
    with ``keep_frames=False`` (only with ``prepare``: nobody looks at the frames)
    only the prepared input travels and ``read()`` returns ``(None, truth)``. The
    file's end ends the stream with its reason; a decoder or a ``prepare`` that
    raises after frames came ends it with ``ended`` saying why, and before any
    frame it is a one-line ``EdgeSignsError``.
    """

    thread_name = "read-ahead"

    def __init__(self, inner: FrameSource, ahead: int = config.READ_AHEAD_FRAMES, *,
                 prepare: Optional[Prepare] = None, keep_frames: bool = True):
        super().__init__(inner, prepare=prepare, keep_frames=keep_frames)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self._free: queue.SimpleQueue = queue.SimpleQueue()  # buffers the loop is done with
        self._held: Optional[np.ndarray] = None  # the buffer of the frame the loop has now
        self._finished = False
        self._start()

    def _copy(self, frame: np.ndarray) -> np.ndarray:
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            return frame.copy()
        if buf.shape != frame.shape or buf.dtype != frame.dtype:
            return frame.copy()  # a file whose frame size changed: the old buffer is let go
        np.copyto(buf, frame)
        return buf

    def _put(self, item) -> bool:
        """Queue ``item``, waiting for room; False once the source is closing."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read_all(self) -> None:
        delivered = 0
        for frame, truth in self.inner.frames():
            prepared = self._prepared(frame, first=delivered == 0)
            if not self._put((self._copy(frame) if self.keep_frames else None, truth, prepared)):
                return
            delivered += 1
        self.end_reason = self.inner.ended or self.end_reason

    def _finish(self) -> None:
        self._put(_END)

    def read(self) -> Optional[Frame]:
        if self._held is not None:
            self._free.put(self._held)  # the loop is done with the frame it had
            self._held = None
        while not self._finished and not self._stop.is_set():
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                self._finished = True
                break
            frame, truth, self.prepared = item
            self._held = frame
            return frame, truth
        if self._error is not None:
            raise self._error
        raise EndOfStream

    def unscored(self) -> Optional[str]:
        return self.inner.unscored()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)  # the decoder is released only once the thread has let go of it
        self.inner.close()
