"""What a live run writes as it goes: --json lines and the --record video, each on its own (one frame-loop output).

Each output goes into a temporary file beside its target and is published only when
complete (``artifacts.PendingFile``); a FIFO or a device (/dev/stdout, a pipe, /dev/null)
named by --json is written directly, never replaced by a regular file. An output that
fails (its disk fills, its destination cannot be replaced, its reader goes away) fails
alone: the loop ends, the other outputs are still published, and the error names the
failed one's file. Every writer thread is joined whatever happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import cv2

from edge_signs.artifacts import PendingFile, special_kind
from edge_signs.edge.display import Picture, Recorder
from edge_signs.edge.loop import FrameOutput, LoopFrame
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log

OUTPUT_ERRORS = (OSError, EdgeSignsError, cv2.error)


class JsonLines:
    """--json: one JSON object per frame, line-buffered (tail the temporary file while the camera runs)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.lines = 0
        self._pending = None if special_kind(self.path) else PendingFile(self.path)
        target = self.path if self._pending is None else self._pending.tmp
        self._file = open(target, "w", buffering=1, encoding="utf-8")

    @property
    def streamed(self) -> bool:
        return self._pending is None

    def write(self, line: str) -> None:
        self._file.write(line + "\n")
        self.lines += 1

    def close(self, keep: bool) -> None:
        try:
            self._file.close()  # the last flush: a full disk may only say so now
        except OSError:
            keep = False
            raise
        finally:
            if self._pending is not None:
                self._pending.close(keep=keep)


class OutputError(EdgeSignsError):
    """Outputs that failed during a run; ``summary`` is the run's, for the CLI to print before the error."""

    def __init__(self, message: str, summary):
        super().__init__(message)
        self.summary = summary


class FileOutputs(FrameOutput):
    """The --json and --record outputs of one run: written frame by frame, each failing alone.

    A failed one ends the loop ("writing --json failed"); ``errors`` says, after ``close``, what failed.
    """

    name = "files"

    def __init__(self, json_path: Optional[Path], record: Optional[Path], fps: float, log: Log, *,
                 picture: Optional[Picture] = None, labels: Sequence[str] = ()):
        self.failed: dict[str, str] = {}  # option -> one-line message
        self.picture, self.labels = picture, labels
        self.json = JsonLines(json_path) if json_path is not None else None
        try:
            self.recorder = Recorder(record, fps) if record is not None else None
        except BaseException:
            self.close(completed=False)
            raise
        for kept in self.recorder.recovered if self.recorder is not None else ():
            log(f"kept {kept}: a complete recording a stopped run had left unpublished")

    def on_frame(self, frame: LoopFrame) -> Optional[str]:
        if self.recorder is not None:
            self._attempt("--record", self.recorder, self.picture.of(frame))
        if self.json is not None:
            self._attempt("--json", self.json, frame.result.json_line(self.labels, frame.source.has_truth))
        return self.stop_reason()

    @property
    def errors(self) -> list[str]:
        return list(self.failed.values())

    def _sinks(self):
        return [(option, sink) for option, sink in (("--json", self.json), ("--record", self.recorder)) if sink is not None]

    def _attempt(self, option: str, sink, item) -> None:
        if option in self.failed:
            return
        try:
            sink.write(item)
        except OUTPUT_ERRORS as exc:
            self.failed[option] = _message(option, sink, exc)

    def stop_reason(self) -> Optional[str]:
        return f"writing {' and '.join(self.failed)} failed" if self.failed else None

    def close(self, completed: bool) -> None:
        """Finish every output (each in its own try); publish the complete ones when the run ``completed``."""
        for option, sink in self._sinks():
            try:
                sink.close(keep=completed and option not in self.failed)
            except OUTPUT_ERRORS as exc:
                self.failed.setdefault(option, _message(option, sink, exc))

    def written(self) -> list[str]:
        """What was published, for the log."""
        done = []
        if self.recorder is not None and self.recorder.frames and "--record" not in self.failed:
            done.append(f"{self.recorder.path} ({self.recorder.frames} frames)")
        if self.json is not None and "--json" not in self.failed:
            done.append(f"{self.json.path} ({self.json.lines} lines)")
        return done


def _message(option: str, sink, exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, EdgeSignsError) else (getattr(exc, "strerror", None) or str(exc))
    if text.startswith(f"{option} "):
        return text
    if isinstance(exc, OSError) and not getattr(sink, "streamed", False):
        text += f"; not published (an existing {sink.path.name} is untouched)"
    return f"{option} {sink.path}: {text}"
