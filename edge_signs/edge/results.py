"""What a live run yields: each frame's result, and the run's summary.

Below both the loop (loop.py, live.py) and what people see (display.py), so neither imports the other for these.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from edge_signs.artifacts import dumps, finite_or_none
from edge_signs.plots import confusion_matrix_text


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
