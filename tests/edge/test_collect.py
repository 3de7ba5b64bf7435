"""`edge-signs collect`: ROI crops saved as OUT/<label>/<session>_<NNNNN>.jpg.

A small real MJPG video stands in for the camera. Window keys are fed through OpenCV's
own waitKey (stood in for, as test_live.py does: no display here), so the loop, the
``Keys`` state machine and the writer thread run exactly as with a person at the keys.
Video files run on video time (frame number / fps), so intervals are exact here.
No TensorFlow.
"""

from __future__ import annotations

import csv
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_signs import cli, config
from edge_signs.edge import collect, collect_keys, crop_writer, display
from edge_signs.edge.collect import CollectOptions, run_collect
from edge_signs.edge.collect_keys import Keys, Pacer
from edge_signs.edge.crop_writer import crop_square
from edge_signs.edge.sources import FrameSource
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from edge_signs.own_data import group_of  # the grouped split's own rule: every name collect writes must follow it
from edge_signs.preprocess import Roi
from tests.faults import UNWRITABLE, hidden_files

FPS = 15.0  # 0.2 s of video time is exactly 3 frames
FRAMES = 30
W, H = 320, 240


def _level(k: int) -> int:
    """Frame k is flat grey at this level: a saved crop says which frame it came from."""
    return 20 + 7 * k


def write_clip(path: Path) -> Path:
    """A short MJPG clip whose frame k is filled with _level(k), so each saved crop names its frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    for k in range(FRAMES):
        writer.write(np.full((H, W, 3), _level(k), np.uint8))
    writer.release()
    return path


@pytest.fixture
def video(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.avi")


@pytest.fixture
def labels_csv(tmp_path) -> Path:
    path = tmp_path / "clip.csv"
    path.write_text("start_frame,end_frame,label\n0,9,1\n15,21,4\n25,25,0\n")
    return path


def _rows(out: Path) -> list[dict]:
    with open(out / config.COLLECT_CSV, newline="") as f:
        return list(csv.DictReader(f))


def _files(out: Path, label: str) -> list[Path]:
    return sorted((out / label).glob("*.jpg"))


def _frame_of(path: Path) -> int:
    """Which video frame a saved crop shows (by its grey level)."""
    img = cv2.imread(str(path))
    return int(round((float(img.mean()) - 20) / 7))


def _fake_gui(monkeypatch, keys: dict[int, str]) -> list:
    """OpenCV's window calls stood in for: waitKey after the i-th imshow returns keys[i]."""
    shown: list = []
    monkeypatch.setattr(collect, "check_gui", lambda: None)
    monkeypatch.setattr(display, "check_gui", lambda: None)
    monkeypatch.setattr(cv2, "namedWindow", lambda *a, **k: None)
    monkeypatch.setattr(cv2, "imshow", lambda name, img: shown.append(img.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda ms: (ord(keys[len(shown) - 1]) if len(shown) - 1 in keys else -1))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    return shown


def _opts(out: Path, video: Path, **kw) -> CollectOptions:
    return CollectOptions(out=out, video=str(video), **kw)


# -- the state machines ---------------------------------------------------------------------------------


def test_keys_save_burst_quit_and_hint_on_unknown_keys():
    keys = Keys(interval=0.5)
    assert keys.press(-1, 0.0) is None and keys.status == collect_keys.KEY_HELP  # no key this frame
    assert keys.press(ord("b"), 0.0) is None and not keys.burst and "press 0-5 first" in keys.status
    assert keys.press(ord("3"), 0.1) == "3" and keys.label == "3"
    assert keys.press(ord("x"), 0.2) is None and "'x' does nothing" in keys.status and not keys.quit
    assert keys.press(ord("b"), 1.0) == "3" and keys.burst  # the frame b came on is the burst's first
    assert [t for t in (1.2, 1.5, 1.7, 2.0, 2.2, 2.5) if keys.burst_due(t) == "3"] == [1.5, 2.0, 2.5]
    assert keys.press(ord("5"), 2.6) == "5" and keys.burst and "burst now saves 5" in keys.status
    assert keys.burst_due(3.0) == "5"
    keys.press(ord("b"), 3.1)
    assert not keys.burst and keys.burst_due(10.0) is None and "burst stopped" in keys.status
    assert keys.press(0x100 | ord("q"), 4.0) is None and keys.quit  # waitKey's high bits are ignored
    assert Keys(1.0).press(27, 0.0) is None  # Esc
    esc = Keys(1.0)
    esc.press(27, 0.0)
    assert esc.quit


def test_a_burst_with_a_count_stops_by_itself():
    keys = Keys(interval=0.0, label="2", per_burst=3)
    assert keys.press(ord("b"), 0.0) == "2"
    assert [keys.burst_due(t / 30) for t in range(1, 5)] == ["2", "2", None, None] and not keys.burst


def test_pacer_takes_every_frame_of_a_jittery_camera_at_its_own_rate():
    rng = np.random.default_rng(0)
    period = 1 / 30
    times = np.arange(300) * period + rng.uniform(-0.004, 0.004, 300)  # +-4 ms jitter
    pacer = Pacer(period)
    pacer.start(times[0])
    assert all(pacer.due(t) for t in times)
    # A loop that fell far behind takes the next frame, with no rush of catch-up saves after it.
    pacer = Pacer(0.2)
    pacer.start(0.0)
    assert pacer.due(0.0) and pacer.due(1.0) and not pacer.due(1.02) and pacer.due(1.2)


def test_crop_is_lives_roi_box_at_the_saved_size():
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, 40:280] = 200  # the largest centred square, exactly
    crop, roi = crop_square(frame, Roi(), 160)
    assert crop.shape == (160, 160, 3) and roi == (40, 0, 240) and crop.min() == 200
    roi2 = Roi(0.5, 0.25, 0.5)
    x0, y0, x1, y1 = roi2.box(240, 320)
    crop, roi = crop_square(frame, roi2, 160)
    assert roi == (x0, y0, x1 - x0) and crop.shape == (160, 160, 3)  # 120 px enlarged
    gray = np.full((240, 320), 77, np.uint8)  # any camera layout comes out BGR
    assert crop_square(gray, Roi(), 64)[0].shape == (64, 64, 3)
    same, _ = crop_square(frame, Roi(), 240)
    frame[:] = 0
    assert same.min() == 200  # its own pixels: the source's buffer may be reused before the writer runs


# -- the window, keys simulated through waitKey -------------------------------------------------------------


def test_window_keys_save_crops_into_class_folders(video, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shown = _fake_gui(monkeypatch, {1: "2", 3: "5", 4: "x", 5: "2", 6: "q"})
    s = run_collect(_opts(out, video, window=True), log=quiet)
    assert s.reason == "quit from the window" and s.frames == 7 and len(shown) == 7
    assert s.saved == {"0": 0, "1": 0, "2": 2, "3": 0, "4": 0, "5": 1} and s.totals == s.saved and s.error is None
    assert [_frame_of(p) for p in _files(out, "2")] == [1, 5] and [_frame_of(p) for p in _files(out, "5")] == [3]
    for p in _files(out, "2") + _files(out, "5"):
        assert cv2.imread(str(p)).shape == (config.COLLECT_SIZE, config.COLLECT_SIZE, 3)
        assert p.name.startswith(s.session + "_") and group_of(p.name) == s.session
    rows = _rows(out)
    assert list(rows[0]) == list(crop_writer.CSV_COLUMNS)
    assert [(r["file"], r["label"], r["frame"]) for r in rows] == [
        (f"2/{s.session}_00000.jpg", "2", "1"), (f"5/{s.session}_00001.jpg", "5", "3"), (f"2/{s.session}_00002.jpg", "2", "5")]
    assert {r["source"] for r in rows} == {f"video {video}"} and {r["roi"] for r in rows} == {"40,0,240"}
    assert {r["session"] for r in rows} == {s.session} and all("T" in r["time"] for r in rows)
    assert shown[0].shape == (2 * H, 2 * W, 3)  # the frame with the ROI box and the counts, enlarged as live's overlay
    assert hidden_files(out) == []


def test_burst_saves_one_crop_per_interval_until_b_again(video, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _fake_gui(monkeypatch, {0: "4", 2: "b", 14: "b", 20: "q"})
    s = run_collect(_opts(out, video, interval=0.2, window=True), log=quiet)
    # 0.2 s of a 15 fps video is 3 frames: the burst saves the frame b came on, then every third, up to b again.
    frames = [int(r["frame"]) for r in _rows(out)]
    assert frames == [0, 2, 5, 8, 11, 14] and s.saved["4"] == 6
    assert [_frame_of(p) for p in _files(out, "4")] == frames


def test_window_needs_a_display_before_the_source_opens(video, tmp_path, monkeypatch):
    def no_gui():
        raise EdgeSignsError("no display to show a window on")

    monkeypatch.setattr(collect, "check_gui", no_gui)
    monkeypatch.setattr(collect, "open_collect_source", lambda *a, **k: pytest.fail("the source was opened"))
    with pytest.raises(EdgeSignsError, match="no display"):
        run_collect(_opts(tmp_path / "out", video, window=True), log=quiet)


def test_without_a_label_or_a_window_it_asks_for_a_label_before_the_source_opens(video, tmp_path, monkeypatch):
    monkeypatch.setattr(collect, "open_collect_source", lambda *a, **k: pytest.fail("the source was opened"))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(EdgeSignsError, match=r"give --label L \[--count N\] to save crops without a window") as err:
        run_collect(_opts(tmp_path / "out", video), log=quiet)
    assert "\n" not in str(err.value)


def test_a_label_alone_runs_headless_and_says_so_in_one_line(video, tmp_path):
    log: list[str] = []
    s = run_collect(_opts(tmp_path / "out", video, label="3", count=3, countdown=0), log=log.append)
    assert s.saved["3"] == 3
    assert [m for m in log if m.startswith("running headless")] == ["running headless: --label names every crop's class (--window for the keys)"]


# -- headless ----------------------------------------------------------------------------------------------


def test_headless_saves_count_crops_at_the_interval(video, tmp_path):
    out = tmp_path / "out"
    log: list[str] = []
    s = run_collect(_opts(out, video, headless=True, label="3", count=4, interval=0.2, countdown=0), log=log.append)
    assert s.reason == "--count 4 saved" and s.saved["3"] == 4 and s.total_saved == 4 and not s.warnings
    assert [int(r["frame"]) for r in _rows(out)] == [0, 3, 6, 9]
    assert [_frame_of(p) for p in _files(out, "3")] == [0, 3, 6, 9]
    assert "saved 4/4 (3)" in log


def test_headless_countdown_is_announced_before_the_first_crop(video, tmp_path):
    log: list[str] = []
    t0 = time.monotonic()
    run_collect(_opts(tmp_path / "out", video, headless=True, label="1", count=1, countdown=1), log=log.append)
    assert time.monotonic() - t0 >= 1.0
    assert any("in 1 ..." in line for line in log) and log.index("go") < log.index("saved 1/1 (1)")


# -- a labelled video to a folder ---------------------------------------------------------------------------


def test_labelled_video_becomes_a_folder_with_the_ranges_counts(video, labels_csv, tmp_path):
    out = tmp_path / "out"
    s = run_collect(_opts(out, video, labels_csv=labels_csv), log=quiet)
    assert s.mode == "labels" and s.reason == "end of video" and s.frames == FRAMES
    assert s.saved == {"0": 1, "1": 10, "2": 0, "3": 0, "4": 7, "5": 0}
    assert sorted(_frame_of(p) for p in _files(out, "4")) == list(range(15, 22))  # only frames inside the ranges
    assert [int(r["frame"]) for r in _rows(out) if r["label"] == "0"] == [25]
    thinned = run_collect(_opts(tmp_path / "thin", video, labels_csv=labels_csv, interval=0.2), log=quiet)
    assert thinned.saved == {"0": 1, "1": 4, "2": 0, "3": 0, "4": 3, "5": 0}  # 0,3,6,9 / 15,18,21 / 25


def test_labels_beyond_the_end_of_the_video_are_a_warning(video, tmp_path):
    labels = tmp_path / "long.csv"
    labels.write_text("25,40,5\n")
    s = run_collect(_opts(tmp_path / "out", video, labels_csv=labels), log=quiet)
    assert s.saved["5"] == 5 and any(w.startswith("labels not reached:") for w in s.warnings)


def test_a_collected_folder_is_an_image_folder_dataset(video, tmp_path):
    from edge_signs.data import load_signs

    labels = tmp_path / "six.csv"
    labels.write_text("".join(f"{4 * k},{4 * k + 2},{k}\n" for k in range(6)))
    for split in ("train", "test"):
        run_collect(_opts(tmp_path / "ds" / split, video, labels_csv=labels), log=quiet)
    signs = load_signs(tmp_path / "ds")
    assert len(signs.train) == 18 and np.bincount(signs.train.y).tolist() == [3] * 6
    assert signs.train.x.shape[1:] == (config.IMAGE_SIZE, config.IMAGE_SIZE, 3)


# -- bad input: one-line errors before the source opens, named warnings after ---------------------------------


@pytest.mark.parametrize("kw, words", [
    ({"headless": True}, "--headless needs --label"),
    ({"headless": True, "window": True, "label": "1"}, "--headless and --window contradict"),
    ({"window": True, "labels_csv": Path("labels.csv")}, "--window and --labels"),
    ({"headless": True, "label": "7"}, "--label '7': not a label"),
    ({"label": "three"}, "not a label (labels are 0, 1, 2, 3, 4, 5)"),
    ({"labels_csv": Path("x.csv"), "label": "1"}, "--label and --labels"),
    ({"labels_csv": Path("x.csv"), "count": 5}, "--count goes with --label"),
    ({"camera": 0}, "name one source"),
    ({"interval": -1.0}, "--interval"),
    ({"quality": 0}, "--quality"),
])
def test_contradicting_options_are_one_line_errors_before_the_source_opens(video, tmp_path, monkeypatch, kw, words):
    monkeypatch.setattr(collect, "open_collect_source", lambda *a, **k: pytest.fail("the source was opened"))
    with pytest.raises(EdgeSignsError, match=words.replace("(", r"\(").replace(")", r"\)")):
        run_collect(_opts(tmp_path / "out", video, **kw), log=quiet)
    assert not (tmp_path / "out").exists()


def test_labels_without_a_video_is_an_error(tmp_path):
    with pytest.raises(EdgeSignsError, match="--labels scores a --video"):
        CollectOptions(out=tmp_path, labels_csv=tmp_path / "x.csv")


class _Dies(FrameSource):
    """A camera that delivers ``n`` frames, then only failed reads (unplugged mid-burst)."""

    live = True

    def __init__(self, n: int):
        self.n, self.k = n, 0
        self.name = "dying camera"
        self.end_reason = "dying camera stopped delivering frames"

    def read(self):
        if self.k >= self.n:
            return None
        self.k += 1
        return np.full((H, W, 3), _level(self.k - 1), np.uint8), None


def test_camera_that_stops_mid_burst_keeps_what_was_saved(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "READ_RETRY_SLEEP_S", 0.0)  # the failed reads after the last frame are not waited on
    out = tmp_path / "out"
    _fake_gui(monkeypatch, {0: "3", 1: "b"})
    ticks = iter(np.arange(1000) / 30.0)
    s = run_collect(CollectOptions(out=out, interval=0.0, window=True), source=_Dies(8), clock=lambda: next(ticks), log=quiet)
    assert s.reason == "dying camera stopped delivering frames" and s.saved["3"] == 8  # frame 0 by key, 1..7 by the burst
    assert [_frame_of(p) for p in _files(out, "3")] == list(range(8))
    assert any(w.startswith("source stopped mid-burst:") for w in s.warnings)
    headless = run_collect(CollectOptions(out=out, headless=True, label="1", count=50, interval=0, countdown=0),
                           source=_Dies(5), log=quiet)
    assert headless.saved["1"] == 5 and len(_files(out, "1")) == 5
    assert any(w.startswith("incomplete: dying camera stopped delivering frames after 5 of 50 crops") for w in headless.warnings)


def test_sigterm_mid_run_ends_the_loop_and_writes_every_queued_crop(tmp_path):
    class Endless(FrameSource):
        live = True
        name = "endless camera"

        def read(self):
            time.sleep(0.005)
            return np.full((H, W, 3), 99, np.uint8), None

    out = tmp_path / "out"
    timer = threading.Timer(0.5, os.kill, (os.getpid(), 15))
    timer.start()
    try:
        s = run_collect(CollectOptions(out=out, headless=True, label="2", count=10**6, interval=0, countdown=0),
                        source=Endless(), log=quiet)
    finally:
        timer.cancel()
    assert s.reason == "terminated (SIGTERM)" and s.saved["2"] > 0
    assert len(_files(out, "2")) == s.saved["2"] == len(_rows(out)) and s.dropped == 0


# -- the command -------------------------------------------------------------------------------------------


def test_cli_headless_run_and_one_line_errors(video, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli.main, ["collect", "--out", str(tmp_path / "out"), "--video", str(video), "--headless", "--label", "4",
                                  "--count", "3", "--countdown", "0", "--size", "96"])
    assert ok.exit_code == 0, ok.output
    assert "saved 3 crops (96x96 JPEG)" in ok.stdout and "4: 3" in ok.stdout and "source: video" in ok.stderr
    assert cv2.imread(str(_files(tmp_path / "out", "4")[0])).shape == (96, 96, 3)
    implied = runner.invoke(cli.main, ["collect", "--out", str(tmp_path / "o3"), "--video", str(video), "--label", "3", "--count", "3"])
    assert implied.exit_code == 0 and "3: 3" in implied.stdout and "running headless: --label" in implied.stderr, implied.output
    for args, words in [
        (["--headless"], "--headless needs --label"),
        (["--headless", "--label", "9"], "--label '9': not a label"),
        (["--out", str(UNWRITABLE / "x"), "--headless", "--label", "1"], "not writable"),
        (["--labels", str(tmp_path / "missing.csv")], "labels CSV not found"),
    ]:
        argv = ["collect", "--video", str(video)] + (["--out", str(tmp_path / "o2")] if "--out" not in args else []) + args
        bad = runner.invoke(cli.main, argv)
        lines = [ln for ln in bad.stderr.splitlines() if ln.strip() and not ln.startswith("source:")]
        assert bad.exit_code == 1 and len(lines) == 1 and lines[0].startswith("edge-signs: error: ") and words in lines[0], bad.stderr
        assert "Traceback" not in bad.output and bad.stdout == ""


def test_size_has_an_upper_bound(video, tmp_path):
    """--size 20000 would make 1.2 GB crops (and a queue of them): a one-line error naming the bound, before any work."""
    with pytest.raises(EdgeSignsError, match=f"--size must be at most {config.COLLECT_MAX_SIZE} pixels, got 20000"):
        CollectOptions(out=tmp_path / "out", video=str(video), headless=True, label="1", size=20000)
    bad = CliRunner().invoke(cli.main, ["collect", "--out", str(tmp_path / "out"), "--video", str(video), "--headless", "--label", "1",
                                        "--size", "20000"])
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert bad.exit_code != 0 and len(lines) == 1 and "--size" in lines[0] and str(config.COLLECT_MAX_SIZE) in lines[0], bad.stderr
    assert not (tmp_path / "out").exists()
