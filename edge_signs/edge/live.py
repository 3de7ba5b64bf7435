"""`edge-signs live`: the frame loop with a classifier and its outputs.

numpy, OpenCV and a LiteRT interpreter only -- never TensorFlow -- so it runs on a
Raspberry Pi. Cameras and streams are read, and video files decoded ahead, in a
thread that also preprocesses the frames the model will take (sources.open_source),
so the loop's own thread only invokes the model.

    open_source -> FrameLoop (loop.py) -> Classify (predict.py: predict, smooth, threshold)
                                       -> FileOutputs (--json, --record), LiveWindow, EventsOutput, BrowserOutput (--serve), on_frame
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from edge_signs import config
from edge_signs.artifacts import check_output_dir, check_output_file, write_json
from edge_signs.edge import ranges
from edge_signs.edge.display import Overlay, Picture, check_gui, choose_window, record_fourcc
from edge_signs.edge.events import EventHub, EventOptions, open_event_hub
from edge_signs.edge.loop import FrameLoop, FrameOutput, LoopFrame, LoopRun
from edge_signs.edge.loop_outputs import BrowserOutput, CallbackOutput, EventsOutput, LiveWindow
from edge_signs.edge.outputs import OUTPUT_ERRORS, FileOutputs, OutputError
from edge_signs.edge.predict import Classify
from edge_signs.edge.results import FrameResult, LiveSummary
from edge_signs.edge.runtime import Classifier, check_tflite_file, read_sidecar, sidecar_path
from edge_signs.edge.serve import LiveServer, check_token, parse_serve
from edge_signs.edge.sources import FrameSource, SourceOptions, open_source
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.plots import confusion_matrix_png
from edge_signs.preprocess import Roi, frame_to_rgb

__all__ = ["FrameResult", "LiveOptions", "LiveSummary", "parse_roi", "run_live"]

REPORT_FILES = ("live_summary.json", "confusion_matrix.png")


@dataclass(frozen=True)
class LiveOptions(SourceOptions):
    """Everything `edge-signs live` can be told: the source (SourceOptions), the model's use, the outputs. Checked when made."""

    roi: Roi = field(default_factory=Roi)
    smoothing: int = config.SMOOTHING_FRAMES
    threshold: float = config.CONFIDENCE_THRESHOLD
    threads: int = config.THREADS
    max_frames: Optional[int] = None
    headless: bool = False  # no window (the default too where none can open, and with --serve)
    window: Optional[bool] = None  # True: --window, a window or a clear error; None: one where one can open
    record: Optional[Path] = None  # annotated video, .avi (MJPG) or .mp4 (mp4v)
    json_path: Optional[Path] = None  # one JSON object per frame
    report: Optional[Path] = None  # folder for live_summary.json and confusion_matrix.png
    snapshot_dir: Path = Path(".")  # where the window's 's' key saves PNGs
    status_interval: float = config.STATUS_INTERVAL_S  # --headless status line period, seconds (0: none)
    serve: Optional[str] = None  # [HOST:]PORT: the page, MJPEG stream and status JSON for a browser (serve.py)
    token: Optional[str] = None  # required by every --serve request (generated when serving beyond loopback)
    events: EventOptions = field(default_factory=EventOptions)  # --hold and where events go (events.py)

    def __post_init__(self):
        super().__post_init__()
        ranges.COUNT.check("--smoothing", self.smoothing)
        ranges.COUNT.check("--threads", self.threads)
        ranges.COUNT.check("--max-frames", self.max_frames)
        ranges.PROBABILITY.check("--threshold", self.threshold)
        ranges.SECONDS.check("--status-every", self.status_interval)
        if self.record is not None:
            record_fourcc(self.record)
        if self.serve is not None:
            parse_serve(self.serve)
        if self.token is not None:
            if self.serve is None:
                raise EdgeSignsError("--token protects --serve; give --serve [HOST:]PORT too")
            check_token(self.token)

    def shows_frames(self) -> bool:
        """Whether anyone looks at the frames (a window, a recording or a browser): only then is an overlay drawn."""
        return not self.headless or self.record is not None or self.serve is not None


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
    outputs: Sequence[FrameOutput] = (),
) -> LiveSummary:
    """Classify frames from the chosen source until it ends, --max-frames, q/Esc, Ctrl-C or SIGTERM.

    ``on_frame`` is called after every frame with the (reused) FrameResult: a hook
    for GPIO, MQTT or measurements. ``on_server`` (with --serve) gets the bound
    LiveServer before the source opens: its ``port`` (with port 0), ``add_route``
    for extra routes. ``outputs`` are frame-loop outputs of the caller's own (loop.FrameOutput),
    given each frame after live's; the loop closes them. User mistakes raise EdgeSignsError
    before any frame; a source that stops later ends the loop with a summary instead.
    """
    t_start = time.perf_counter()
    options = options or LiveOptions()
    check_tflite_file(model_path)
    show = choose_window(options.window, options.headless, "--serve" if options.serve is not None else None, log)
    options = replace(options, headless=not show)
    check_outputs(model_path, options)  # every output path, before any work
    if show:
        check_gui()
    with contextlib.ExitStack() as stack:
        # Bound before the camera opens: a port in use is a one-line error, not a camera left open.
        server = stack.enter_context(LiveServer(parse_serve(options.serve), options.token, log=log)) if options.serve is not None else None
        if server is not None and on_server is not None:
            on_server(server)
        # What Classifier will use (it also checks the metadata belongs to the model); needed for --labels.
        labels = tuple(read_sidecar(model_path, check_model=False).get("labels", config.LABELS))
        source = open_source(options, labels=labels, prepare=functools.partial(frame_to_rgb, roi=options.roi),
                             keep_frames=options.shows_frames(), log=log)
        stack.callback(source.close)
        clf = Classifier(model_path, threads=options.threads)
        log(f"model: {clf.describe()}")
        log(f"source: {source.name}")
        if server is not None:
            server.set_info(model=clf.describe(), source=source.name, labels=list(clf.labels), threshold=options.threshold)
            server.start()
        stage = Classify(clf, options.roi, options.smoothing, options.threshold)
        own, files, events = _outputs(options, source, clf, server, on_frame, log)
        loop = FrameLoop(source, [*own, *outputs], stage=stage, max_frames=options.max_frames,
                         status=lambda f: _status(f, stage, loop), status_interval=options.status_interval if options.headless else 0.0,
                         log=log)
        run = loop.run(t_start)
    summary = _summary(run, source, stage, server, events)
    _publish(summary, files, options, log)
    return summary


def _outputs(options: LiveOptions, source: FrameSource, clf: Classifier, server: Optional[LiveServer], on_frame,
             log: Log) -> tuple[list[FrameOutput], FileOutputs, EventHub]:
    """The run's outputs in the order they get each frame: files, window, events, browser (after the events: it shows them), hook.

    The loop closes them; should one fail to open, those opened before it are closed here.
    """
    picture = Picture(Overlay(options.roi, clf.labels)) if options.shows_frames() else None
    window = LiveWindow(picture, options.snapshot_dir, log) if not options.headless else None
    hub = files = None
    try:
        hub = open_event_hub(options.events, log=log)
        files = FileOutputs(options.json_path, options.record, source.fps, log, picture=picture, labels=clf.labels)
    except BaseException:
        for opened in (window, hub and EventsOutput(hub)):
            if opened:
                opened.close(completed=False)
        raise
    outputs = [files, *([window] if window else []), EventsOutput(hub)]
    outputs += [BrowserOutput(server, picture, hub, clf.labels)] if server is not None else []
    outputs += [CallbackOutput(on_frame)] if on_frame is not None else []
    return outputs, files, hub


def _status(f: LoopFrame, stage: Classify, loop: FrameLoop) -> str:
    """--headless's status line."""
    r = f.result
    text = (f"frame {r.frame}: {r.label if r.label is not None else 'no sign'} ({r.smoothed_confidence:.2f}), "
            f"raw {r.raw_label} ({r.confidence:.2f}) | {f.fps:.1f} fps, inference {stage.inference.median():.1f} ms, "
            f"overhead {loop.overhead.median():.1f} ms")
    if stage.scored:
        text += f" | accuracy {stage.accuracy():.3f} on {stage.scored}"
    return text


def _publish(summary: LiveSummary, files: FileOutputs, options: LiveOptions, log: Log) -> None:
    """Says what the outputs wrote, writes --report; one OutputError for every output that failed (the others are kept)."""
    for written in files.written():
        log(f"wrote {written}")
    errors = files.errors
    if options.report is not None:
        try:
            _write_report(summary, Path(options.report), log)
        except OUTPUT_ERRORS as exc:
            errors.append(f"--report {options.report}: {getattr(exc, 'strerror', None) or exc}")
    if errors:
        raise OutputError("; ".join(errors), summary)


def _summary(run: LoopRun, source: FrameSource, stage: Classify, server: Optional[LiveServer], events: EventHub) -> LiveSummary:
    # Only a source that ran out can have left labelled frames unreached (not --max-frames or Ctrl-C).
    warnings = [w for w in [source.unscored()] if w] if run.reason and run.reason == source.ended else []
    warnings += [w for w in [stage.nonfinite_warning(run.frames)] if w]
    return LiveSummary(
        frames=run.frames, reason=run.reason, source=source.name, model=stage.clf.describe(), labels=tuple(stage.labels),
        seconds=run.seconds, fps=run.frames / run.seconds if run.seconds > 0 else 0.0,
        median_inference_ms=stage.inference.median(), median_overhead_ms=run.median_overhead_ms, startup_s=run.startup_s,
        scored=stage.scored, accuracy=stage.accuracy(), smoothed_accuracy=stage.smoothed_accuracy(), no_sign=stage.no_sign,
        confusion=stage.confusion if stage.scored else None, warnings=warnings + events.warnings(), dropped=source.dropped,
        served=server.stats() if server is not None else None, events=events.stats(), event_lines=events.lines(),
    )


def _write_report(summary: LiveSummary, folder: Path, log: Log) -> None:
    """live_summary.json, and confusion_matrix.png when any frame was scored."""
    write_json(folder / "live_summary.json", summary.to_dict())
    written = [folder / "live_summary.json"]
    if summary.confusion is not None:
        title = f"live: accuracy {summary.accuracy:.3f} on {summary.scored} frames"
        written.append(confusion_matrix_png(summary.confusion, summary.labels, folder / "confusion_matrix.png", title))
    log("wrote " + ", ".join(str(p) for p in written))
