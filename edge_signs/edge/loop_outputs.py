"""Frame-loop outputs (loop.FrameOutput) for what people and other programs see.

- ``LiveWindow``: the overlay in a window; q or Esc quits, s saves a snapshot.
- ``BrowserOutput``: --serve's picture (only when a viewer is due one) and status (serve.LiveServer).
- ``EventsOutput``: each frame's sign into the events hub (events.py); collect names the sign being saved.
- ``CallbackOutput``: run_live's ``on_frame`` hook.

The files (--json, --record) are outputs.FileOutputs; collect's crops and keys are in collect.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from edge_signs.edge.display import Picture, Window, save_png
from edge_signs.edge.events import EventHub
from edge_signs.edge.loop import FrameOutput, LoopFrame
from edge_signs.edge.results import FrameResult
from edge_signs.edge.serve import LiveServer
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log

QUIT_KEYS = (ord("q"), 27)  # q, Esc


class LiveWindow(FrameOutput):
    """live's preview window: the overlay; q or Esc quits, s saves the picture as a PNG in ``snapshot_dir``."""

    name = "window"

    def __init__(self, picture: Picture, snapshot_dir: Path, log: Log):
        self.window = Window()
        self.picture, self.snapshot_dir, self.log = picture, Path(snapshot_dir), log

    def on_frame(self, frame: LoopFrame) -> Optional[str]:
        img = self.picture.of(frame)
        key = self.window.show(img) & 0xFF
        if key in QUIT_KEYS:
            return "quit from the window"
        if key == ord("s"):
            name = f"snapshot_{time.strftime('%Y%m%d-%H%M%S')}_{frame.index:06d}.png"
            try:
                self.log(f"saved {save_png(img, self.snapshot_dir / name)}")
            except (EdgeSignsError, OSError) as exc:  # a lost snapshot must not end the run or its recording
                self.log(f"warning: snapshot not saved ({exc})")
        return "quit from the window" if self.window.closed() else None

    def close(self, completed: bool) -> None:
        self.window.close()


class BrowserOutput(FrameOutput):
    """--serve: a picture when a viewer watches and the encoder is due (SERVE_MAX_FPS), and every frame's status."""

    name = "--serve"

    def __init__(self, server: LiveServer, picture: Picture, events: EventHub, labels: Sequence[str]):
        self.server, self.picture, self.events, self.labels = server, picture, events, labels

    def on_frame(self, frame: LoopFrame) -> None:
        if self.server.wants_frame():
            self.server.publish_frame(self.picture.of(frame))  # a copy for the encoder thread, or nothing: never waits
        status = frame.result.as_dict(self.labels, frame.source.has_truth)
        status["fps"] = round(frame.fps, 2)
        status["events"] = self.events.recent  # after EventsOutput: this frame's events are in it
        self.server.publish_status(status)


class EventsOutput(FrameOutput):
    """Each frame's sign into the events hub; ``label_of(frame)`` names it where no classifier did (collect)."""

    name = "events"

    def __init__(self, hub: EventHub, label_of: Optional[Callable[[LoopFrame], Optional[str]]] = None):
        self.hub, self.label_of = hub, label_of
        self._result = FrameResult(smoothed_confidence=1.0)  # a person's label is certain

    def on_frame(self, frame: LoopFrame) -> None:
        if self.label_of is None:
            self.hub.on_frame(frame.result)
            return
        r = self._result
        r.frame, r.source_time, r.label = frame.index, frame.time, self.label_of(frame)
        self.hub.on_frame(r)

    def close(self, completed: bool) -> None:
        self.hub.close(keep=completed)  # a sign still held is released; each output waits a bounded time


class CallbackOutput(FrameOutput):
    """Calls ``fn`` with every frame's (reused) FrameResult: a hook for GPIO, MQTT or measurements."""

    name = "on_frame"

    def __init__(self, fn: Callable[[FrameResult], None]):
        self.fn = fn

    def on_frame(self, frame: LoopFrame) -> None:
        self.fn(frame.result)
