"""`edge-signs collect`: save ROI crops from a camera or a video as a labelled image folder.

numpy and OpenCV only -- never TensorFlow -- so it runs on the Raspberry Pi that will
run the model. It is the frame loop (loop.py) with live's sources (``open_source``:
--camera, --picamera, --video) and, as outputs, the events and one of three crop
savers. The crop is live's ROI (``Roi.box``), saved as a larger square than the
model's input (``config.COLLECT_SIZE``) so that the data outlives the model; the
folder, its log and the writer thread are crop_writer.py's.

A file's name without its last ``_<number>`` is its session: the grouped split keeps a
session's near-identical frames on one side. Three ways to run it:

- window (where one can open, or --window): keys 0-5 save the crop on screen with that label, b toggles a burst (one crop
  per --interval for the last label), q/Esc quits; per-class counts on screen (``KeyCrops``, keys in collect_keys.py).
- --label L (headless; --headless says so): a countdown, then --count crops at --interval (``HeadlessCrops``; a Pi over SSH).
- --video FILE --labels CSV: the labelled frames of a video (live's labels CSV), each
  under its label, at --interval of video time (default: every frame) (``LabelledCrops``).

Intervals are in the source's time: the wall clock for cameras and streams, frame
number / fps for video files (which are read as fast as they decode).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from edge_signs import config
from edge_signs.edge import ranges
from edge_signs.edge.collect_keys import CollectView, Keys, Pacer
from edge_signs.edge.crop_writer import Crop, CropWriter, check_out, crop_square, new_session, remove_stale_crops
from edge_signs.edge.display import Window, check_gui, window_problem
from edge_signs.edge.events import EventHub, EventOptions, open_event_hub
from edge_signs.edge.loop import FrameLoop, FrameOutput, LoopFrame, LoopRun, StopRequest
from edge_signs.edge.loop_outputs import EventsOutput
from edge_signs.edge.sources import FrameSource, SourceOptions, open_source
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.own_data import count_images
from edge_signs.preprocess import Roi

WINDOW_FIX = "give --label L to save without one"


@dataclass(frozen=True, kw_only=True)
class CollectOptions(SourceOptions):
    """Everything `edge-signs collect` can be told: a camera or a video (SourceOptions) and how to save. Checked when made."""

    out: Path  # the dataset folder: OUT/<label>/*.jpg and OUT/collect_log.csv
    width: int = config.COLLECT_CAMERA_WIDTH
    height: int = config.COLLECT_CAMERA_HEIGHT
    roi: Roi = field(default_factory=Roi)
    headless: bool = False
    window: Optional[bool] = None  # True: --window (with --label, the first burst's label); None: a window only without --label
    label: Optional[str] = None  # headless: the class of every crop; --window: the first burst's label
    count: Optional[int] = None  # --headless: crops to save (default config.COLLECT_COUNT); window: crops per burst
    interval: Optional[float] = None  # seconds between burst crops (default config.COLLECT_INTERVAL_S; --labels: every frame)
    countdown: float = config.COLLECT_COUNTDOWN_S  # --headless: seconds announced before the first crop
    size: int = config.COLLECT_SIZE  # side of the saved square, pixels
    quality: int = config.COLLECT_JPEG_QUALITY
    events: EventOptions = field(default_factory=EventOptions)  # the label being saved, held --hold seconds, is an event

    def __post_init__(self):
        super().__post_init__()  # one source; --labels only with --video; sizes and fps
        if self.testset or self.loop:
            raise EdgeSignsError("collect saves crops from --camera, --picamera or --video (no --testset, no --loop)")
        if self.label is not None and self.label not in config.LABELS:
            raise EdgeSignsError(f"--label {self.label!r}: not a label (labels are {', '.join(config.LABELS)})")
        ranges.COUNT.check("--count", self.count)
        ranges.SECONDS.check("--interval", self.interval)
        ranges.SECONDS.check("--countdown", self.countdown)
        if isinstance(self.size, (int, float)) and self.size > ranges.CROP_SIZE.high:
            raise EdgeSignsError(f"--size must be at most {ranges.CROP_SIZE.high:g} pixels, got {self.size} (a crop that size "
                                 f"is {3 * self.size ** 2 / 2**20:.0f} MB in memory; the model sees {config.IMAGE_SIZE} px)")
        ranges.CROP_SIZE.check("--size", self.size)
        ranges.JPEG_QUALITY.check("--quality", self.quality)
        if self.headless and self.window:
            raise EdgeSignsError("--headless and --window contradict each other; name one")
        if self.labels_csv is not None:
            if self.window:
                raise EdgeSignsError("--window and --labels: a labels CSV run saves every labelled frame with no window; name one")
            if self.label is not None:
                raise EdgeSignsError("--label and --labels: the labels CSV gives every frame's label; name one of them")
            if self.count is not None:
                raise EdgeSignsError("--count goes with --label; with --labels every labelled frame is saved (thin them with --interval)")
        elif self.headless and self.label is None:
            raise EdgeSignsError(f"--headless needs --label (one of {', '.join(config.LABELS)}): the class of the crops it saves")

    @property
    def mode(self) -> str:
        """'labels', 'headless' or 'window'."""
        if self.labels_csv is not None:
            return "labels"
        if self.headless or (self.label is not None and not self.window):
            return "headless"  # a label for every crop: nothing to press keys for
        return "window"

    def burst_interval(self) -> float:
        if self.interval is not None:
            return self.interval
        return 0.0 if self.labels_csv is not None else config.COLLECT_INTERVAL_S


# -- the savers: frame-loop outputs, one per way of running -------------------------------------------------


class CropSaver:
    """Puts the frame in hand's crop into the writer under a label; the counts a run queued, and its warnings."""

    def __init__(self, writer: CropWriter, options: CollectOptions, log: Log):
        self.writer, self.roi, self.size, self.log = writer, options.roi, options.size, log
        self.queued = {k: 0 for k in config.LABELS}
        self.flash = 0  # frames the window still shows the green box of a save
        self.warnings: list[str] = []

    @property
    def total(self) -> int:
        return sum(self.queued.values())

    def save(self, f: LoopFrame, label: str) -> bool:
        image = f.shown()  # the Pi camera's full-size stream where it has one
        crop, roi = crop_square(image, self.roi, self.size)
        if roi[2] < self.size and not self.warnings:
            msg = (f"small crop: the ROI is {roi[2]} px of a {image.shape[1]}x{image.shape[0]} frame, enlarged to "
                   f"{self.size} px; ask for a larger --width/--height or --roi SIZE for sharper crops")
            self.warnings.append(msg)
            self.log(f"warning: {msg}")
        ok = self.writer.submit(Crop(crop, label, roi, time.time(), f.index))
        if ok:
            self.queued[label] += 1
            self.flash = 3
        return ok


class Crops(FrameOutput):
    """The base of the three savers: the writer stops the loop once it fails, and is closed (all queued written) at the end."""

    name = "crops"

    def __init__(self, saver: CropSaver, interval: float):
        self.saver, self.pacer = saver, Pacer(interval)

    def on_frame(self, frame: LoopFrame) -> Optional[str]:
        return "saving failed" if self.saver.writer.error is not None else self.crop(frame)

    def crop(self, frame: LoopFrame) -> Optional[str]:
        raise NotImplementedError

    def label_of(self, frame: LoopFrame) -> Optional[str]:
        """The label this frame is saved under, or None: the sign the events are made of."""
        raise NotImplementedError

    def close(self, completed: bool) -> None:
        self.saver.writer.close()  # everything queued is written, whatever ended the loop


class HeadlessCrops(Crops):
    """--label L: a countdown, then --count crops of L at --interval."""

    def __init__(self, saver: CropSaver, options: CollectOptions, log: Log):
        super().__init__(saver, options.burst_interval())
        self.label, self.countdown_s, self.log = options.label, options.countdown, log
        self.count = options.count if options.count is not None else config.COLLECT_COUNT
        self.progress_every = max(1, self.count // 10)

    def begin(self, stop: StopRequest) -> Optional[str]:
        seconds = self.countdown_s
        if seconds <= 0:
            return None
        end = time.monotonic() + seconds
        for k in range(math.ceil(seconds), 0, -1):
            self.log(f"saving {self.count} crops of {self.label} in {k} ...")
            while time.monotonic() < min(end, end - k + 1):
                if stop.reason is not None:
                    return stop.reason
                time.sleep(0.05)
        self.log("go")
        return stop.reason

    def label_of(self, frame: LoopFrame) -> Optional[str]:
        return self.label

    def crop(self, f: LoopFrame) -> Optional[str]:
        if not self.pacer.running:
            self.pacer.start(f.time)
        if self.pacer.due(f.time) and self.saver.save(f, self.label):
            n = self.saver.total
            if n % self.progress_every == 0 or n == self.count:
                self.log(f"saved {n}/{self.count} ({self.label})")
            if n >= self.count:
                return f"--count {self.count} saved"
        return None


class LabelledCrops(Crops):
    """--video --labels: every labelled frame under its label, at --interval within each labelled range."""

    def __init__(self, saver: CropSaver, options: CollectOptions):
        super().__init__(saver, options.burst_interval())
        self.truth: Optional[int] = None  # the range the last frame was in

    def label_of(self, frame: LoopFrame) -> Optional[str]:
        return config.LABELS[frame.truth] if frame.truth is not None else None

    def crop(self, f: LoopFrame) -> None:
        if f.truth is not None and f.truth != self.truth:
            self.pacer.start(f.time)
        self.truth = f.truth
        if f.truth is not None and self.pacer.due(f.time):
            self.saver.save(f, config.LABELS[f.truth])


class KeyCrops(Crops):
    """The window: keys 0-5 save the frame on screen, b a burst of the last label, q/Esc or the close button quit."""

    def __init__(self, saver: CropSaver, options: CollectOptions, before: dict[str, int]):
        super().__init__(saver, options.burst_interval())
        self.keys = Keys(self.pacer.interval, options.label, per_burst=options.count)
        self.view = CollectView(options.roi)
        self.before = before  # images in OUT when the run began
        self.window = Window(config.COLLECT_WINDOW_NAME, fix=WINDOW_FIX)
        self.burst_when_ended: Optional[int] = None  # crops of the burst still running when the loop ended

    def label_of(self, frame: LoopFrame) -> Optional[str]:
        return self.keys.label if self.keys.burst else None

    def crop(self, f: LoopFrame) -> Optional[str]:
        saver, keys = self.saver, self.keys
        label = keys.burst_due(f.time)
        if label is not None:
            saver.save(f, label)
        img = self.view.render(f.shown(), self.before, saver.queued, keys, saver.flash > 0)
        saver.flash = max(0, saver.flash - 1)
        label = keys.press(self.window.show(img), f.time)
        if label is not None:
            saver.save(f, label)  # the frame on screen when the key came
        if keys.quit:
            return "quit from the window"
        return "window closed" if self.window.closed() else None

    def close(self, completed: bool) -> None:
        self.burst_when_ended = self.keys.burst_saved if self.keys.burst else None
        try:
            self.window.close()
        finally:
            super().close(completed)


@dataclass
class CollectSummary:
    """What a collect run saved, and how it went."""

    out: Path
    session: str
    source: str
    mode: str
    saved: dict[str, int]  # crops written this session, per label
    totals: dict[str, int]  # images in OUT/<label>/ now
    csv: Path
    frames: int
    seconds: float
    reason: str
    median_frame_ms: float  # read + crop + queue + window, per frame (median of the last config.STATS_WINDOW)
    dropped: int = 0  # crops not saved because the writer's queue was full
    camera_dropped: Optional[int] = None  # camera frames replaced by newer ones before the loop took them
    size: int = config.COLLECT_SIZE
    warnings: list[str] = field(default_factory=list)
    error: Optional[str] = None  # writing stopped (disk full, folder gone): the exit status is 1
    events: Optional[dict] = None  # events.EventHub.stats()
    event_lines: list[str] = field(default_factory=list)

    @property
    def total_saved(self) -> int:
        return sum(self.saved.values())

    def text(self) -> str:
        fps = self.frames / self.seconds if self.seconds > 0 else 0.0
        per = ", ".join(f"{k}: {v}" for k, v in self.saved.items() if v) or "none"
        lines = [
            f"session {self.session}: {self.frames} frames from {self.source} in {self.seconds:.1f} s ({fps:.1f} fps, "
            f"{self.median_frame_ms:.2f} ms per frame median); ended: {self.reason}",
            f"saved {self.total_saved} crops ({self.size}x{self.size} JPEG) into {self.out}: {per}",
            f"in {self.out} now: " + ", ".join(f"{k}: {v}" for k, v in self.totals.items()) + f" ({sum(self.totals.values())} images)",
        ]
        if self.total_saved:
            lines.append(f"log: {self.csv}")
        if self.camera_dropped:
            lines.append(f"camera frames replaced by newer ones before the loop took them: {self.camera_dropped}")
        lines += self.event_lines
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"

def open_collect_source(options: CollectOptions, *, log: Log = log_stderr) -> FrameSource:
    """live's sources with full frames (the crops come from them; the Pi camera's full-size main stream)."""
    return open_source(options, log=log)


def run_collect(
    options: CollectOptions,
    *,
    log: Log = log_stderr,
    source: Optional[FrameSource] = None,
    clock: Optional[Callable[[], float]] = None,
) -> CollectSummary:
    """Save ROI crops until the source ends, --count is reached, q/Esc, Ctrl-C or SIGTERM.

    User mistakes (contradicting options, an unwritable or full OUT, no window) raise
    EdgeSignsError before the source opens. ``source`` replaces the one the options
    name (tests, benchmarks); ``clock`` replaces the source's time (seconds).
    """
    mode = options.mode
    out = check_out(options.out)
    options.events.check([options.video, options.labels_csv])
    if mode == "headless" and not options.headless:
        log("running headless: --label names every crop's class (--window for the keys)")
    if mode == "window" and not options.window and (problem := window_problem()) is not None:
        raise EdgeSignsError(f"{problem}: give --label L [--count N] to save crops without a window")
    if mode == "window":
        check_gui()
    stale = remove_stale_crops(out) if out.is_dir() else 0
    if stale:
        log(f"removed {stale} temporary file(s) a killed collect left in {out}")
    before = count_images(out) if out.is_dir() else {k: 0 for k in config.LABELS}
    session = new_session()
    src = source if source is not None else open_collect_source(options, log=log)
    try:
        log(f"source: {src.name}")
        log(f"session {session}: saving {options.size}x{options.size} crops into {out}/<label>/")
        crops, hub = _open_crops(options, mode, src, session, before, log)
        run = FrameLoop(src, [EventsOutput(hub, crops.label_of), crops], clock=clock, log=log).run()
    finally:
        src.close()
    summary = _summary(options, crops, src, run, out, session)
    summary.events, summary.event_lines = hub.stats(), hub.lines()
    summary.warnings += hub.warnings()
    return summary


def _open_crops(options: CollectOptions, mode: str, source: FrameSource, session: str, before: dict[str, int],
                log: Log) -> tuple[Crops, EventHub]:
    """The writer, the saver the mode runs and the events hub; what was opened is closed should a later one fail."""
    writer = CropWriter(options.out, session, source.name, options.quality, block=not source.live)
    saver = CropSaver(writer, options, log)
    try:
        if mode == "headless":
            crops: Crops = HeadlessCrops(saver, options, log)
        elif mode == "labels":
            crops = LabelledCrops(saver, options)
        else:
            crops = KeyCrops(saver, options, before)
        return crops, open_event_hub(options.events, log=log)
    except BaseException:
        writer.close()
        if mode == "window" and "crops" in locals():
            crops.window.close()
        raise


def _summary(options: CollectOptions, crops: Crops, source: FrameSource, run: LoopRun, out: Path, session: str) -> CollectSummary:
    w, saver, reason = crops.saver.writer, crops.saver, run.reason
    warnings = list(saver.warnings)
    source_stopped = bool(source.ended) and reason == source.ended
    if isinstance(crops, HeadlessCrops) and saver.total < crops.count and reason != "saving failed":
        warnings.append(f"incomplete: {reason} after {w.saved[options.label]} of {crops.count} crops; those are kept")
    if isinstance(crops, KeyCrops) and crops.burst_when_ended is not None and source_stopped:
        warnings.append(f"source stopped mid-burst: {reason}; the {crops.burst_when_ended} crops of this burst are kept")
    if w.dropped:
        warnings.append(f"dropped saves: {w.dropped} crops not saved because the writer fell {config.COLLECT_QUEUE} behind "
                        f"(a slow disk); a longer --interval or a faster card helps")
    unscored = source.unscored() if source_stopped and isinstance(crops, LabelledCrops) else None
    if unscored:
        warnings.append(f"labels not reached: {unscored}")
    if w.lost:
        warnings.append(f"not written: {w.lost} queued crops after saving failed")
    summary = CollectSummary(
        out=out, session=session, source=source.name, mode=options.mode, saved=dict(w.saved), totals=count_images(out),
        csv=w.csv_path, frames=run.frames, seconds=run.seconds, reason=reason, median_frame_ms=run.median_overhead_ms,
        dropped=w.dropped, camera_dropped=source.dropped, size=options.size, warnings=warnings,
    )
    if w.error is not None:
        summary.error = f"saving stopped: {w.error}; the {summary.total_saved} crops saved before it are kept"
    return summary
