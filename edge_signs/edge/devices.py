"""The frame sources: a USB camera, the Pi Camera Module, a video, or the SIGNS test set.

Each is a ``FrameSource`` (frame_source.py: reads, retries, endings); ``sources.open_source``
picks one from the options and puts it behind a capture thread (capture.py) where that helps.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, Optional

import cv2
import numpy as np

from edge_signs import config
from edge_signs.edge.frame_source import EndOfStream, Frame, FrameSource, GrabRetrieve
from edge_signs.edge.truth import LabelRanges
from edge_signs.errors import EdgeSignsError

PICAMERA_HINT = (
    "--picamera needs picamera2, which this Python cannot import: on Raspberry Pi OS install it with "
    "'sudo apt install python3-picamera2' and create the venv with 'python3 -m venv --system-site-packages' so the venv sees it"
)


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs WARN lines when a device cannot be opened; we say it better in one line."""
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def _camera_fix(index: int) -> str:
    return (f"check 'ls /dev/video*' and that your user is in the 'video' group (sudo usermod -aG video $USER, then log in again); "
            f"on Raspberry Pi OS Bookworm the Camera Module is not a V4L2 /dev/video{index} device for OpenCV: use --picamera")


class CameraSource(GrabRetrieve):
    """A USB webcam (or any V4L2 device) through cv2.VideoCapture."""

    live = True
    has_truth = False

    def __init__(self, index: int, width: int, height: int, fps: float):
        self.name = f"camera {index}"
        # V4L2 directly on Linux: pip's OpenCV has nothing else, and apt's would try GStreamer first (slow, noisy).
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        with _quiet_opencv():
            cap = cv2.VideoCapture(index, api)
        if not cap.isOpened():
            cap.release()
            raise EdgeSignsError(f"camera {index} cannot be opened: {_camera_fix(index)}")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # classify the newest frame, not one queued seconds ago
        self._cap = cap
        self.fps = cap.get(cv2.CAP_PROP_FPS) or float(fps)
        self._buf: Optional[np.ndarray] = None  # read into the same array every frame
        self.end_reason = f"camera {index} stopped delivering frames ({config.READ_RETRIES} failed reads)"
        self.no_frames_message = f"camera {index} opened but delivered no frames: {_camera_fix(index)}"

    def grab(self) -> bool:
        return bool(self._cap.grab())  # V4L2: dequeue the newest buffer, no conversion yet

    def retrieve(self) -> Optional[Frame]:
        ok, frame = self._cap.retrieve(self._buf)  # YUYV -> BGR, or the MJPG decode
        if not ok or frame is None:
            return None
        self._buf = frame
        return frame, None

    def close(self) -> None:
        self._cap.release()


class PiCameraSource(FrameSource):
    """The Raspberry Pi Camera Module through picamera2 (libcamera)."""

    live = True
    has_truth = False

    def __init__(self, width: int, height: int, fps: float, index: int = 0, *, display: bool = False,
                 model_size: tuple[int, int] = config.PICAMERA_MODEL_SIZE):
        try:
            # Imported here, not at the top: only a Pi with the Camera Module has it, and it is slow to import.
            from picamera2 import Picamera2
        except ImportError:
            raise EdgeSignsError(PICAMERA_HINT) from None
        except ValueError as exc:  # "numpy.dtype size changed": Debian's picamera2 pieces were built for Debian's numpy 1
            raise EdgeSignsError(f"picamera2 cannot be imported with this venv's numpy ({exc}): Debian's python3-picamera2 is built for "
                                 f"Debian's numpy 1; install edge-signs with the [pi-camera] extra, or in the venv pip install 'numpy<2' 'opencv-python-headless<4.12' (docs/raspberry-pi.md)") from None
        self.name = f"Pi camera {index}"
        self.fps = float(fps)
        self._cam = None
        # Without a window or recording, one small stream is all the model needs. With one, the main
        # stream is full size for people and the ISP scales a low-resolution ("lores") stream for the
        # model, so the CPU never resizes a large frame. lores is YUV420 (the only lores format a Pi 4 has).
        self._lores = display
        self._main: Optional[np.ndarray] = None
        try:
            cam = Picamera2(index)
            self._cam = cam
            # libcamera's "RGB888" is B, G, R in memory: exactly OpenCV's BGR, no conversion needed.
            if display:
                cfg = cam.create_video_configuration(main={"size": (width, height), "format": "RGB888"},
                                                     lores={"size": tuple(model_size), "format": "YUV420"},
                                                     controls={"FrameRate": float(fps)})
            else:
                cfg = cam.create_video_configuration(main={"size": tuple(model_size), "format": "RGB888"},
                                                     controls={"FrameRate": float(fps)})
            cam.configure(cfg)
            cam.start()
        except Exception as exc:  # noqa: BLE001 -- hardware start-up fails in many ways; all mean the same to a user
            self.close()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EdgeSignsError(f"Pi camera {index} could not be started ({first}): check the ribbon cable, "
                                 f"that 'rpicam-hello --list-cameras' lists it, and that no other program uses it") from None
        self.end_reason = f"Pi camera {index} stopped delivering frames ({config.READ_RETRIES} failed reads)"
        self.no_frames_message = f"Pi camera {index} started but delivered no frames: check 'rpicam-hello --list-cameras'"

    def read(self) -> Optional[Frame]:
        try:
            if not self._lores:
                return self._cam.capture_array("main"), None
            request = self._cam.capture_request()  # both streams of one exposure
            try:
                self._main = request.make_array("main")
                yuv = request.make_array("lores")
            finally:
                request.release()
        except RuntimeError:
            return None
        return cv2.cvtColor(yuv, cv2.COLOR_YUV2BGR_I420), None

    def display_frame(self) -> Optional[np.ndarray]:
        """The full-size frame of the last exposure, for the window or recording (None without one)."""
        return self._main

    def close(self) -> None:
        if self._cam is not None:
            with contextlib.suppress(Exception):
                self._cam.stop()
            with contextlib.suppress(Exception):
                self._cam.close()
            self._cam = None


def _has_gstreamer() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


class VideoSource(GrabRetrieve):
    """Anything cv2.VideoCapture opens: a file, an RTSP/HTTP URL, a GStreamer pipeline, a /dev/video path."""

    def __init__(self, spec: str, ranges: Optional[LabelRanges] = None, loop: bool = False):
        is_pipeline = "!" in spec  # GStreamer syntax: "libcamerasrc ! ... ! appsink"
        is_url = "://" in spec
        self.name = f"video {spec}"
        if is_pipeline and not _has_gstreamer():
            raise EdgeSignsError("--video: a GStreamer pipeline needs an OpenCV built with GStreamer (pip's wheels are not): "
                                 "on Raspberry Pi OS use apt's python3-opencv in a --system-site-packages venv, or use --picamera")
        if not is_pipeline and not is_url and not os.path.exists(spec):
            raise EdgeSignsError(f"{spec}: video file not found")
        with _quiet_opencv():
            cap = cv2.VideoCapture(spec, cv2.CAP_GSTREAMER if is_pipeline else cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            what = "stream" if is_url or is_pipeline else "file"
            raise EdgeSignsError(f"{spec}: OpenCV cannot open this video {what} (check the path/URL and that OpenCV's FFmpeg can decode it)")
        self._cap = cap
        self._file = not is_pipeline and not is_url and not spec.startswith("/dev/")
        self.live = not self._file  # streams and devices get a short sleep between failed reads
        self.fps = cap.get(cv2.CAP_PROP_FPS) or config.RECORD_FPS
        self.fps = self.fps if 0 < self.fps < 1000 else config.RECORD_FPS  # some streams report nonsense
        self._ranges = ranges
        self.has_truth = ranges is not None
        self._loop = loop and self._file
        self._index = 0  # frames grabbed so far: the labels CSV counts the same way
        self._buf: Optional[np.ndarray] = None
        self.end_reason = "end of video" if self._file else f"{spec} stopped delivering frames ({config.READ_RETRIES} failed reads)"
        self.no_frames_message = f"{spec}: opened but no frame could be decoded"

    def grab(self) -> bool:
        ok = self._cap.grab()
        if not ok and self._loop and self._index > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._index = 0
            ok = self._cap.grab()
        if not ok:
            return False
        self._index += 1  # a frame grabbed and never retrieved still counts: the labels CSV numbers every frame
        return True

    def retrieve(self) -> Optional[Frame]:
        ok, frame = self._cap.retrieve(self._buf)
        if not ok or frame is None:
            return None
        self._buf = frame
        truth = self._ranges.lookup(self._index - 1) if self._ranges is not None else None
        return frame, truth

    def unscored(self) -> Optional[str]:
        if self._ranges is None or self._loop:
            return None
        missed = self._ranges.labelled_from(self._index)
        if not missed:
            return None
        return (f"{self._ranges.path or 'labels CSV'}: {missed} labelled frame(s) were never reached: the video ended after "
                f"{self._index} frame(s), the labels run to frame {self._ranges.last_frame()}; accuracy covers only the frames it had")

    def close(self) -> None:
        self._cap.release()


class TestsetSource(FrameSource):
    """SIGNS test images as BGR camera frames, with their true labels."""

    __test__ = False  # not a pytest class, whatever its name says
    live = False
    has_truth = True
    # Consecutive test images are different photos: smoothing across them would mix
    # unrelated signs, so each image is smoothed on its own.
    independent_frames = True

    def __init__(self, images_rgb: np.ndarray, labels: np.ndarray, loop: bool = False, fps: float = config.RECORD_FPS):
        # Converted once, up front: frames are then views, and predict_frame's BGR->RGB restores the exact pixels.
        self._bgr = np.ascontiguousarray(images_rgb[..., ::-1])
        self._y = [int(v) for v in labels]
        self._i = 0
        self._loop = loop
        self.name = f"SIGNS test set ({len(self._y)} images{', looped' if loop else ''})"
        self.fps = fps
        self.end_reason = "end of test set"
        self.no_frames_message = "the SIGNS test set is empty"

    def read(self) -> Optional[Frame]:
        if self._i >= len(self._y):
            if not self._loop or not self._y:
                raise EndOfStream
            self._i = 0
        i = self._i
        self._i += 1
        return self._bgr[i], self._y[i]

    def close(self) -> None:
        pass
