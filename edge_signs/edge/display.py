"""What a person sees: the overlay, the preview window, the recording and snapshots.

Nothing here runs unless someone will look: the loop draws the overlay only for a
window, a recording or a browser that wants a frame now (--serve, at most
SERVE_MAX_FPS), and a camera's capture thread copies full frames only then.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import cv2
import numpy as np

from edge_signs import config
from edge_signs.artifacts import PendingFile, atomic_path
from edge_signs.edge.loop import LoopFrame
from edge_signs.edge.results import FrameResult
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log
from edge_signs.preprocess import Roi, to_bgr


def record_fourcc(path: Path) -> str:
    """The codec for a --record file, chosen by its extension."""
    fourcc = config.RECORD_FOURCC.get(Path(path).suffix.lower())
    if fourcc is None:
        names = ", ".join(f"{ext} ({cc})" for ext, cc in config.RECORD_FOURCC.items())
        raise EdgeSignsError(f"--record {path}: use a file name ending in {names}")
    return fourcc


FONT = cv2.FONT_HERSHEY_SIMPLEX
AA = cv2.LINE_AA
GREEN = (80, 220, 80)
RED = (60, 60, 235)
AMBER = (0, 190, 255)
WHITE = (255, 255, 255)
PANEL = (30, 30, 30)


class Canvas:
    """A picture to draw on: the frame copied into a buffer reused while the frame size stays (the frame is untouched),
    tiny frames (the 64x64 test set) blown up by a whole factor so text fits and pixels stay crisp, with the ROI boxed."""

    def __init__(self, roi: Roi):
        self.roi = roi
        self._buffer: Optional[np.ndarray] = None

    def draw(self, frame: np.ndarray, colour, weight: int = 1) -> tuple[np.ndarray, int]:
        """(the picture, the line thickness that suits its size); the ROI box drawn ``weight`` times that thick."""
        bgr = to_bgr(frame)
        h, w = bgr.shape[:2]
        s = max(1, math.ceil(config.DISPLAY_MIN_SIDE / min(h, w)))
        shape = (h * s, w * s, 3)
        if self._buffer is None or self._buffer.shape != shape:
            self._buffer = np.empty(shape, np.uint8)  # only when the frame size changes
        if s == 1:
            np.copyto(self._buffer, bgr)
        else:
            cv2.resize(bgr, (w * s, h * s), dst=self._buffer, interpolation=cv2.INTER_NEAREST)
        thick = max(1, round(shape[1] / 320))
        x0, y0, x1, y1 = self.roi.box(h, w)
        cv2.rectangle(self._buffer, (x0 * s, y0 * s), (x1 * s - 1, y1 * s - 1), colour, thick * weight, AA)
        return self._buffer, thick


class Overlay:
    """Draws the ROI box, the sign, FPS and inference time onto a canvas it owns (the frame is untouched)."""

    def __init__(self, roi: Roi, labels: Sequence[str]):
        self._canvas = Canvas(roi)
        self._labels = labels

    def render(self, frame: np.ndarray, r: FrameResult, fps: float) -> np.ndarray:
        img, thick = self._canvas.draw(frame, AMBER)
        H, W = img.shape[:2]

        fs = max(0.45, W / 900)  # small text; the sign is drawn at twice this
        big = f"sign {r.label}  {r.smoothed_confidence:.0%}" if r.label is not None else "no sign"
        small = f"raw {r.raw_label} {r.confidence:.0%}"
        if r.truth is not None:
            small += f"   truth {self._labels[r.truth]}"
        stats = f"{fps:.1f} fps   {r.inference_ms:.1f} ms inference"
        (bw, bh), _ = cv2.getTextSize(big, FONT, 2 * fs, 2 * thick)
        (sw, sh), _ = cv2.getTextSize(small, FONT, fs, thick)
        pad = max(4, round(8 * fs))
        # Solid panels behind text: legible on any background, cheaper than blending.
        cv2.rectangle(img, (0, 0), (min(W, max(bw, sw) + 2 * pad), bh + sh + 3 * pad), PANEL, -1)
        cv2.putText(img, big, (pad, pad + bh), FONT, 2 * fs, GREEN if r.label is not None else AMBER, 2 * thick, AA)
        ink = WHITE if r.truth is None else (GREEN if r.raw_index == r.truth else RED)
        cv2.putText(img, small, (pad, 2 * pad + bh + sh), FONT, fs, ink, thick, AA)
        (tw, th), base = cv2.getTextSize(stats, FONT, fs, thick)
        cv2.rectangle(img, (0, H - th - base - 2 * pad), (min(W, tw + 2 * pad), H), PANEL, -1)
        cv2.putText(img, stats, (pad, H - base - pad), FONT, fs, WHITE, thick, AA)
        return img


class Picture:
    """The overlay of the frame in hand, drawn at most once a frame however many outputs want it (window, recording, browser)."""

    def __init__(self, overlay: Overlay):
        self.overlay = overlay
        self._index = -1
        self._img: Optional[np.ndarray] = None

    def of(self, f: LoopFrame) -> np.ndarray:
        if f.index != self._index or self._img is None:
            self._img = self.overlay.render(f.shown(), f.result, f.fps)
            self._index = f.index
        return self._img


def window_problem(build_info: Optional[str] = None, environ: Optional[Mapping[str, str]] = None,
                   platform: str = sys.platform) -> Optional[str]:
    """Why no window can open here (an OpenCV without a GUI, or no display), or None when one can."""
    info = cv2.getBuildInformation() if build_info is None else build_info
    env = os.environ if environ is None else environ
    gui = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.strip().startswith("GUI:")), "")
    if gui.upper() == "NONE":
        return "this OpenCV has no GUI (opencv-python-headless; opencv-python or apt's python3-opencv has one)"
    if platform.startswith("linux") and not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return "no display to show a window on (DISPLAY is not set, e.g. over ssh; 'ssh -X' or the Pi's desktop has one)"
    return None


def check_gui() -> None:
    """A window needs an OpenCV with a GUI and a display; say how to get them, or to run headless."""
    problem = window_problem()
    if problem is not None:
        raise EdgeSignsError(f"--window: {problem}; without --window it runs headless (--record FILE keeps the annotated video)")


def decide_window(window: Optional[bool], headless: bool, implied_by: Optional[str], problem: Callable[[], Optional[str]]) -> tuple[bool, Optional[str]]:
    """(show a window?, the one line that says why not, or None).

    ``window``: True for --window (a window or a clear error), None to decide here; ``headless``: --headless;
    ``implied_by``: an option that means nobody watches a window (--serve, collect's --label); ``problem``:
    why no window can open (window_problem), asked only when it matters.
    """
    if headless and window:
        raise EdgeSignsError("--headless and --window contradict each other; name one")
    if headless or window is False:
        return False, None
    if window:
        return True, None
    if implied_by is not None:
        return False, f"running headless: {implied_by} needs no window (--window for one)"
    reason = problem()
    if reason is not None:
        return False, f"running headless: {reason}"
    return True, None


def choose_window(window: Optional[bool], headless: bool, implied_by: Optional[str], log: Log) -> bool:
    """Whether to open a window (check_gui then says whether a forced one can), logging why when running headless of its own accord."""
    show, note = decide_window(window, headless, implied_by, window_problem)
    if note is not None:
        log(note)
    return show


class Window:
    """A preview window: ``show`` draws a picture and returns the key pressed (OpenCV's code, -1 for none).

    ``fix`` ends the one-line error when OpenCV cannot open it (what to do instead).
    """

    def __init__(self, name: str = config.WINDOW_NAME, fix: str = "run with --headless"):
        check_gui()
        try:
            cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE)
        except cv2.error as exc:
            raise EdgeSignsError(f"cannot open a window ({str(exc).strip().splitlines()[-1]}): {fix}") from None
        self.name = name
        self._visible_known: Optional[bool] = None  # does this GUI backend report WND_PROP_VISIBLE?

    def show(self, img: np.ndarray) -> int:
        cv2.imshow(self.name, img)
        return cv2.waitKey(1)

    def closed(self) -> bool:
        """Whether its close button was pressed: without this the loop would run on invisibly.

        Some GUI backends always answer -1, so a window only counts as closed if it once reported itself visible.
        """
        try:
            visible = cv2.getWindowProperty(self.name, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:  # some backends raise once the window is gone
            return True
        if self._visible_known is None:
            self._visible_known = visible
        return self._visible_known and not visible

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.name)
            cv2.waitKey(1)  # let the GUI thread actually remove it


def save_png(img: np.ndarray, path: Path) -> Path:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise EdgeSignsError(f"{path}: could not write the PNG")
    return path


def playable_frames(path: Path) -> int:
    """Frames a video file holds, counted from its index and proven by reading the last one; 0 when not playable."""
    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        if count <= 0:
            return 0
        cap.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
        return count if cap.read()[0] else 0
    finally:
        cap.release()


def _is_playable(path: Path) -> bool:
    return playable_frames(path) > 0


class Recorder:
    """--record: the annotated frames as a video, moved into place only once finalized (playable).

    Encoding (MJPG or mp4v) costs more per frame than the model on a fast CPU, so it
    runs in a writer thread: ``write`` copies the frame into a short queue and returns,
    and the encoder works while the loop invokes the model. Every frame is recorded:
    when the encoder falls behind, ``write`` waits for room (the loop slows to the
    encoder's pace rather than the video skipping frames).

    A video is published only when the finished file holds every frame written (its
    index read back): a disk that fills mid-run, which OpenCV's writer may not report,
    never publishes a cut recording nor replaces a good one.
    """

    QUEUE = 4  # frames waiting for the encoder: enough to ride out a slow frame

    def __init__(self, path: Path, fps: float):
        self.path = Path(path)
        self._fourcc = record_fourcc(self.path)
        self._fps = fps
        self._writer: Optional[cv2.VideoWriter] = None
        self._size: Optional[tuple[int, int]] = None
        self.frames = 0
        self._file = PendingFile(self.path, is_complete=_is_playable)
        self.recovered = self._file.recovered  # complete recordings a stopped run left, moved to visible names
        self._tmp = self._file.tmp
        self._queue: queue.Queue = queue.Queue(maxsize=self.QUEUE)
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[str] = None

    def write(self, img: np.ndarray) -> None:
        if self._writer is None:  # the frame size is only known now; opened here so a failure is this call's error
            self._size = (img.shape[1], img.shape[0])
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*self._fourcc), self._fps, self._size)
            if not self._writer.isOpened():
                raise EdgeSignsError(f"--record {self.path}: OpenCV cannot write {self._fourcc} video here")
            self._thread = threading.Thread(target=self._encode, name=f"recorder: {self.path.name}", daemon=True)
            self._thread.start()
        self._check()
        if (img.shape[1], img.shape[0]) != self._size:  # a source that changed resolution mid-stream
            img = cv2.resize(img, self._size)
        else:
            img = img.copy()  # the overlay's canvas is redrawn for the next frame while this one waits
        self._queue.put(img)
        self.frames += 1

    def _encode(self) -> None:
        written = 0
        while (img := self._queue.get()) is not None:
            try:
                if self._writer.write(img) is False:  # OpenCV 5 says so (4.x returns None: close() reads the file back)
                    self._error = f"frame {written + 1} could not be written (is its disk full?)"
                written += 1
            except Exception as exc:  # noqa: BLE001 -- handed to the loop's thread by the next write or close
                self._error = f"writing the video failed ({type(exc).__name__}: {exc})"
            if self._error is not None:
                while self._queue.get() is not None:  # unblock a write waiting for room
                    pass
                return

    def _check(self) -> None:
        if self._error is not None:
            raise EdgeSignsError(f"--record {self.path}: {self._error}; not published (an existing {self.path.name} is untouched)")

    def close(self, keep: bool) -> None:
        """Finish the file; with ``keep``, publish it if complete (else a one-line error, and nothing replaced)."""
        try:
            if self._thread is not None:
                self._queue.put(None)  # after the frames already queued: all of them are written
                self._thread.join()
                self._thread = None
            if self._writer is not None:
                self._writer.release()  # writes the index: without it the file does not play
                self._writer = None
            if keep and self.frames and self._error is None and (held := playable_frames(self._tmp)) != self.frames:
                self._error = f"the finished file holds {held} of the {self.frames} frames written (is its disk full?)"
        finally:
            self._file.close(keep=keep and self.frames > 0 and self._error is None)
        if keep:  # a run that failed already has its error to tell
            self._check()
