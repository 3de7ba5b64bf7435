"""`edge-signs teach MODEL --camera/--picamera/--video ... --out FILE`: teaching in a window, with keys 0-5.

live's source, ROI and preprocessing; the window shows the ROI box, the sign the
head sees now and the frames taught per sign. A key 0-5 teaches the frame on
screen as that sign (``Teacher.add``: the head is refitted at once, and the next
frame is classified by it) and, with ``save``, keeps its crop as `collect` does
(same writer, same layout: the frames can fine-tune on a workstation later).
q or Esc ends it, and the file is written when every sign has enough frames. It is
the frame loop (loop.py) with one output, ``TaughtByKeys``. What it shares with
teaching from a browser (teach_serve.py) is here: ``open_teaching``,
``TaughtWithCrops`` (a frame named by its user), ``render_teaching``, ``write_taught``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_signs import config
from edge_signs.edge.crop_writer import Crop, CropWriter, check_out, crop_square, new_session
from edge_signs.edge.display import AA, AMBER, FONT, PANEL, WHITE, Canvas, Window
from edge_signs.edge.loop import LoopFrame, LoopRun
from edge_signs.edge.runtime import Classifier
from edge_signs.edge.sources import FrameSource, SourceOptions, open_source
from edge_signs.edge.teach import TeachOptions, check_teach_paths, signs_features
from edge_signs.edge.teach_live import Taught, Teacher, run_teaching
from edge_signs.log import Log, log_stderr
from edge_signs.preprocess import Roi, frame_to_rgb

QUIT_KEYS = (ord("q"), 27)


@dataclass
class WindowTeachResult:
    frames: int
    taught: list[int]
    saved: int  # crops written
    out: Path

    def text(self) -> str:
        return (f"{self.frames} frames, taught {sum(self.taught)} ({', '.join(f'{config.LABELS[k]}: {n}' for k, n in enumerate(self.taught))}), "
                f"{self.saved} crops saved\nwrote {self.out}\n")


def render_teaching(canvas: Canvas, frame: np.ndarray, probs: np.ndarray, teacher: Teacher) -> np.ndarray:
    """The frame with the ROI box, the sign the head sees now and the frames taught per sign (the window and --serve's page)."""
    img, thick = canvas.draw(frame, AMBER)
    k = int(np.argmax(probs))
    who = "taught head" if teacher.head is not None else "model's own head"
    lines = [f"{config.LABELS[k]}  {probs[k]:.2f}  ({who})", "  ".join(f"{config.LABELS[c]}:{n}" for c, n in enumerate(teacher.counts()))]
    fs = max(0.45, img.shape[1] / 1000)
    cv2.rectangle(img, (0, 0), (img.shape[1], int(60 * fs) + 8), PANEL, -1)
    for i, text in enumerate(lines):
        cv2.putText(img, text, (8, int(26 * fs) * (i + 1)), FONT, fs, WHITE, thick, AA)
    return img


@dataclass
class Teaching:
    """What a run of teaching from a source has open: the classifier, the teacher, the source and the crop writer (with --save)."""

    clf: Classifier
    teacher: Teacher
    source: FrameSource
    writer: CropWriter | None


def open_teaching(model: Path, source_options: SourceOptions, options: TeachOptions, roi: Roi, save: Path | None, log: Log) -> Teaching:
    """The model, SIGNS' features to mix in, the source and the crop writer; what opened is closed again should a later one fail."""
    writer = source = None
    try:
        clf = Classifier(model, threads=options.threads, features=True)
        teacher = Teacher(clf, model, options.fit, signs_features(clf, options, log)[0])
        source = open_source(source_options, prepare=functools.partial(frame_to_rgb, roi=roi), log=log)
        writer = CropWriter(save, new_session(), source.name) if save is not None else None
    except BaseException:
        for opened in (source, writer):
            if opened is not None:
                opened.close()
        raise
    return Teaching(clf, teacher, source, writer)


def write_taught(teaching: Teaching, run: LoopRun, out: Path, save: Path | None, seed: int) -> WindowTeachResult:
    """The personal file from every frame taught (one line when a sign has too few), and what the run did."""
    writer = teaching.writer
    teaching.teacher.write(out, {"data": str(Path(save).resolve()) if save is not None else None, "source": teaching.source.name, "seed": seed})
    return WindowTeachResult(run.frames, teaching.teacher.counts(), sum(writer.saved.values()) if writer is not None else 0, out)


class TaughtWithCrops(Taught):
    """A teaching output whose user names the sign of the frame in hand (a key, a button); with --save its crop is kept."""

    def __init__(self, teaching: Teaching, roi: Roi):
        super().__init__(teaching.clf, teaching.teacher, roi)
        self.writer = teaching.writer

    def teach(self, f: LoopFrame, features: np.ndarray, label: int) -> None:
        """The frame in hand as sign ``label``: its features stored, the head refitted, its crop queued for the writer."""
        self.teacher.add(features, label)
        if self.writer is not None:
            crop, box = crop_square(f.frame, self.roi, config.COLLECT_SIZE)
            self.writer.submit(Crop(crop, config.LABELS[label], box, time.time(), f.index))

    def close(self, completed: bool) -> None:
        if self.writer is not None:
            self.writer.close()


class TaughtByKeys(TaughtWithCrops):
    """The window: the frame with the sign the head sees now; a key 0-5 teaches the frame on screen, q, Esc or the close button end it."""

    def __init__(self, teaching: Teaching, roi: Roi, window: Window):
        super().__init__(teaching, roi)
        self.window, self.canvas = window, Canvas(roi)

    def on_frame(self, f: LoopFrame) -> str | None:
        feats, shown = self.classify(f)
        key = self.window.show(render_teaching(self.canvas, f.frame, shown, self.teacher)) & 0xFF
        if key in QUIT_KEYS or self.window.closed():
            return "quit from the window"
        label = chr(key) if key < 128 else ""
        if label in config.LABELS:
            self.teach(f, feats, config.LABELS.index(label))
        return None

    def close(self, completed: bool) -> None:
        try:
            self.window.close()
        finally:
            super().close(completed)


def teach_window(model: str | Path, source_options: SourceOptions, out: str | Path, options: TeachOptions = TeachOptions(), *,
                 roi: Roi = Roi(), save: Path | None = None, log: Log = log_stderr) -> WindowTeachResult:
    """Teach from a camera or video in a window (see the module's notes)."""
    model = Path(model)
    out = check_teach_paths(model, out)
    save = check_out(save) if save is not None else None
    # First: a missing GUI is said before the model loads.
    window = Window(config.COLLECT_WINDOW_NAME, fix="teach from a folder with --own, or from a browser with --serve")
    try:
        teaching = open_teaching(model, source_options, options, roi, save, log)
    except BaseException:
        window.close()
        raise
    run = run_teaching(teaching.source, TaughtByKeys(teaching, roi, window))
    return write_taught(teaching, run, out, save, options.seed)
