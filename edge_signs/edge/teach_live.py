"""Teaching from a frame loop: each frame shown as a sign adds its features, the head is refitted at once.

``Teacher`` is the part any loop uses (a camera with keys 0-5, a page's buttons, a
labelled video): ``add`` stores a frame's features under its sign and refits the
head (once every sign has a frame; the original head is the prior until then and
after), ``probs`` is the prediction the loop shows, from the refitted head as soon
as there is one, and ``write`` writes the file when every sign has enough frames.

``Taught`` is the frame-loop output (loop.py) both ways of teaching build on: each
frame's features and the prediction shown. ``teach_video`` runs the loop headless
on a video with a labels CSV (as `live --labels` reads it): each labelled frame
taken as if its key were pressed, every frame classified by the head as it is at
that moment, so the run shows it learning. A run stopped by Ctrl-C or SIGTERM is
abandoned: no file is written.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.edge.head import FitOptions, SoftmaxHead, check_frames, fit_head
from edge_signs.edge.head_file import read_site, snap, write_head_file
from edge_signs.edge.loop import INTERRUPTED, FrameLoop, FrameOutput, LoopFrame, LoopRun
from edge_signs.edge.runtime import Classifier
from edge_signs.edge.sources import FrameSource, SourceOptions, open_source
from edge_signs.edge.teach import TeachOptions, check_teach_paths, signs_features
from edge_signs.log import Log, log_stderr
from edge_signs.preprocess import Roi, frame_to_rgb


class Teacher:
    """The frames taught so far, per sign, and the head fitted on them."""

    def __init__(self, clf: Classifier, model: Path, fit: FitOptions = FitOptions(), signs: tuple[np.ndarray, np.ndarray] | None = None):
        self.clf, self.model, self.fit = clf, Path(model), fit
        self.site = read_site(model)
        self.original = self.site.original()
        self.signs = signs
        self._features: list[np.ndarray] = []
        self._labels: list[int] = []
        self.head: SoftmaxHead | None = None
        self.fit_seconds = 0.0

    def counts(self) -> list[int]:
        return np.bincount(np.asarray(self._labels, np.int64), minlength=config.NUM_CLASSES).astype(int).tolist()

    def add(self, features: np.ndarray, label: int) -> None:
        """One frame's features under ``label``; the head is refitted when every sign has at least one frame."""
        self._features.append(np.asarray(features, np.float32).reshape(-1))
        self._labels.append(int(label))
        if min(self.counts()) >= 1:
            t0 = time.perf_counter()
            self.head = self._fit(dataclasses.replace(self.fit, min_per_sign=1))
            self.fit_seconds = time.perf_counter() - t0

    def _fit(self, options: FitOptions) -> SoftmaxHead:
        fitted = fit_head(np.stack(self._features), np.asarray(self._labels), original=self.original, signs=self.signs,
                          options=options, fit_bias=self.site.head.bias is not None)
        return snap(self.site, fitted)

    def probs(self, features: np.ndarray, model_probs: np.ndarray) -> np.ndarray:
        """What the loop shows: the refitted head's probabilities, or the model's own before there is one."""
        return model_probs if self.head is None else self.head.probs(features[np.newaxis])[0]

    def write(self, out: Path, record: dict) -> dict:
        """The personal file, fitted on every frame taught; refused in one line below ``fit.min_per_sign`` frames of a sign."""
        check_frames(np.asarray(self._labels, np.int64), self.fit.min_per_sign)
        head = self._fit(self.fit)
        feats = np.stack(self._features)
        fitted_on = feats if self.signs is None else np.concatenate([feats, self.signs[0]])
        return write_head_file(self.model, head, out, fitted_on, {**record, "frames": self.counts(), "fit": dataclasses.asdict(self.fit)})


@dataclass
class VideoTeachResult:
    frames: int
    taught: list[int]  # frames added per sign
    scored: int  # labelled frames classified before they were added
    correct: int
    correct_last_half: int
    scored_last_half: int
    fit_ms: float  # the last refit
    out: Path

    def text(self) -> str:
        acc = self.correct / self.scored if self.scored else float("nan")
        late = self.correct_last_half / self.scored_last_half if self.scored_last_half else float("nan")
        return (f"{self.frames} frames, taught {sum(self.taught)} ({', '.join(f'{config.LABELS[k]}: {n}' for k, n in enumerate(self.taught))}); "
                f"each labelled frame classified before it was taught: accuracy {acc:.3f}, {late:.3f} in the second half; "
                f"last refit {self.fit_ms:.0f} ms\nwrote {self.out}\n")


class Taught(FrameOutput):
    """The base of teaching outputs: the features of the frame in hand, and what the head as it is now makes of it."""

    name = "teach"

    def __init__(self, clf: Classifier, teacher: Teacher, roi: Roi):
        self.clf, self.teacher, self.roi = clf, teacher, roi

    def classify(self, f: LoopFrame) -> tuple[np.ndarray, np.ndarray]:
        """(features, the probabilities shown) of the frame in hand."""
        source = f.source
        self.clf.set_input(source.prepared if source.prepares else frame_to_rgb(f.frame, self.roi))
        self.clf.invoke()
        feats = self.clf.output_features()
        return feats, self.teacher.probs(feats, self.clf.output_probs())


class TaughtFromLabels(Taught):
    """Every ``every``-th labelled frame is taught after it is classified; ``results`` says which were right before."""

    def __init__(self, clf: Classifier, teacher: Teacher, roi: Roi, every: int = 1):
        super().__init__(clf, teacher, roi)
        self.every = every
        self.results: list[bool] = []  # per labelled frame: the head's prediction was right, before it was taught

    def on_frame(self, f: LoopFrame) -> None:
        feats, shown = self.classify(f)
        if f.truth is None:
            return
        right = int(np.argmax(shown)) == f.truth
        if len(self.results) % self.every == 0:
            self.teacher.add(feats, f.truth)
        self.results.append(right)


def run_teaching(source: FrameSource, output: Taught) -> LoopRun:
    """The frame loop with one teaching output; a run a signal stopped raises KeyboardInterrupt (abandoned: nothing written)."""
    try:
        run = FrameLoop(source, [output]).run()
    finally:
        source.close()
    if run.reason in (INTERRUPTED, "terminated (SIGTERM)"):
        raise KeyboardInterrupt
    return run


def teach_video(model: str | Path, video: str, labels_csv: Path, out: str | Path, options: TeachOptions = TeachOptions(), *,
                roi: Roi = Roi(), every: int = 1, log: Log = log_stderr) -> VideoTeachResult:
    """Teach from a labelled video: every ``every``-th labelled frame is taught after it is classified (see the module's notes)."""
    model = Path(model)
    out = check_teach_paths(model, out)
    source = open_source(SourceOptions(video=video, labels_csv=labels_csv), prepare=functools.partial(frame_to_rgb, roi=roi),
                         keep_frames=False, log=log)
    try:
        clf = Classifier(model, threads=options.threads, features=True)
        teacher = Teacher(clf, model, options.fit, signs_features(clf, options, log)[0])
    except BaseException:
        source.close()
        raise
    taught = TaughtFromLabels(clf, teacher, roi, every)
    run = run_teaching(source, taught)
    teacher.write(out, {"data": str(Path(video).resolve()), "labels": str(labels_csv), "seed": options.seed})
    results = taught.results
    half = results[len(results) // 2:]
    return VideoTeachResult(run.frames, teacher.counts(), len(results), sum(results), sum(half), len(half), teacher.fit_seconds * 1e3, out)
