"""Events: a sign held long enough to act on, for other programs.

A frame's smoothed prediction flickers while a hand moves from one sign to the
next; a program that switches a light wants "3 was shown", once. One definition,
used by every output (``--events`` JSON lines, ``--exec``, ``--mqtt``, the summary
and ``--serve``'s page):

- a sign is *held* when the smoothed prediction has named it (above the threshold)
  on every frame for ``hold`` seconds of source time: one ``held`` event;
- it is *released* on the first frame that names another sign or no sign, or when
  the run ends: one ``released`` event with the same ``id`` and the whole duration.

A sign shown for less than ``hold`` (a transition, a flicker) makes no event at all.
Times are the source's (``FrameClock``): frame number / fps for video files and the
test set, so a file gives the same events on every machine and at any speed, and
the wall clock for cameras and streams.

    frame loop -> EventHub.on_frame(result) -> EventTracker -> SignEvent -> each output's on_event

The event and an output's interface are event_types.py's (the outputs import only those).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

from edge_signs import config
from edge_signs.edge import ranges
from edge_signs.edge.event_types import HELD, RELEASED, EventOutput, SignEvent
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr

__all__ = ["HELD", "RELEASED", "EventHub", "EventOptions", "EventOutput", "EventTracker", "FrameClock", "SignEvent", "open_event_hub"]
_EPS = 1e-9  # frame times are sums of 1/fps: 10 frames of 1/10 s must count as a full second

class EventTracker:
    """Turns per-frame signs into SignEvents (the module's docstring); no I/O, no clock of its own."""

    def __init__(self, hold_s: float = config.EVENT_HOLD_S):
        ranges.SECONDS.check("--hold", hold_s)
        self.hold_s = hold_s
        self.count = 0  # held events so far
        self._sign: Optional[str] = None  # the sign of the current run of frames (None: no sign)
        self._start = 0.0
        self._conf_sum = 0.0
        self._frames = 0
        self._held = False
        self._last_t = 0.0
        self._last_frame = -1

    @property
    def held(self) -> Optional[str]:
        """The sign held now (an event was said for it and it has not been released), or None."""
        return self._sign if self._held else None

    def update(self, t: float, sign: Optional[str], confidence: float, frame: int) -> Sequence[SignEvent]:
        """One frame's smoothed sign (None: below the threshold) at source time ``t``: the events it makes (0 to 2)."""
        events: Sequence[SignEvent] = ()
        if sign != self._sign:
            if self._held:
                events = (self._event(RELEASED, t, frame),)
            self._sign, self._start, self._conf_sum, self._frames, self._held = sign, t, 0.0, 0, False
        self._last_t, self._last_frame = t, frame
        if sign is None:
            return events
        self._conf_sum += confidence if math.isfinite(confidence) else 0.0
        self._frames += 1
        if not self._held and t - self._start + _EPS >= self.hold_s:
            self._held = True
            self.count += 1
            events = (*events, self._event(HELD, t, frame))
        return events

    def finish(self, t: Optional[float] = None) -> Sequence[SignEvent]:
        """The run ended: the release of a sign still held (at ``t``, default the last frame's time)."""
        if not self._held:
            return ()
        event = self._event(RELEASED, self._last_t if t is None else t, self._last_frame)
        self._sign, self._held = None, False
        return (event,)

    def _event(self, kind: str, t: float, frame: int) -> SignEvent:
        return SignEvent(kind, self.count, self._sign, self._conf_sum / max(1, self._frames), self._start,
                         max(0.0, t - self._start), frame)


class FrameClock:
    """The source's time of a frame: frame number / fps for files and the test set, the wall clock for live sources."""

    def __init__(self, live: bool, fps: float):
        self.live = live
        self.fps = fps if fps and fps > 0 else config.RECORD_FPS
        self._offset = time.time() - time.monotonic()  # Unix time that a clock change (NTP) cannot make jump mid-run

    def __call__(self, frame: int) -> float:
        return time.monotonic() + self._offset if self.live else frame / self.fps


# -- what a run is told, and the outputs ------------------------------------------------------------------


@dataclass(frozen=True)
class EventOptions:
    """The event options `live` and `collect` share: the hold and where events go."""

    hold: float = config.EVENT_HOLD_S
    path: Optional[Path] = None  # --events: JSON lines, one object per event
    command: Optional[str] = None  # --exec: a shell command run for every held sign
    mqtt: Optional[str] = None  # --mqtt mqtt[s]://[user:pass@]host[:port]/topic
    ha_discovery: bool = False  # --ha-discovery: announce the sign as a Home Assistant sensor

    def check(self, inputs: Iterable = ()) -> None:
        """Every mistake as one line, before a camera opens: the hold, the file, the command, the broker URL, paho."""
        # The output modules are imported where they are used: paho and subprocess only when asked for.
        EventTracker(self.hold)
        if self.path is not None:
            from edge_signs.edge.event_outputs import check_events_path

            check_events_path(self.path, inputs)
        if self.command is not None and not self.command.strip():
            raise EdgeSignsError("--exec: the command is empty")
        if self.ha_discovery and self.mqtt is None:
            raise EdgeSignsError("--ha-discovery announces the sign over MQTT; give --mqtt mqtt://HOST/TOPIC too")
        if self.mqtt is not None:
            from edge_signs.edge.mqtt import check_mqtt

            check_mqtt(self.mqtt)


class EventHub(EventOutput):
    """The loop's one events output: the tracker, the outputs it feeds, the last events and the counts.

    An output that raises is named, closed without publishing, and left out from
    then on; the others and the loop go on.
    """

    name = "events"

    def __init__(self, hold_s: float = config.EVENT_HOLD_S, outputs: Sequence[EventOutput] = (), *, log: Log = log_stderr):
        self.tracker = EventTracker(hold_s)
        self.outputs = list(outputs)
        self.log = log
        self.recent: tuple[dict, ...] = ()  # the last config.EVENTS_RECENT events, newest first (swapped whole: threads read it)
        self.by_sign: dict[str, int] = {}
        self.failed: list[str] = []
        self._closed = False

    @property
    def count(self) -> int:
        """Held signs so far."""
        return self.tracker.count

    def on_frame(self, result) -> None:
        for event in self.tracker.update(result.source_time, result.label, result.smoothed_confidence, result.frame):
            self.on_event(event)
        for output in self.outputs:
            self._call(output, output.on_frame, result)

    def on_event(self, event: SignEvent) -> None:
        if event.event == HELD:
            self.by_sign[event.sign] = self.by_sign.get(event.sign, 0) + 1
        self.recent = (event.as_dict(), *self.recent[: config.EVENTS_RECENT - 1])
        for output in list(self.outputs):
            self._call(output, output.on_event, event)

    def _call(self, output: EventOutput, method, arg) -> None:
        try:
            method(arg)
        except Exception as exc:  # noqa: BLE001 -- one output failing (disk full, a bug) never ends the run or the others
            first = (str(exc).strip().splitlines() or [""])[0]
            message = f"{output.name} failed ({type(exc).__name__}{': ' + first if first else ''}); no more events go there"
            self.failed.append(message)
            self.log(f"warning: {message}")
            self.outputs.remove(output)
            output.close(keep=False)

    def close(self, keep: bool = True) -> None:
        """Release a sign still held, then close every output (each waits a bounded time for its thread)."""
        if self._closed:
            return
        self._closed = True
        for event in self.tracker.finish():
            self.on_event(event)
        for output in self.outputs:
            try:
                output.close(keep=keep)
            except Exception as exc:  # noqa: BLE001 -- said, and the other outputs still close
                self.failed.append(f"{output.name} failed to close ({type(exc).__name__}: {exc})")

    def stats(self) -> dict:
        return {"hold_s": self.tracker.hold_s, "events": self.count, "by_sign": dict(sorted(self.by_sign.items())),
                "outputs": {o.name: o.stats() for o in self.outputs}, "failed": list(self.failed)}

    def lines(self) -> list[str]:
        per = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_sign.items())) or "none"
        lines = [f"events: {self.count} held signs (held {self.tracker.hold_s:g} s or longer): {per}"]
        for output in self.outputs:
            lines += output.lines()
        return lines

    def warnings(self) -> list[str]:
        return [*self.failed, *(w for o in self.outputs for w in o.warnings())]


def open_event_hub(options: EventOptions, *, log: Log = log_stderr) -> EventHub:
    """The hub with the outputs the options name (checked already: ``EventOptions.check``), started."""
    outputs: list[EventOutput] = []
    try:
        if options.path is not None:
            from edge_signs.edge.event_outputs import JsonLinesOutput

            outputs.append(JsonLinesOutput(options.path))
        if options.command is not None:
            from edge_signs.edge.event_outputs import ExecOutput

            outputs.append(ExecOutput(options.command, log=log))
        if options.mqtt is not None:
            from edge_signs.edge.mqtt import MqttOutput

            outputs.append(MqttOutput(options.mqtt, ha_discovery=options.ha_discovery, log=log))
    except BaseException:
        for output in outputs:
            output.close(keep=False)
        raise
    return EventHub(options.hold, outputs, log=log)
