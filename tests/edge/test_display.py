"""What a person sees: the overlay, recordings and snapshots (the window itself is in test_live.py)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge import display
from edge_signs.edge.display import Overlay, Recorder, check_gui, decide_window, record_fourcc, save_png, window_problem
from edge_signs.edge.results import FrameResult
from edge_signs.errors import EdgeSignsError
from edge_signs.preprocess import Roi


def test_record_codec_by_extension(tmp_path):
    assert record_fourcc(tmp_path / "a.avi") == "MJPG" and record_fourcc(tmp_path / "b.MP4") == "mp4v"
    with pytest.raises(EdgeSignsError, match=r"--record .*out\.mkv: use a file name ending in \.avi \(MJPG\), \.mp4 \(mp4v\)"):
        record_fourcc(tmp_path / "out.mkv")


def test_overlay_draws_on_its_own_canvas():
    frame = np.full((64, 64), 100, np.uint8)  # a gray 64x64 test image
    before = frame.copy()
    result = FrameResult(label="3", index=3, smoothed_confidence=0.9, raw_label="3", raw_index=3, confidence=0.8, truth=2)
    overlay = Overlay(Roi(), config.LABELS)
    img = overlay.render(frame, result, fps=12.5)
    assert np.array_equal(frame, before)  # the frame is untouched
    side = config.DISPLAY_MIN_SIDE
    assert img.shape == (side, side, 3) and img.dtype == np.uint8  # 64 px upscaled by a whole factor (5)
    assert (img != 100).any(axis=2).mean() > 0.05  # text panels and the ROI box are drawn
    again = overlay.render(frame, result, fps=12.5)
    assert again is img  # the canvas is reused while the frame size stays
    big = overlay.render(np.zeros((480, 640, 3), np.uint8), result, fps=30.0)
    assert big.shape == (480, 640, 3)  # a camera frame is drawn on at its own size


def test_recorder_keeps_a_playable_file_only_when_asked(tmp_path):
    path = tmp_path / "rec.avi"
    rec = Recorder(path, fps=10.0)
    for v in range(4):
        rec.write(np.full((120, 160, 3), 40 * v, np.uint8))
    rec.write(np.zeros((60, 80, 3), np.uint8))  # a source that changed resolution: resized to the first size
    rec.close(keep=True)
    cap = cv2.VideoCapture(str(path))
    sizes = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        sizes.append(frame.shape)
    cap.release()
    assert sizes == [(120, 160, 3)] * 5 and rec.frames == 5
    assert [p.name for p in tmp_path.iterdir()] == ["rec.avi"]  # no temporary left behind
    dropped = Recorder(tmp_path / "dropped.avi", fps=10.0)
    dropped.write(np.zeros((120, 160, 3), np.uint8))
    dropped.close(keep=False)  # an error ended the run: nothing half-written is left
    assert [p.name for p in tmp_path.iterdir()] == ["rec.avi"]


def test_recorder_writes_every_frame_in_order_from_its_thread(tmp_path):
    """write() returns before encoding; however far the encoder falls behind, every frame lands, in order."""
    path = tmp_path / "many.avi"
    rec = Recorder(path, fps=30.0)
    for v in range(60):
        rec.write(np.full((240, 320, 3), 4 * v, np.uint8))  # faster than MJPG encodes: the queue fills, write waits
    assert "recorder: many.avi" in {t.name for t in threading.enumerate()}  # the encoder's own thread
    rec.close(keep=True)
    assert "recorder: many.avi" not in {t.name for t in threading.enumerate()}  # joined by close
    cap = cv2.VideoCapture(str(path))
    means = []
    while (frame := cap.read()[1]) is not None:
        means.append(float(frame.mean()))
    cap.release()
    assert len(means) == 60 and rec.frames == 60
    assert np.allclose(means, [4 * v for v in range(60)], atol=2)  # each frame's own pixels, in order


def test_recorder_failure_in_its_thread_is_one_line(tmp_path, monkeypatch):
    """An encoder that fails (a full disk) ends the run with a one-line error and leaves no half-written video."""
    real = cv2.VideoWriter

    class Full:  # OpenCV's writer, whose disk fills after the first frame
        def __init__(self, *args):
            self.real, self.frames = real(*args), 0

        def isOpened(self):
            return self.real.isOpened()

        def write(self, img):
            self.frames += 1
            if self.frames > 1:
                raise cv2.error("No space left on device")
            return self.real.write(img)

        def release(self):
            self.real.release()

    monkeypatch.setattr(display.cv2, "VideoWriter", Full)
    rec = Recorder(tmp_path / "full.avi", fps=10.0)
    rec.write(np.zeros((120, 160, 3), np.uint8))
    with pytest.raises(EdgeSignsError, match=r"^--record .*full.avi: writing the video failed \(error: No space left on device\); not published \(an existing full.avi is untouched\)$"):
        for _ in range(50):
            rec.write(np.zeros((120, 160, 3), np.uint8))
        rec.close(keep=True)
    rec.close(keep=False)  # the loop's cleanup after the error: quiet
    assert list(tmp_path.iterdir()) == []


def test_save_png(tmp_path):
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = (0, 0, 255)
    out = save_png(img, tmp_path / "snap.png")
    assert np.array_equal(cv2.imread(str(out)), img)


def test_check_gui_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(EdgeSignsError, match="without --window it runs headless") as err:
        check_gui()
    assert "\n" not in str(err.value)


# -- whether a window opens: only where one can, never with --serve, always with --window ----------------------

GTK = "  GUI:                           GTK3\n"
HEADLESS = "  GUI:                           NONE\n"


def test_window_problem_names_a_missing_gui_or_display():
    assert "no GUI" in window_problem(HEADLESS, {"DISPLAY": ":0"}, "linux")
    assert "DISPLAY is not set" in window_problem(GTK, {}, "linux")
    assert window_problem(GTK, {"DISPLAY": ":0"}, "linux") is None
    assert window_problem(GTK, {"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert window_problem(GTK, {}, "darwin") is None  # no DISPLAY variable there: the GUI decides


def _problem(reason):
    asked = []

    def problem():
        asked.append(True)
        return reason
    return problem, asked


def test_decide_window_opens_one_only_where_it_can():
    can, asked = _problem(None)
    assert decide_window(None, False, None, can) == (True, None) and asked
    cannot, _ = _problem("this OpenCV has no GUI")
    show, note = decide_window(None, False, None, cannot)
    assert not show and note == "running headless: this OpenCV has no GUI"


def test_serve_and_headless_mean_no_window_without_asking():
    for headless, implied in ((True, None), (False, "--serve")):
        problem, asked = _problem(None)
        show, note = decide_window(None, headless, implied, problem)
        assert not show and not asked
        assert note == (None if headless else "running headless: --serve needs no window (--window for one)")


def test_window_forces_one_and_contradicts_headless():
    problem, asked = _problem("no display")
    assert decide_window(True, False, "--serve", problem) == (True, None) and not asked  # check_gui then says why it cannot
    with pytest.raises(EdgeSignsError, match="--headless and --window"):
        decide_window(True, True, None, problem)


def test_forced_window_on_a_headless_opencv_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("DISPLAY", ":0")
    if window_problem() is None:
        pytest.skip("this OpenCV has a GUI")
    with pytest.raises(EdgeSignsError, match="^--window: this OpenCV has no GUI") as err:
        check_gui()
    assert "\n" not in str(err.value)
