"""Where frames come from: the one factory, ``open_source``, and the options it reads.

    SourceOptions -> open_source -> CameraSource / PiCameraSource / VideoSource / TestsetSource (devices.py)
                                    behind LatestFrame (cameras, streams) or ReadAhead (video files) (capture.py)

Every source is a ``FrameSource`` (frame_source.py): the reads, retries and endings,
and everything a frame loop may ask of one. The names a caller needs are all here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from edge_signs import config
from edge_signs.data import resolve_data
from edge_signs.edge import ranges
from edge_signs.edge.capture import LatestFrame, Prepare, PrepareSchedule, ReadAhead, RunningTime
from edge_signs.edge.devices import PICAMERA_HINT, CameraSource, PiCameraSource, TestsetSource, VideoSource
from edge_signs.edge.frame_source import EndOfStream, Frame, FrameSource, GrabRetrieve, failure_message
from edge_signs.edge.truth import read_label_ranges
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr

__all__ = [
    "CameraSource", "EndOfStream", "Frame", "FrameSource", "GrabRetrieve", "LatestFrame", "PICAMERA_HINT", "PiCameraSource",
    "Prepare", "PrepareSchedule", "ReadAhead", "RunningTime", "SourceOptions", "TestsetSource", "VideoSource",
    "failure_message", "open_source",
]

KINDS = ("camera", "picamera", "video", "testset")


@dataclass(frozen=True)
class SourceOptions:
    """Which source, and how to read it. Name at most one source; none means ``--camera 0``. Checked when made."""

    camera: Optional[int] = None  # OpenCV camera index (USB webcam)
    picamera: bool = False  # Pi Camera Module through picamera2
    video: Optional[str] = None  # file, URL or GStreamer pipeline string
    testset: bool = False  # SIGNS test images as frames, with their labels
    labels_csv: Optional[Path] = None  # --video ground truth: start_frame,end_frame,label
    width: int = config.CAMERA_WIDTH
    height: int = config.CAMERA_HEIGHT
    fps: float = config.CAMERA_FPS
    loop: bool = False  # start --testset / a --video file again at its end (soak tests)
    data: Optional[Path] = None  # SIGNS folder for --testset (default: as resolve_data)
    capture_thread: bool = True  # read cameras and streams, and decode video files, in a background thread

    def __post_init__(self):
        named = [k for k, on in zip(KINDS, (self.camera is not None, self.picamera, self.video is not None, self.testset)) if on]
        if len(named) > 1:
            raise EdgeSignsError(f"name one source, not {' and '.join('--' + n for n in named)}")
        if self.labels_csv is not None and self.kind != "video":
            raise EdgeSignsError("--labels scores a --video; --testset brings its own labels and cameras have none")
        if self.loop and self.kind not in ("testset", "video"):
            raise EdgeSignsError("--loop replays --testset or a --video file; a camera does not end")
        ranges.INDEX.check("--camera", self.camera)
        ranges.COUNT.check("--width", self.width)
        ranges.COUNT.check("--height", self.height)
        ranges.RATE.check("--fps", self.fps)

    @property
    def kind(self) -> str:
        """'camera', 'picamera', 'video' or 'testset'."""
        if self.picamera:
            return "picamera"
        if self.video is not None:
            return "video"
        return "testset" if self.testset else "camera"


def open_source(options: SourceOptions, *, labels: Sequence[str] = config.LABELS, prepare: Optional[Prepare] = None,
                keep_frames: bool = True, log: Log = log_stderr) -> FrameSource:
    """The source the options name, opened: a one-line error when it cannot be.

    ``labels`` are the model's, for a --labels CSV. With the capture thread, cameras
    and streams are read by ``LatestFrame`` and video files decoded ahead by
    ``ReadAhead``; ``prepare`` (the model's preprocessing) then runs in that thread
    and ``keep_frames=False`` (only with ``prepare``: nobody looks at the frames)
    spares copying full frames, which then come as ``(None, truth)``. The Pi camera
    gives people (``keep_frames``) its full-size stream and the model a small one.
    """
    kind = options.kind
    if kind == "testset":
        signs = resolve_data(options.data, log=log)
        return TestsetSource(signs.test.x, signs.test.y, loop=options.loop)
    if kind == "video":
        csv = read_label_ranges(options.labels_csv, labels) if options.labels_csv is not None else None
        source = VideoSource(options.video, csv, loop=options.loop)
    elif kind == "picamera":
        source = PiCameraSource(options.width, options.height, options.fps, display=keep_frames)
    else:
        index = config.CAMERA_INDEX if options.camera is None else options.camera
        source = CameraSource(index, options.width, options.height, options.fps)
    if not options.capture_thread:
        return source
    try:
        threaded = LatestFrame if source.live else ReadAhead  # a file waits for us: every frame, decoded ahead
        return threaded(source, prepare=prepare, keep_frames=keep_frames)
    except BaseException:
        source.close()
        raise
