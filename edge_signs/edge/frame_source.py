"""What every frame source is: an iterator of ``(frame, truth)`` pairs that owns its retries.

A frame is a BGR/BGRA/gray array in OpenCV's layout and truth the true class index,
or None. A source says

- "no frame now" by returning None from ``read()`` (a dropped or late camera frame):
  iteration retries, after a short sleep for live sources, and gives up after
  ``config.READ_RETRIES`` failures in a row;
- "no frames left" by raising ``EndOfStream`` from ``read()`` (the test set ran out).

Iteration then ends, and ``ended`` says why; a source that never delivered a frame
raises a one-line ``EdgeSignsError`` instead (a setup problem, not an ending).

A read is two halves, as in OpenCV: ``grab()`` takes the next frame from the device
(cheap: a driver buffer changes hands) and ``retrieve()`` decodes it (colour
conversion, MJPG decoding). The capture thread grabs every frame, so the device's
queue never fills with stale ones, and retrieves only the frames the model will get.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator, Optional

import numpy as np

from edge_signs import config
from edge_signs.errors import EdgeSignsError

Frame = tuple[Optional[np.ndarray], Optional[int]]  # (frame in OpenCV's layout or None, true class index or None)


def failure_message(name: str, exc: BaseException) -> str:
    """One line for a source whose read raised: its name, the exception's type and first line."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{name} failed ({type(exc).__name__}{': ' + first if first else ''})"


class EndOfStream(Exception):
    """Raised by ``read()``: no frames left (the test set ran out). Distinct from a failed read."""


class FrameSource:
    """The base of every source, and everything a frame loop may ask of one.

    Subclasses set the attributes that differ and implement ``read`` (or ``grab`` and
    ``retrieve``) and ``close``; the defaults describe a plain source that drops
    nothing, hands over no preprocessed input and has no separate picture for people.
    """

    name: str = "source"  # for messages: "camera 0", "video clip.avi", ...
    live: bool = False  # a real-time device or stream: failed reads are retried after a short sleep
    fps: float = config.RECORD_FPS  # frames per second, for recording and the source's clock
    has_truth: bool = False  # whether frames can come with true labels
    independent_frames: bool = False  # consecutive frames are unrelated scenes (no smoothing across them)
    end_reason: str = "source ended"  # said when reads keep failing after some frames came
    no_frames_message: str = "the source delivered no frames"  # said when not one frame came: a setup problem
    ended: str = ""  # why iteration stopped; empty while frames come
    dropped: Optional[int] = None  # frames the source delivered that the loop never took; None: it never drops one
    prepares: bool = False  # each frame read also leaves the model's input in ``prepared`` (made in a thread)
    prepared: Optional[np.ndarray] = None  # that input, for the frame ``read()`` returned last

    def read(self) -> Optional[Frame]:
        """One frame; None for "no frame now"; raises EndOfStream for "no frames left"."""
        raise NotImplementedError

    def grab(self) -> bool:
        """Take the next frame without decoding it; False for "no frame now" (EndOfStream as ``read``).

        Sources whose device separates the halves (``GrabRetrieve``) make a grab cheap;
        for the others it is the whole read, and ``retrieve`` hands that frame over.
        """
        self._grabbed = self.read()
        return self._grabbed is not None

    def retrieve(self) -> Optional[Frame]:
        """The frame the last ``grab()`` took, decoded; None when it cannot be."""
        return self._grabbed

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def display_frame(self) -> Optional[np.ndarray]:
        """A larger picture of the frame ``read()`` returned last, for people (the Pi camera's main stream); None: the frame itself."""
        return None

    def unscored(self) -> Optional[str]:
        """A warning when ground truth was promised for frames the source never delivered."""
        return None

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def frames(self, wanted: Optional[Callable[[], bool]] = None) -> Iterator[Optional[Frame]]:
        """The source's frames, with its retries (the module's docstring).

        ``wanted`` is asked after every grab whether the frame will be used: one it
        declines is never retrieved (decoded) and comes out as None -- the camera
        worked, nobody will look at the frame. Without ``wanted`` every frame comes.
        """
        self.ended = ""
        failures = delivered = 0
        while True:
            skipped = False
            try:
                if not self.grab():
                    frame = None
                elif wanted is None or wanted():
                    frame = self.retrieve()
                else:
                    frame, skipped = None, True  # grabbed, never decoded
            except EndOfStream:
                self.ended = self.end_reason
                return
            except EdgeSignsError:
                raise  # already one line that says what to do
            except Exception as exc:  # noqa: BLE001 -- a driver that raises (device unplugged): an ending, never a traceback
                if delivered == 0:
                    raise EdgeSignsError(failure_message(self.name, exc)) from None
                self.ended = failure_message(self.name, exc)
                return
            if frame is None and not skipped:
                failures += 1
                if failures > config.READ_RETRIES:
                    if delivered == 0:
                        raise EdgeSignsError(self.no_frames_message)
                    self.ended = self.end_reason
                    return
                if self.live:
                    time.sleep(config.READ_RETRY_SLEEP_S)
                continue
            failures = 0
            delivered += 1
            yield frame

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class GrabRetrieve(FrameSource):
    """A source whose device separates taking a frame from decoding it (cv2.VideoCapture's grab and retrieve)."""

    def read(self) -> Optional[Frame]:
        return self.retrieve() if self.grab() else None
