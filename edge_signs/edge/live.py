"""The camera loop: frames in, smoothed hand-sign predictions out.

numpy, OpenCV and a LiteRT interpreter only -- never TensorFlow -- so it runs on
a Raspberry Pi. Every frame, whatever its source (USB webcam, Pi Camera Module,
video file or stream, or the SIGNS test set replayed as frames), goes through
``preprocess.frame_to_rgb`` and ``Classifier.predict_rgb`` (``predict_frame``): the
preprocessing the model was evaluated with, so a test-set replay here scores
exactly what ``evaluate`` scores. Cameras and streams run frame_to_rgb in their
capture thread (sources.LatestFrame), on the frames the model will take, so this
loop's thread only invokes the model; files and the test set are preprocessed here.

    source (sources.py) -> frame_to_rgb -> predict_rgb (raw) -> Smoother (mean of last N) -> threshold
                        -> overlay (display.py; only when shown, recorded or served) -> window / video / JSON lines
                                                                                          -> browser (serve.py, --serve)
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from edge_signs import config
from edge_signs.artifacts import check_output_dir, check_output_file, dumps, finite_or_none, write_json
from edge_signs.data import resolve_data
from edge_signs.edge.display import Overlay, Window, check_gui, choose_window, record_fourcc
from edge_signs.edge.events import EventHub, EventOptions, FrameClock, open_event_hub
from edge_signs.edge.outputs import OUTPUT_ERRORS, OutputError, RunOutputs
from edge_signs.preprocess import Roi, frame_to_rgb
from edge_signs.edge.runtime import Classifier, check_tflite_file, read_sidecar, sidecar_path
from edge_signs.edge.serve import LiveServer, check_token, parse_serve
from edge_signs.edge.sources import CameraSource, FrameSource, LatestFrame, PiCameraSource, TestsetSource, VideoSource
from edge_signs.edge.truth import read_label_ranges
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.plots import confusion_matrix_png, confusion_matrix_text

# -- options and results ------------------------------------------------------------------------


@dataclass
class LiveOptions:
    """Everything `edge-signs live` can be told. Name at most one source; none means ``--camera 0``."""

    camera: Optional[int] = None  # OpenCV camera index (USB webcam)
    picamera: bool = False  # Pi Camera Module through picamera2
    video: Optional[str] = None  # file, URL or GStreamer pipeline string
    testset: bool = False  # SIGNS test images as frames, with their labels
    width: int = config.CAMERA_WIDTH
    height: int = config.CAMERA_HEIGHT
    fps: float = config.CAMERA_FPS
    roi: Roi = field(default_factory=Roi)
    smoothing: int = config.SMOOTHING_FRAMES
    threshold: float = config.CONFIDENCE_THRESHOLD
    headless: bool = False  # no window (the default too where none can open, and with --serve)
    window: Optional[bool] = None  # True: --window, a window or a clear error; None: one where one can open
    record: Optional[Path] = None  # annotated video, .avi (MJPG) or .mp4 (mp4v)
    max_frames: Optional[int] = None
    json_path: Optional[Path] = None  # one JSON object per frame
    labels_csv: Optional[Path] = None  # --video ground truth: start_frame,end_frame,label
    threads: int = config.THREADS
    data: Optional[Path] = None  # SIGNS folder for --testset (default: as resolve_data)
    status_interval: float = config.STATUS_INTERVAL_S  # --headless status line period, seconds (0: none)
    loop: bool = False  # start --testset / a --video file again at its end (soak tests)
    report: Optional[Path] = None  # folder for live_summary.json and confusion_matrix.png
    snapshot_dir: Path = Path(".")  # where the window's 's' key saves PNGs
    capture_thread: bool = True  # read cameras and streams in a thread that keeps only the newest frame
    serve: Optional[str] = None  # [HOST:]PORT: the page, MJPEG stream and status JSON for a browser (serve.py)
    token: Optional[str] = None  # required by every --serve request (generated when serving beyond loopback)
    events: EventOptions = field(default_factory=EventOptions)  # --hold and where events go (events.py)

    def shows_frames(self) -> bool:
        """Whether anyone looks at the frames (a window, a recording or a browser): only then is an overlay drawn."""
        return not self.headless or self.record is not None or self.serve is not None

    def source_kind(self) -> str:
        """Which source is named; a one-line error when the options contradict each other."""
        named = [name for name, on in (("camera", self.camera is not None), ("picamera", self.picamera),
                                       ("video", self.video is not None), ("testset", self.testset)) if on]
        if len(named) > 1:
            raise EdgeSignsError(f"name one source, not {' and '.join('--' + n for n in named)}")
        kind = named[0] if named else "camera"
        if self.labels_csv is not None and kind != "video":
            raise EdgeSignsError("--labels scores a --video; --testset brings its own labels and cameras have none")
        if self.loop and kind not in ("testset", "video"):
            raise EdgeSignsError("--loop replays --testset or a --video file; a camera does not end")
        for name, value, low in (("--smoothing", self.smoothing, 1), ("--threads", self.threads, 1), ("--width", self.width, 1),
                                 ("--height", self.height, 1), ("--max-frames", 1 if self.max_frames is None else self.max_frames, 1)):
            if value < low:
                raise EdgeSignsError(f"{name} must be at least {low}, got {value}")
        if not 0.0 <= self.threshold <= 1.0:
            raise EdgeSignsError(f"--threshold is a probability in [0, 1], got {self.threshold}")
        if not self.fps > 0:
            raise EdgeSignsError(f"--fps must be positive, got {self.fps}")
        if self.record is not None:
            record_fourcc(self.record)
        if self.serve is not None:
            parse_serve(self.serve)
        if self.token is not None:
            if self.serve is None:
                raise EdgeSignsError("--token protects --serve; give --serve [HOST:]PORT too")
            check_token(self.token)
        return kind


@dataclass
class FrameResult:
    """One frame's outcome. The loop reuses a single instance: copy what you keep from ``on_frame``."""

    frame: int = 0  # 0-based index of the frame in this run
    label: Optional[str] = None  # smoothed label; None ("no sign") below the confidence threshold
    index: Optional[int] = None  # its class index
    smoothed_confidence: float = 0.0
    raw_label: str = ""  # this frame alone
    raw_index: int = 0
    confidence: float = 0.0  # of raw_label
    inference_ms: float = 0.0  # invoke only
    truth: Optional[int] = None  # true class index when the source knows it
    source_time: float = 0.0  # seconds, the source's clock (events.FrameClock): what --hold is measured in

    def json_line(self, labels: Sequence[str], with_truth: bool) -> str:
        # Strict JSON: a model that outputs NaN gets null, never a bare NaN token.
        return dumps(finite_or_none(self.as_dict(labels, with_truth)))

    def as_dict(self, labels: Sequence[str], with_truth: bool) -> dict:
        """This frame's JSON fields (a JSON line, or --serve's /status)."""
        obj = {
            "frame": self.frame,
            "time": round(time.time(), 3),  # wall clock: lets tools measure start-up from outside
            "label": self.label,
            "smoothed_confidence": round(self.smoothed_confidence, 4),
            "raw_label": self.raw_label,
            "confidence": round(self.confidence, 4),
            "inference_ms": round(self.inference_ms, 3),
        }
        if with_truth:
            obj["truth"] = None if self.truth is None else labels[self.truth]
        return obj


@dataclass
class LiveSummary:
    """How a run went. Accuracies count only frames whose truth is known (``scored``)."""

    frames: int
    reason: str  # why the loop ended
    source: str
    model: str  # Classifier.describe(): format, input, interpreter backend, threads
    labels: tuple[str, ...]
    seconds: float  # loop wall time
    fps: float
    median_inference_ms: float  # over the last config.STATS_WINDOW frames
    median_overhead_ms: float  # capture + preprocess + overlay + record + output, i.e. all but invoke
    startup_s: float  # run_live() called -> first prediction
    scored: int = 0
    accuracy: Optional[float] = None  # raw per-frame argmax
    smoothed_accuracy: Optional[float] = None  # a "no sign" frame counts as wrong
    no_sign: int = 0  # frames whose smoothed label was below the threshold
    confusion: Optional[np.ndarray] = None  # rows true, columns raw prediction
    warnings: list[str] = field(default_factory=list)  # e.g. labelled frames the video never reached
    dropped: Optional[int] = None  # camera frames the loop never took: skipped undecoded, or replaced by a newer one (capture thread)
    served: Optional[dict] = None  # --serve: LiveServer.stats() (URL, JPEGs encoded, viewers, refused, timed out)
    events: Optional[dict] = None  # events.EventHub.stats(): held signs, per sign, each output's counts
    event_lines: list[str] = field(default_factory=list)  # the same, as the summary's lines

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k, v in d.items():  # strict JSON has no NaN
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None
        d["labels"] = list(self.labels)
        d["confusion"] = None if self.confusion is None else self.confusion.tolist()
        return d

    def text(self) -> str:
        lines = [  # the model is said once, at the start (stderr's "model:" line)
            f"{self.frames} frames from {self.source} in {self.seconds:.1f} s ({self.fps:.1f} fps); ended: {self.reason}",
            f"inference {self.median_inference_ms:.2f} ms median; per-frame overhead {self.median_overhead_ms:.2f} ms median "
            f"(capture, preprocess, overlay, record); first prediction {self.startup_s:.2f} s after start",
        ]
        if self.dropped is not None:
            lines.append(f"camera frames the model never took: {self.dropped} (the camera outran it; each take is the newest frame that was ready)")
        if self.served is not None:
            s = self.served
            lines.append(f"served {s['url']}: {s['encoded']} JPEG frames to {s['viewer_connections']} viewer connection(s); "
                         f"{s['refused']} refused (too many), {s['timed_out']} dropped for not reading")
        lines += self.event_lines
        if self.scored:
            correct = int(round(self.accuracy * self.scored))
            lines.append(f"accuracy {self.accuracy:.4f} ({correct}/{self.scored} frames), smoothed {self.smoothed_accuracy:.4f} "
                         f"(no sign on {self.no_sign} of {self.frames} frames)")
            lines.append("confusion matrix, rows true, columns predicted (raw per-frame):")
            lines.append(confusion_matrix_text(self.confusion, self.labels).rstrip("\n"))
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"


def parse_roi(text: str) -> Roi:
    """'SIZE' or 'SIZE,CX,CY' (fractions) -> Roi, e.g. '0.6' or '0.6,0.5,0.4'."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 3):
        raise EdgeSignsError(f"--roi {text!r}: expected SIZE or SIZE,CX,CY as fractions, e.g. 0.6 or 0.6,0.5,0.4")
    size, cx, cy = (parts + [0.5, 0.5])[:3]
    if not 0 < size <= 1 or not 0 <= cx <= 1 or not 0 <= cy <= 1:
        raise EdgeSignsError(f"--roi {text!r}: SIZE must be in (0, 1] and CX, CY in [0, 1]")
    return Roi(size, cx, cy)



def open_source(options: LiveOptions, labels: Sequence[str], *, log: Log = log_stderr, model_input: bool = False) -> FrameSource:
    """The source the options name, opened: a one-line error when it cannot be.

    With ``model_input`` a capture thread (cameras, streams) also preprocesses the
    frames the model will take (``LatestFrame.prepared``: frame_to_rgb with
    ``options.roi``; sources.PrepareSchedule picks them), and copies full frames only when someone looks at them
    (``options.shows_frames()``; else it yields ``(None, truth)``): the live loop's
    thread then only invokes the model. Without it, frames come as they always did.
    """
    kind = options.source_kind()
    if kind == "testset":
        signs = resolve_data(options.data, log=log)
        return TestsetSource(signs.test.x, signs.test.y, loop=options.loop)

    def threaded(source: FrameSource) -> FrameSource:
        if not model_input:
            return LatestFrame(source)
        return LatestFrame(source, prepare=functools.partial(frame_to_rgb, roi=options.roi), keep_frames=options.shows_frames())

    if kind == "video":
        ranges = read_label_ranges(options.labels_csv, labels) if options.labels_csv is not None else None
        source = VideoSource(options.video, ranges, loop=options.loop)
        # A file is read frame by frame (every labelled frame scored); a stream runs on without us.
        return threaded(source) if source.live and options.capture_thread else source
    if kind == "picamera":
        source = PiCameraSource(options.width, options.height, options.fps, display=options.shows_frames())
    else:
        index = config.CAMERA_INDEX if options.camera is None else options.camera
        source = CameraSource(index, options.width, options.height, options.fps)
    return threaded(source) if options.capture_thread else source


# -- per-frame helpers -------------------------------------------------------------------------------

class Smoother:
    """Mean of the last N probability vectors, in preallocated arrays."""

    def __init__(self, frames: int, num_classes: int):
        self._buf = np.zeros((max(1, frames), num_classes), np.float32)
        self._mean = np.zeros(num_classes, np.float32)
        self._count = 0
        self._next = 0

    def reset(self) -> None:
        """Forget earlier frames: the next frame shows another scene."""
        self._count = 0
        self._next = 0

    def update(self, probs: np.ndarray) -> np.ndarray:
        """Add one frame's probabilities; the current mean (a view: valid until the next update)."""
        self._buf[self._next] = probs
        self._next = (self._next + 1) % len(self._buf)
        self._count = min(self._count + 1, len(self._buf))
        # Summing N rows afresh (not a running sum) so float error never accumulates over a day of frames.
        np.sum(self._buf[: self._count], axis=0, out=self._mean)
        self._mean /= self._count
        return self._mean


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
        self.reason = "interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)"


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


# -- the loop ------------------------------------------------------------------------------------------


def check_outputs(model_path: str | os.PathLike, options: LiveOptions) -> None:
    """Every output path writable and none of them an input of this run: before a camera opens."""
    model_path = Path(model_path)
    inputs = [model_path, sidecar_path(model_path), options.labels_csv]
    if options.video is not None and os.path.exists(options.video):
        inputs.append(options.video)
    if options.json_path is not None:
        check_output_file(options.json_path, "--json", inputs)
    options.events.check(inputs)
    if options.record is not None:
        check_output_file(options.record, "--record", inputs, streams=False)
    if options.report is not None:
        check_output_dir(options.report, "--report")
        for name in REPORT_FILES:
            check_output_file(Path(options.report) / name, "--report", inputs)
    if not options.headless:
        check_output_dir(options.snapshot_dir, "--snapshot-dir")
    seen: dict[Path, str] = {}
    for option, path in (("--json", options.json_path), ("--record", options.record), ("--events", options.events.path)):
        if path is None:
            continue
        if Path(path).resolve() in seen:
            raise EdgeSignsError(f"{seen[Path(path).resolve()]} and {option} name the same file ({path}); give each its own")
        seen[Path(path).resolve()] = option


def run_live(
    model_path: str | os.PathLike,
    options: Optional[LiveOptions] = None,
    *,
    log: Log = log_stderr,
    on_frame: Optional[Callable[[FrameResult], None]] = None,
    on_server: Optional[Callable[[LiveServer], None]] = None,
) -> LiveSummary:
    """Classify frames from the chosen source until it ends, --max-frames, q/Esc, Ctrl-C or SIGTERM.

    ``on_frame`` is called after every frame with the (reused) FrameResult: a hook
    for GPIO, MQTT or measurements. ``on_server`` (with --serve) gets the bound
    LiveServer before the source opens: its ``port`` (with port 0), ``add_route``
    for extra routes. User mistakes raise EdgeSignsError before any frame; a source
    that stops later ends the loop with a summary instead.
    """
    t_start = time.perf_counter()
    options = options or LiveOptions()
    options.source_kind()  # contradictions first: before opening a camera or loading a model
    check_tflite_file(model_path)
    show = choose_window(options.window, options.headless, "--serve" if options.serve is not None else None, log)
    options = replace(options, headless=not show)
    check_outputs(model_path, options)  # every output path, before any work
    if show:
        check_gui()
    with contextlib.ExitStack() as stack:
        # Bound before the camera opens: a port in use is a one-line error, not a camera left open.
        server = stack.enter_context(_open_server(options, log)) if options.serve is not None else None
        if server is not None and on_server is not None:
            on_server(server)
        # What Classifier will use (it also checks the metadata belongs to the model); needed for --labels.
        labels = tuple(read_sidecar(model_path, check_model=False).get("labels", config.LABELS))
        source = open_source(options, labels, log=log, model_input=True)
        stack.callback(source.close)
        clf = Classifier(model_path, threads=options.threads)
        labels = clf.labels
        log(f"model: {clf.describe()}")
        log(f"source: {source.name}")
        if server is not None:
            server.set_info(model=clf.describe(), source=source.name, labels=list(labels), threshold=options.threshold)
            server.start()
        window = Window(options.snapshot_dir, log) if not options.headless else None
        if window is not None:
            stack.callback(window.close)
        events = open_event_hub(options.events, log=log)
        stack.callback(events.close, keep=False)  # should what follows fail; a no-op after the close below
        outputs = RunOutputs(options.json_path, options.record, source.fps, log)
        overlay = Overlay(options.roi, labels) if options.shows_frames() else None
        completed = False
        try:
            with stop_on_signals() as stop:
                loop = _Loop(clf, source, options, overlay, window, outputs, on_frame, log, server, events)
                summary = loop.run(t_start, stop)
            completed = True
        finally:
            events.close(keep=completed)  # a sign still held is released; each output waits a bounded time
            errors = outputs.close(completed)  # each output on its own; every writer thread joined
    summary.events, summary.event_lines = events.stats(), events.lines()
    summary.warnings += events.warnings()
    for written in outputs.written():
        log(f"wrote {written}")
    if options.report is not None:
        try:
            _write_report(summary, Path(options.report), log)
        except OUTPUT_ERRORS as exc:  # the other outputs are already kept
            errors.append(f"--report {options.report}: {getattr(exc, 'strerror', None) or exc}")
    if errors:
        raise OutputError("; ".join(errors), summary)
    return summary


def _open_server(options: LiveOptions, log: Log) -> LiveServer:
    """--serve's server, bound (not yet serving): a one-line error for a port in use or an unknown host."""
    return LiveServer(parse_serve(options.serve), options.token, log=log)


class _Loop:
    """The per-frame work, with its state in attributes rather than in a long function."""

    def __init__(self, clf: Classifier, source: FrameSource, options: LiveOptions, overlay: Optional[Overlay],
                 window: Optional[Window], outputs: RunOutputs, on_frame, log, server: Optional[LiveServer] = None,
                 events: Optional[EventHub] = None):
        self.clf, self.source, self.options = clf, source, options
        self.overlay, self.window, self.outputs = overlay, window, outputs
        self.recording = outputs.recorder is not None
        self.on_frame, self.log, self.server = on_frame, log, server
        self.events = events if events is not None else EventHub(options.events.hold)
        self.clock = FrameClock(source.live, source.fps)
        # The Pi camera gives the model a small stream and people the full-size one.
        self.display_frame = getattr(source, "display_frame", None)
        self.independent_frames = getattr(source, "independent_frames", False)
        # A capture thread that preprocesses (open_source(model_input=True)) hands the model's input over ready.
        self.prepares = getattr(source, "prepare", None) is not None
        n = len(clf.labels)
        self.smoother = Smoother(options.smoothing, n)
        self.inference = RollingStats()
        self.overhead = RollingStats()
        self.confusion = np.zeros((n, n), np.int64)
        self.result = FrameResult()
        self.frames = self.scored = self.correct = self.smoothed_correct = self.no_sign = self.nonfinite = 0
        self.fps = 0.0

    def run(self, t_start: float, stop: Optional[StopRequest] = None) -> LiveSummary:
        opts, source = self.options, self.source
        startup = float("nan")
        t_loop = time.perf_counter()
        t_status = t_loop
        period_ms = 0.0
        reason = ""
        try:
            frames = iter(source)  # the source owns its retries (sources.FrameSource)
            while True:
                if stop is not None and stop.reason is not None:
                    reason = stop.reason
                    break
                if opts.max_frames is not None and self.frames >= opts.max_frames:
                    reason = f"--max-frames {opts.max_frames} reached"
                    break
                t0 = time.perf_counter()
                item = next(frames, None)
                if item is None:
                    reason = stop.reason if stop is not None and stop.reason else source.ended
                    break
                frame, truth = item
                inference_ms = self._predict(frame, truth)
                if self.frames == 1:
                    startup = time.perf_counter() - t_start
                ended = self._output(frame)
                if ended is not None:
                    reason = ended
                    break
                t1 = time.perf_counter()
                dt_ms = (t1 - t0) * 1e3
                self.overhead.add(dt_ms - inference_ms)
                # Smoothed frame period for the overlay's FPS: steady numbers, not per-frame jitter.
                period_ms = dt_ms if period_ms == 0 else 0.9 * period_ms + 0.1 * dt_ms
                self.fps = 1e3 / period_ms if period_ms > 0 else 0.0
                if opts.headless and opts.status_interval > 0 and t1 - t_status >= opts.status_interval:
                    t_status = t1
                    self.log(self._status())
        except KeyboardInterrupt:  # a second Ctrl-C, or no signal handler (not the main thread)
            reason = "interrupted (Ctrl-C)"
        seconds = time.perf_counter() - t_loop
        return self._summary(reason, seconds, startup)

    def _predict(self, frame: Optional[np.ndarray], truth: Optional[int]) -> float:
        if self.prepares:
            pred = self.clf.predict_rgb(self.source.prepared)  # frame_to_rgb(frame, roi), done in the capture thread
        else:
            pred = self.clf.predict_frame(frame, self.options.roi)
        if self.independent_frames:
            self.smoother.reset()
        self.nonfinite += not np.isfinite(pred.probs).all()
        mean = self.smoother.update(pred.probs)
        k = int(mean.argmax())
        r = self.result
        r.frame = self.frames
        r.raw_index, r.raw_label, r.confidence, r.inference_ms = pred.index, pred.label, pred.confidence, pred.inference_ms
        r.smoothed_confidence = float(mean[k])
        confident = r.smoothed_confidence >= self.options.threshold
        r.index = k if confident else None
        r.label = self.clf.labels[k] if confident else None
        r.truth = truth
        r.source_time = self.clock(r.frame)
        self.no_sign += not confident
        if truth is not None:
            self.scored += 1
            self.correct += pred.index == truth
            self.smoothed_correct += r.index == truth
            self.confusion[truth, pred.index] += 1
        self.frames += 1
        self.inference.add(pred.inference_ms)
        return pred.inference_ms

    def _output(self, frame: Optional[np.ndarray]) -> Optional[str]:
        """Overlay, window, recording, browser, JSON line, callback. Why the loop must end (quit, an output failed), or None."""
        r = self.result
        keep_going = True
        # A browser takes a frame only when a viewer watches and the encoder is due (SERVE_MAX_FPS).
        serve_frame = self.server is not None and self.server.wants_frame()
        if self.overlay is not None and (self.window is not None or self.recording or serve_frame):
            shown = self.display_frame() if self.display_frame is not None else None
            img = self.overlay.render(frame if shown is None else shown, r, self.fps)
            self.outputs.frame(img)
            if serve_frame:
                self.server.publish_frame(img)  # a copy for the encoder thread, or nothing: never waits
            if self.window is not None:
                keep_going = self.window.show(img, r.frame)
        self.events.on_frame(r)
        if self.server is not None:
            status = r.as_dict(self.clf.labels, self.source.has_truth)
            status["fps"] = round(self.fps, 2)
            status["events"] = self.events.recent
            self.server.publish_status(status)
        if self.outputs.json is not None:
            self.outputs.line(r.json_line(self.clf.labels, self.source.has_truth))
        if self.on_frame is not None:
            self.on_frame(r)
        return self.outputs.stop_reason() or (None if keep_going else "quit from the window")

    def _status(self) -> str:
        r = self.result
        text = (f"frame {r.frame}: {r.label if r.label is not None else 'no sign'} ({r.smoothed_confidence:.2f}), "
                f"raw {r.raw_label} ({r.confidence:.2f}) | {self.fps:.1f} fps, inference {self.inference.median():.1f} ms, "
                f"overhead {self.overhead.median():.1f} ms")
        if self.scored:
            text += f" | accuracy {self.correct / self.scored:.3f} on {self.scored}"
        return text

    def _summary(self, reason: str, seconds: float, startup: float) -> LiveSummary:
        scored = self.scored
        # Only a source that ran out can have left labelled frames unreached (not --max-frames or Ctrl-C).
        warnings = [w for w in [self.source.unscored()] if w] if reason and reason == getattr(self.source, "ended", None) else []
        if self.nonfinite:
            warnings.append(f"{self.nonfinite} of {self.frames} frames gave NaN or infinite probabilities (labelled "
                            f"{self.clf.labels[0]} by argmax): the model is broken; re-run 'edge-signs quantize' and check it with 'edge-signs evaluate'")
        return LiveSummary(
            frames=self.frames,
            reason=reason,
            source=self.source.name,
            model=self.clf.describe(),
            labels=tuple(self.clf.labels),
            seconds=seconds,
            fps=self.frames / seconds if seconds > 0 else 0.0,
            median_inference_ms=self.inference.median(),
            median_overhead_ms=self.overhead.median(),
            startup_s=startup,
            scored=scored,
            accuracy=self.correct / scored if scored else None,
            smoothed_accuracy=self.smoothed_correct / scored if scored else None,
            no_sign=self.no_sign,
            confusion=self.confusion if scored else None,
            warnings=warnings,
            dropped=getattr(self.source, "dropped", None),
            served=self.server.stats() if self.server is not None else None,
        )


REPORT_FILES = ("live_summary.json", "confusion_matrix.png")


def _write_report(summary: LiveSummary, folder: Path, log: Log) -> None:
    """live_summary.json, and confusion_matrix.png when any frame was scored."""
    write_json(folder / "live_summary.json", summary.to_dict())
    written = [folder / "live_summary.json"]
    if summary.confusion is not None:
        title = f"live: accuracy {summary.accuracy:.3f} on {summary.scored} frames"
        written.append(confusion_matrix_png(summary.confusion, summary.labels, folder / "confusion_matrix.png", title))
    log("wrote " + ", ".join(str(p) for p in written))
