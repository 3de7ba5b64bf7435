"""What an event is, and what an event output does: all the output modules (event_outputs.py, mqtt.py) need of events.py."""

from __future__ import annotations

import time
from dataclasses import dataclass

HELD, RELEASED = "held", "released"


@dataclass(frozen=True)
class SignEvent:
    """A sign held (``event == "held"``) or let go (``"released"``); both halves of one hold share ``id``."""

    event: str  # HELD or RELEASED
    id: int  # 1, 2, ... in this run
    sign: str
    confidence: float  # mean smoothed confidence over the frames held so far
    start: float  # source time of the hold's first frame, seconds (video position, or Unix time for cameras)
    held_s: float  # HELD: how long it had been held when it became an event (>= hold); RELEASED: the whole hold
    frame: int  # the frame the event happened on (0-based, this run's count)

    def as_dict(self) -> dict:
        return {"event": self.event, "id": self.id, "sign": self.sign, "confidence": round(self.confidence, 4),
                "start": round(self.start, 3), "held_s": round(self.held_s, 3), "frame": self.frame,
                "time": round(time.time(), 3)}  # wall clock: when it was said, for logs beside other programs'


class EventOutput:
    """One destination of a frame loop's results. The loop calls ``on_frame`` every frame, ``on_event``
    for every event, ``close`` once; ``lines`` says how it went (the summary). Each method returns at
    once: an output that talks to something slow (a command, a broker) hands the work to its own thread."""

    name = "output"  # its option, for messages: "--events events.jsonl"

    def on_frame(self, result) -> None:
        """A frame's result (live.FrameResult); most event outputs need only the events."""

    def on_event(self, event: SignEvent) -> None:
        """One SignEvent."""

    def close(self, keep: bool = True) -> None:
        """The run ended (``keep``: it ended well, so a file may replace an older one)."""

    def stats(self) -> dict:
        return {}

    def lines(self) -> list[str]:
        return []

    def warnings(self) -> list[str]:
        return []
