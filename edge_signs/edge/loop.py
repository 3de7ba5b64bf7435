"""One frame loop for every command: source -> optional stage (the classifier) -> outputs.

    FrameLoop.run: each output's begin, then for every frame of the source
        stage(frame)            live's classifier and smoothing (predict.py); collect has none
        output.on_frame(frame)  each output in order: files, window, events, browser, crop saver, ...
    until the source ends, --max-frames, an output asks to stop (q, a failed write,
    --count saved), Ctrl-C or SIGTERM; then every output's close, each on its own.

An output is any ``FrameOutput``: a new one plugs in by being in the list. The loop
keeps the time of each frame (the source's clock, ``events.FrameClock``), the frame
rate people see, and the per-frame work outside the stage (rolling medians).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from edge_signs import config
from edge_signs.edge.events import FrameClock
from edge_signs.edge.frame_source import FrameSource
from edge_signs.edge.results import FrameResult
from edge_signs.log import Log, log_stderr

INTERRUPTED = "interrupted (Ctrl-C)"


class StopRequest:
    """Ctrl-C or SIGTERM (systemd stop, docker stop) asks the loop to end after the frame in hand.

    The signal only sets a flag: the loop checks it between frames, so the frame being
    processed is classified and written everywhere (recording, JSON lines, summary) or
    not at all. A second signal while the first waits raises KeyboardInterrupt, for a
    loop stuck in a camera driver.
    """

    def __init__(self):
        self.reason: Optional[str] = None

    def _handler(self, signum, frame):
        if self.reason is not None:
            raise KeyboardInterrupt
        self.reason = INTERRUPTED if signum == signal.SIGINT else "terminated (SIGTERM)"


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers can only be installed from the main thread
        return
    previous = {sig: signal.signal(sig, stop._handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            # None: a handler installed outside Python, which cannot be put back; the default then.
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


class RollingStats:
    """The last ``size`` values of a per-frame timing, for medians with bounded memory."""

    def __init__(self, size: int = config.STATS_WINDOW):
        self._buf = np.zeros(size, np.float64)
        self._n = 0

    def add(self, value: float) -> None:
        self._buf[self._n % len(self._buf)] = value
        self._n += 1

    def median(self) -> float:
        n = min(self._n, len(self._buf))
        return float(np.median(self._buf[:n])) if n else float("nan")


class LoopFrame:
    """The frame in hand, as the stage and the outputs see it. The loop reuses one instance: copy what you keep."""

    def __init__(self, source: FrameSource):
        self.source = source
        self.index = -1  # 0-based, this run's count
        self.frame: Optional[np.ndarray] = None  # the source's frame; None when a capture thread kept none (nobody looks)
        self.truth: Optional[int] = None  # the true class index, when the source knows it
        self.time = 0.0  # seconds on the source's clock: what --hold and collect's --interval are measured in
        self.fps = 0.0  # the loop's smoothed frame rate, for people
        self.result: Optional[FrameResult] = None  # the stage's outcome (live), None without a stage

    def shown(self) -> Optional[np.ndarray]:
        """The picture for people: the source's larger one where it has one (the Pi camera's main stream), else the frame."""
        display = self.source.display_frame()
        return self.frame if display is None else display


class FrameOutput:
    """One destination of the loop's frames. Every method returns at once; slow work belongs in the output's own thread."""

    name = "output"

    def begin(self, stop: StopRequest) -> Optional[str]:
        """Before the first frame (collect's countdown); a reason ends the run before any frame."""
        return None

    def on_frame(self, frame: LoopFrame) -> Optional[str]:
        """One frame; a reason ends the loop after this frame (every output still gets it)."""
        return None

    def close(self, completed: bool) -> None:
        """The run ended (``completed``: the loop ran to its end, so a file may be published)."""


@dataclass
class LoopRun:
    """How the loop went."""

    frames: int
    reason: str  # why it ended
    seconds: float  # from the first frame asked for to the end
    startup_s: float  # from ``t_start`` to the first frame through the stage
    median_overhead_ms: float  # per frame, all but the stage's own time (capture, preprocess, outputs)


Stage = Callable[[LoopFrame], float]  # fills frame.result; returns the ms it spent in invoke


class FrameLoop:
    """The loop itself: ``run`` once. ``clock`` replaces the source's time (tests); ``status`` is logged every ``status_interval`` s."""

    def __init__(self, source: FrameSource, outputs: Sequence[FrameOutput], *, stage: Optional[Stage] = None,
                 max_frames: Optional[int] = None, clock: Optional[Callable[[], float]] = None,
                 status: Optional[Callable[[LoopFrame], str]] = None, status_interval: float = 0.0, log: Log = log_stderr):
        self.source, self.outputs, self.stage = source, list(outputs), stage
        self.max_frames, self.log = max_frames, log
        self.status, self.status_interval = status, status_interval
        source_clock = FrameClock(source.live, source.fps)
        self._time = (lambda index: clock()) if clock is not None else source_clock
        self.frame = LoopFrame(source)
        self.overhead = RollingStats()
        self.startup = float("nan")  # seconds from t_start to the first frame through the stage

    def run(self, t_start: Optional[float] = None) -> LoopRun:
        """Frames until something ends the loop (the module's docstring); every output closed, whatever happened."""
        t_start = time.perf_counter() if t_start is None else t_start
        completed = False
        with stop_on_signals() as stop:
            try:
                run = self._run(stop, t_start)
                completed = True
            finally:
                self._close(completed)
        return run

    def _run(self, stop: StopRequest, t_start: float) -> LoopRun:
        t_loop = time.perf_counter()
        try:
            reason = next((r for r in (o.begin(stop) for o in self.outputs) if r), None)
            t_loop = time.perf_counter()  # a countdown is not loop time
            if reason is None:
                reason = self._frames(stop, t_start)
        except KeyboardInterrupt:  # a second Ctrl-C, or no signal handler (not the main thread)
            reason = INTERRUPTED
        return LoopRun(self.frame.index + 1, reason, time.perf_counter() - t_loop, self.startup, self.overhead.median())

    def _frames(self, stop: StopRequest, t_start: float) -> str:
        f, period_ms = self.frame, 0.0
        t_status = time.perf_counter()
        frames = iter(self.source)  # the source owns its retries (frame_source.FrameSource)
        while True:
            if stop.reason is not None:
                return stop.reason
            if self.max_frames is not None and f.index + 1 >= self.max_frames:
                return f"--max-frames {self.max_frames} reached"
            t0 = time.perf_counter()
            item = next(frames, None)
            if item is None:
                return stop.reason or self.source.ended
            f.index += 1
            f.frame, f.truth = item
            f.time = self._time(f.index)
            stage_ms = self.stage(f) if self.stage is not None else 0.0
            if f.index == 0:
                self.startup = time.perf_counter() - t_start
            reasons = [o.on_frame(f) for o in self.outputs]
            t1 = time.perf_counter()
            dt_ms = (t1 - t0) * 1e3
            self.overhead.add(dt_ms - stage_ms)
            # Smoothed frame period for the overlay's FPS: steady numbers, not per-frame jitter.
            period_ms = dt_ms if period_ms == 0 else 0.9 * period_ms + 0.1 * dt_ms
            f.fps = 1e3 / period_ms if period_ms > 0 else 0.0
            ended = next((r for r in reasons if r), None)
            if ended is not None:
                return ended
            if self.status is not None and self.status_interval > 0 and t1 - t_status >= self.status_interval:
                t_status = t1
                self.log(self.status(f))

    def _close(self, completed: bool) -> None:
        """Every output's close, each in its own try: one that fails never keeps another from finishing its file."""
        first: Optional[BaseException] = None
        for output in self.outputs:
            try:
                output.close(completed)
            except BaseException as exc:  # noqa: BLE001 -- raised once the others are closed
                first = first or exc
        if first is not None:
            raise first

