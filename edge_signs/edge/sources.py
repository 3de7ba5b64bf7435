"""Frame sources: a USB camera, the Pi Camera Module, a video, or the SIGNS test set.

Every source is an iterator of ``(frame, truth)`` pairs (a BGR/BGRA/gray frame and
the true class index, or None) that owns its retries. A source says

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

import contextlib
import os
import sys
import threading
import time
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from edge_signs import config
from edge_signs.edge.truth import LabelRanges
from edge_signs.errors import EdgeSignsError

PICAMERA_HINT = (
    "--picamera needs picamera2, which this Python cannot import: on Raspberry Pi OS install it with "
    "'sudo apt install python3-picamera2' and create the venv with 'python3 -m venv --system-site-packages' so the venv sees it"
)


Frame = tuple[np.ndarray, Optional[int]]  # (frame in OpenCV's layout, true class index or None)


def failure_message(name: str, exc: BaseException) -> str:
    """One line for a source whose read raised: its name, the exception's type and first line."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{name} failed ({type(exc).__name__}{': ' + first if first else ''})"


class EndOfStream(Exception):
    """Raised by ``read()``: no frames left (the test set ran out). Distinct from a failed read."""


class FrameSource:
    """The base of every source: subclasses set the attributes and implement ``read`` and ``close``."""

    name: str = "source"  # for messages: "camera 0", "video clip.avi", ...
    live: bool = False  # a real-time device or stream: failed reads are retried after a short sleep
    fps: float = config.RECORD_FPS  # frames per second, for recording
    has_truth: bool = False  # whether frames can come with true labels
    independent_frames: bool = False  # consecutive frames are unrelated scenes (no smoothing across them)
    end_reason: str = "source ended"  # said when reads keep failing after some frames came
    no_frames_message: str = "the source delivered no frames"  # said when not one frame came: a setup problem

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


class RunningTime:
    """A duration's running mean and mean deviation (as TCP estimates round trips): ``mean`` plus or minus ``2 * dev`` covers most."""

    GAIN = 0.2  # weight of the newest measurement

    def __init__(self):
        self.mean: Optional[float] = None
        self.dev = 0.0

    def add(self, seconds: float) -> None:
        if self.mean is None:
            self.mean = seconds
            return
        self.dev += self.GAIN * (abs(seconds - self.mean) - self.dev)
        self.mean += self.GAIN * (seconds - self.mean)


class PrepareSchedule:
    """Which camera frames the capture thread decodes and prepares for the model.

    A camera faster than the model delivers frames the loop never takes. Preparing
    every one (decode, crop, resize) spends a core the interpreter wants; preparing
    only the first after each take hands the loop frames up to a model period old.
    This prepares the newest frame that can still be ready when the loop next asks:
    a frame is skipped (grabbed, never decoded) when a later one will arrive in time
    to take its place. The loop's period, the camera's and the preparation's are
    running estimates of what was measured, and the schedule plans for an early
    take and a slow preparation (mean -/+ twice the deviation), so a jittery loop
    rarely finds nothing ready. Every frame is prepared while anything is unknown,
    while the loop waits or has taken the last prepared frame, and whenever a camera
    period plus a preparation is as long as the loop's period (preparing is then the
    bottleneck: a skipped frame would leave the loop waiting).
    """

    def __init__(self):
        self.loop_period = RunningTime()  # between the loop's takes
        self.camera_period = RunningTime()  # between grabs
        self.prepare = RunningTime()  # to retrieve and prepare one frame
        self.last_take: Optional[float] = None
        self.last_grab: Optional[float] = None

    def took(self, now: float) -> None:
        """The loop took a frame at ``now`` (perf_counter seconds)."""
        if self.last_take is not None:
            self.loop_period.add(now - self.last_take)
        self.last_take = now

    def prepared(self, seconds: float) -> None:
        """A frame took ``seconds`` to retrieve and prepare."""
        self.prepare.add(seconds)

    def wants(self, now: float, *, ready: bool, waiting: bool) -> bool:
        """Whether to prepare the frame grabbed at ``now``; ``ready``: an untaken prepared frame waits for the loop."""
        if self.last_grab is not None:
            self.camera_period.add(now - self.last_grab)
        self.last_grab = now
        loop, camera, prep = self.loop_period, self.camera_period, self.prepare
        if waiting or not ready or None in (loop.mean, camera.mean, prep.mean):
            return True  # the loop took the last one: keep one ready, so it never waits for the camera
        # A frame is ready. Replace it only with the newest one that can be ready for the loop's next take.
        prepare = prep.mean + 2 * prep.dev  # a slow preparation
        period = max(loop.mean - 2 * loop.dev, loop.mean / 2)  # a quick loop
        if camera.mean + prepare >= period:
            return True  # the first frame after a take could not be ready for the next one: keep preparing
        take = self.last_take + period  # when the loop may ask next
        if now + prepare > take:
            return False  # too late for it: the loop takes the ready one, and the first frame after that is prepared
        return now + camera.mean + prepare > take  # the next frame would be too late: this one is the newest that makes it


class LatestFrame(FrameSource):
    """A live source read in a background thread that hands the loop the newest frame.

    Inference never waits for the camera's next exposure when a frame is already
    there, and never works through a queue of stale ones. The thread grabs every
    frame the camera delivers (the device's queue never fills) and, with ``prepare``,
    retrieves and prepares only the ones ``PrepareSchedule`` picks: the newest that
    can be ready when the loop asks. A frame the loop never takes (skipped, or
    replaced by a newer one) is counted in ``dropped``. The capture thread owns the
    source's retries; the loop sees "no frame now" (None) only when nothing new
    arrives within ``wait_s``, and the source's own end or error after it.

    ``prepare`` (the live loop passes preprocess.frame_to_rgb with its ROI: the one
    preprocessing definition, not a copy) runs in the capture thread, so the loop's
    thread only invokes the model; its result for the frame ``read()`` returned last
    is ``prepared``. With ``keep_frames=False`` (only with ``prepare``: nobody looks
    at the frames) the full frame is not even copied, and ``read()`` returns
    ``(None, truth)``. Without ``prepare`` every frame is retrieved and copied. A
    source that raises, or a ``prepare`` that does, after frames came ends the
    stream with ``ended`` saying why; before any frame it is a one-line
    ``EdgeSignsError``.
    """

    def __init__(self, inner: FrameSource, wait_s: float = config.FRAME_WAIT_S, *,
                 prepare: Optional[Callable[[np.ndarray], np.ndarray]] = None, keep_frames: bool = True):
        if not keep_frames and prepare is None:
            raise ValueError("LatestFrame(keep_frames=False) needs prepare: the loop would get nothing")
        self.inner = inner
        self.name, self.fps, self.has_truth = inner.name, inner.fps, inner.has_truth
        self.live = True
        self.end_reason, self.no_frames_message = inner.end_reason, inner.no_frames_message
        self.wait_s = wait_s
        self.prepare = prepare
        self.keep_frames = keep_frames
        self.prepared: Optional[np.ndarray] = None  # prepare(frame) of the frame read() returned last
        self.captured = 0  # frames the camera delivered
        self.retrieved = 0  # of those, decoded (and prepared): the rest were skipped
        self.taken = 0  # of those, returned by read()
        self.schedule = PrepareSchedule() if prepare is not None else None
        self._cond = threading.Condition()
        self._latest: Optional[tuple] = None  # (frame or None, truth, prepared or None)
        self._ready = False  # _latest holds a frame the loop has not taken
        self._waiting = False  # the loop is blocked in read()
        self._t_wanted = 0.0  # when the frame being retrieved was grabbed
        self._done = False
        self._error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture, name=f"capture: {inner.name}", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        """Frames the camera delivered that the loop never took (skipped, or replaced by a newer one)."""
        return self.captured - self.taken - self._ready

    def _wanted(self) -> bool:
        """Asked by the source after each grab (capture thread): retrieve and prepare this frame?"""
        if self.schedule is None:
            return True
        self._t_wanted = now = time.perf_counter()
        return self.schedule.wants(now, ready=self._ready, waiting=self._waiting)

    def _capture(self) -> None:
        try:
            for item in self.inner.frames(wanted=self._wanted):
                if self._stop.is_set():
                    break  # closing: no frame after close()
                if item is None:  # grabbed, skipped: a newer frame will reach the loop in time
                    with self._cond:
                        self.captured += 1
                    continue
                frame, truth = item
                try:
                    prepared = self.prepare(frame) if self.prepare is not None else None
                except Exception as exc:  # noqa: BLE001 -- a frame the model cannot take (wrong dtype, empty): said, not a traceback
                    if self.captured == 0:
                        raise EdgeSignsError(failure_message(self.inner.name, exc)) from None
                    self.end_reason = failure_message(self.inner.name, exc)
                    return
                # A copy: sources read into one reused buffer, which the loop may still be using.
                item = (frame.copy() if self.keep_frames else None, truth, prepared)
                with self._cond:
                    self._latest = item
                    self._ready = True
                    self.captured += 1
                    self.retrieved += 1
                    self._cond.notify()
                if self.schedule is not None:
                    self.schedule.prepared(time.perf_counter() - self._t_wanted)
            else:
                self.end_reason = self.inner.ended or self.end_reason
        except BaseException as exc:  # handed to the loop's thread by read()
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def read(self) -> Optional[Frame]:
        with self._cond:
            self._waiting = True
            self._cond.wait_for(lambda: self._ready or self._done, timeout=self.wait_s)
            self._waiting = False
            if self._ready and not self._stop.is_set():
                self._ready = False
                self.taken += 1
                if self.schedule is not None:
                    self.schedule.took(time.perf_counter())
                frame, truth, self.prepared = self._latest
                return frame, truth
            if not self._done and not self._stop.is_set():
                return None  # no frame now
        if self._error is not None:
            raise self._error
        raise EndOfStream

    def display_frame(self) -> Optional[np.ndarray]:
        getter = getattr(self.inner, "display_frame", None)
        return getter() if getter is not None else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)  # a read blocked in the driver ends when the device is released
        self.inner.close()
        self._thread.join(timeout=2.0)


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
