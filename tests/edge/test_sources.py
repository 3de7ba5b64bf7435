"""Frame sources: retries and endings (FrameSource), the SIGNS test set replayed as frames, and
video files with a labels CSV. Cameras are in test_cameras.py, the threads that read sources in test_capture.py.

A source says "no frame now" by returning None from read() and "no frames left" by
raising EndOfStream; iterating it owns the retries, and ``ended`` says why it stopped.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge import frame_source
from edge_signs.edge.live import LiveOptions, run_live
from edge_signs.edge.sources import EndOfStream, FrameSource, TestsetSource, VideoSource
from edge_signs.edge.truth import LabelRanges, read_label_ranges
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet

FRAME = np.full((48, 64, 3), 90, np.uint8)


class Scripted(FrameSource):
    """Plays a script: a frame ("f"), a failed read ("-"), then EndOfStream when the script runs out (if ``ends``)."""

    def __init__(self, script: str, *, live: bool = False, ends: bool = True):
        self.script = list(script)
        self.live = live
        self.ends = ends
        self.reads = 0
        self.delivered: list[int] = []  # the read numbers that gave a frame
        self.closed = 0
        self.name = "scripted"
        self.end_reason = "scripted source stopped"
        self.no_frames_message = "scripted source delivered no frames"

    def read(self):
        self.reads += 1
        if not self.script:
            if self.ends:
                raise EndOfStream
            return None
        if self.script.pop(0) != "f":
            return None
        self.delivered.append(self.reads)
        return FRAME, None

    def close(self):
        self.closed += 1


@pytest.fixture
def sleeps(monkeypatch) -> list:
    slept: list = []
    monkeypatch.setattr(frame_source.time, "sleep", slept.append)
    return slept


# -- FrameSource: retries and endings --------------------------------------------------------------


def test_failed_reads_are_retried_and_frames_come_through(sleeps):
    src = Scripted("f--f-f")
    frames = list(src)
    assert src.delivered == [1, 4, 6]  # every read after a failure was retried
    assert len(frames) == 3 and all(f is FRAME and t is None for f, t in frames)
    assert src.ended == "scripted source stopped" and sleeps == []  # a file-like source is not waited on


def test_a_live_source_sleeps_between_failed_reads(sleeps):
    frames = list(Scripted("f--f", live=True))
    assert len(frames) == 2 and sleeps == [config.READ_RETRY_SLEEP_S] * 2


def test_too_many_failed_reads_end_the_source(sleeps):
    src = Scripted("ff" + "-" * config.READ_RETRIES + "f", live=True)
    assert len(list(src)) == 3  # READ_RETRIES failures in a row are still retried
    src = Scripted("ff", live=True, ends=False)  # then nothing, ever
    assert len(list(src)) == 2
    assert src.ended == "scripted source stopped" and src.reads == 2 + config.READ_RETRIES + 1
    assert len(sleeps) == config.READ_RETRIES + config.READ_RETRIES


def test_a_source_that_never_delivers_is_an_error(sleeps):
    src = Scripted("", ends=False)
    with pytest.raises(EdgeSignsError, match="scripted source delivered no frames"):
        list(src)
    assert src.reads == config.READ_RETRIES + 1


def test_end_of_stream_is_an_ending_not_an_error():
    src = Scripted("")
    assert list(src) == [] and src.ended == "scripted source stopped" and src.reads == 1


def test_context_manager_closes():
    with Scripted("f") as src:
        pass
    assert src.closed == 1


def test_live_loop_runs_on_any_frame_source(tiny_models, monkeypatch, sleeps):
    """run_live takes whatever open_source gives: dropped frames cost nothing, a dead source ends the run."""
    import edge_signs.edge.live as live

    src = Scripted("f-f--f" + "f" * 5, live=True, ends=False)
    monkeypatch.setattr(live, "open_source", lambda options, labels, **kw: src)
    summary = run_live(tiny_models["int8"], LiveOptions(headless=True, status_interval=0), log=quiet)
    assert summary.frames == 8 and summary.reason == "scripted source stopped" and src.closed == 1
    assert summary.source == "scripted" and summary.scored == 0 and summary.accuracy is None
    src = Scripted("f" * 20, live=True)
    summary = run_live(tiny_models["int8"], LiveOptions(headless=True, status_interval=0, max_frames=7), log=quiet)
    assert summary.frames == 7 and summary.reason == "--max-frames 7 reached" and src.closed == 1


# -- the SIGNS test set as frames -----------------------------------------------------------------------------


def test_testset_source_gives_bgr_frames_with_labels():
    rgb = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    src = TestsetSource(rgb, np.array([4, 0, 2]))
    frames = list(src)
    assert [t for _, t in frames] == [4, 0, 2] and src.ended == "end of test set"
    assert all(np.array_equal(f[..., ::-1], im) for (f, _), im in zip(frames, rgb))
    assert src.has_truth and src.independent_frames and not src.live
    looped = TestsetSource(rgb, np.array([4, 0, 2]), loop=True)
    it = iter(looped)
    assert [next(it)[1] for _ in range(7)] == [4, 0, 2, 4, 0, 2, 4]
    assert list(TestsetSource(rgb[:0], np.array([], int), loop=True)) == []  # an empty loop ends at once


# -- video files and their ground truth -------------------------------------------------------------------------


def _write_video(path, n: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()


def test_video_file_frames_truth_and_loop(tmp_path):
    video = tmp_path / "clip.avi"
    _write_video(video, 5)
    ranges = LabelRanges([(1, 2, 3)])
    src = VideoSource(str(video), ranges)
    frames = list(src)
    assert len(frames) == 5 and src.ended == "end of video" and not src.live and src.has_truth
    assert [t for _, t in frames] == [None, 3, 3, None, None]
    assert src.fps == pytest.approx(10.0)
    assert frames[4][0].mean() == pytest.approx(80, abs=3)  # in order
    src.close()
    looped = iter(VideoSource(str(video), ranges, loop=True))
    assert [next(looped)[1] for _ in range(8)] == [None, 3, 3, None, None, None, 3, 3]  # the CSV counts from 0 again


def test_video_errors_are_one_line(tmp_path):
    with pytest.raises(EdgeSignsError, match="video file not found"):
        VideoSource(str(tmp_path / "none.avi"))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(EdgeSignsError, match="OpenCV cannot open this video file"):
        VideoSource(str(junk))
    if not any(line.strip().startswith("GStreamer:") and "YES" in line for line in cv2.getBuildInformation().splitlines()):
        with pytest.raises(EdgeSignsError, match="GStreamer"):
            VideoSource("libcamerasrc ! videoconvert ! appsink")


@pytest.mark.parametrize("content, message", [
    ("start_frame,end_frame,label\n0,4,7\n", "row 2: unknown label '7'"),
    ("0,x,1\n", "row 1: start_frame and end_frame must be integers"),
    ("5,4,1\n", "row 1: need 0 <= start_frame <= end_frame"),
    ("0,4,1\n3,6,2\n", "row 2: frames 3..4 overlap the range of row 1"),
    ("0,4\n", "row 1: expected 3 columns"),
    ("start_frame,end_frame,label\n", "no label rows"),
])
def test_bad_labels_csv_names_file_and_row(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(EdgeSignsError) as err:
        read_label_ranges(path, config.LABELS)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_label_ranges_lookup(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("# comment\nstart_frame,end_frame,label\n10,12,5\n0,2,0\n")
    ranges = read_label_ranges(path, config.LABELS)
    assert len(ranges) == 2
    assert [ranges.lookup(i) for i in (0, 2, 3, 9, 10, 12, 13)] == [0, 0, None, None, 5, 5, None]


def test_labels_by_name_or_index(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("0,0,b\n1,1,2\n")
    ranges = read_label_ranges(path, ["a", "b", "c"])
    assert [ranges.lookup(0), ranges.lookup(1)] == [1, 2]
    with pytest.raises(EdgeSignsError, match="labels CSV not found"):
        read_label_ranges(tmp_path / "none.csv", config.LABELS)

