"""live's stage of the frame loop: a frame's prediction, smoothed over the last frames, and the run's score.

    frame -> frame_to_rgb (here, or already in the capture thread) -> predict_rgb -> Smoother -> threshold -> FrameResult

Every frame goes through ``preprocess.frame_to_rgb`` and ``Classifier.predict_rgb``:
the preprocessing the model was evaluated with, so a test-set replay scores exactly
what ``evaluate`` scores.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from edge_signs.edge.loop import LoopFrame, RollingStats
from edge_signs.edge.results import FrameResult
from edge_signs.edge.runtime import Classifier
from edge_signs.preprocess import Roi


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


class Classify:
    """The stage: predicts each frame, smooths, thresholds, and keeps the score (frames with known truth)."""

    def __init__(self, clf: Classifier, roi: Roi, smoothing: int, threshold: float):
        self.clf, self.roi, self.threshold = clf, roi, threshold
        self.labels = clf.labels
        n = len(self.labels)
        self.smoother = Smoother(smoothing, n)
        self.inference = RollingStats()
        self.confusion = np.zeros((n, n), np.int64)  # rows true, columns raw prediction
        self.result = FrameResult()
        self.scored = self.correct = self.smoothed_correct = self.no_sign = self.nonfinite = 0

    def __call__(self, f: LoopFrame) -> float:
        source = f.source
        if source.prepares:
            pred = self.clf.predict_rgb(source.prepared)  # frame_to_rgb(frame, roi), done in the capture thread
        else:
            pred = self.clf.predict_frame(f.frame, self.roi)
        if source.independent_frames:
            self.smoother.reset()
        self.nonfinite += not np.isfinite(pred.probs).all()
        mean = self.smoother.update(pred.probs)
        k = int(mean.argmax())
        r = f.result = self.result
        r.frame, r.truth, r.source_time = f.index, f.truth, f.time
        r.raw_index, r.raw_label, r.confidence, r.inference_ms = pred.index, pred.label, pred.confidence, pred.inference_ms
        r.smoothed_confidence = float(mean[k])
        confident = r.smoothed_confidence >= self.threshold
        r.index = k if confident else None
        r.label = self.labels[k] if confident else None
        self.no_sign += not confident
        if f.truth is not None:
            self.scored += 1
            self.correct += pred.index == f.truth
            self.smoothed_correct += r.index == f.truth
            self.confusion[f.truth, pred.index] += 1
        self.inference.add(pred.inference_ms)
        return pred.inference_ms

    def accuracy(self) -> Optional[float]:
        return self.correct / self.scored if self.scored else None

    def smoothed_accuracy(self) -> Optional[float]:
        return self.smoothed_correct / self.scored if self.scored else None

    def nonfinite_warning(self, frames: int) -> Optional[str]:
        if not self.nonfinite:
            return None
        return (f"{self.nonfinite} of {frames} frames gave NaN or infinite probabilities (labelled {self.labels[0]} by "
                f"argmax): the model is broken; re-run 'edge-signs quantize' and check it with 'edge-signs evaluate'")
