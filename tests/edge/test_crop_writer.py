"""collect's folder on disk (crop_writer.py): names never overwritten, a killed run's temporaries removed, an
unwritable or filling disk, and the log always agreeing with the crops. A small real MJPG video stands in for the camera."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edge_signs import cli, config
from edge_signs.edge import collect, crop_writer
from edge_signs.edge.collect import run_collect
from edge_signs.edge.crop_writer import Crop, CropWriter
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from edge_signs.own_data import group_of
from tests.edge.test_collect import _files, _opts, _rows, write_clip
from tests.faults import UNWRITABLE, hidden_files


@pytest.fixture
def video(tmp_path) -> Path:
    return write_clip(tmp_path / "clip.avi")


def test_two_runs_into_one_out_keep_both_sessions_and_never_overwrite(video, tmp_path, monkeypatch):
    out = tmp_path / "out"
    opts = _opts(out, video, headless=True, label="0", count=3, countdown=0, interval=0)
    first = run_collect(opts, log=quiet)
    second = run_collect(opts, log=quiet)
    assert first.session != second.session
    names = [p.name for p in _files(out, "0")]
    assert len(names) == 6 and {group_of(n) for n in names} == {first.session, second.session}
    assert second.totals["0"] == 6
    rows = _rows(out)  # one header, then every crop of both sessions
    assert len(rows) == 6 and (out / config.COLLECT_CSV).read_text().count("file,label") == 1
    # A name already taken (a copied-in file, a clock set back) is skipped, never replaced.
    monkeypatch.setattr(collect, "new_session", lambda: "s20260101-000000-abcd")
    (out / "0" / "s20260101-000000-abcd_00000.jpg").write_bytes(b"keep me")
    third = run_collect(opts, log=quiet)
    assert (out / "0" / "s20260101-000000-abcd_00000.jpg").read_bytes() == b"keep me"
    assert sorted(p.name for p in (out / "0").glob("s20260101-000000-abcd_*")) == [
        f"s20260101-000000-abcd_{n:05d}.jpg" for n in range(4)]
    assert third.saved["0"] == 3 and hidden_files(out) == []


def test_a_killed_collects_temporary_files_are_removed_by_the_next(video, tmp_path):
    out = tmp_path / "out"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / "2").mkdir(parents=True)
    stale = out / "2" / f".s20260101-000000-abcd_00007.jpg.tmp-{dead.pid}-x1y2"
    stale.write_bytes(b"\xff\xd8half a jpeg")
    mine = out / "2" / f".s20260101-000000-abcd_00008.jpg.tmp-{os.getpid()}-x1y2"  # a live writer's: kept
    mine.write_bytes(b"\xff\xd8")
    run_collect(_opts(out, video, headless=True, label="2", count=1, countdown=0), log=quiet)
    assert not stale.exists() and mine.exists()
    mine.unlink()


def test_unwritable_or_full_out_is_refused_before_the_source_opens(video, tmp_path, monkeypatch):
    monkeypatch.setattr(collect, "open_collect_source", lambda *a, **k: pytest.fail("the source was opened"))
    with pytest.raises(EdgeSignsError, match="--out .*not writable"):
        run_collect(_opts(UNWRITABLE / "out", video, headless=True, label="1"), log=quiet)
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeSignsError, match="is a file"):
        run_collect(_opts(tmp_path / "file", video, headless=True, label="1"), log=quiet)
    (tmp_path / "out" / "3").parent.mkdir()
    (tmp_path / "out" / "3").write_text("not a folder")
    with pytest.raises(EdgeSignsError, match="must be folders"):
        run_collect(_opts(tmp_path / "out", video, headless=True, label="1"), log=quiet)
    usage = crop_writer.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(crop_writer.shutil, "disk_usage", lambda p: usage._replace(free=20 * 2**20))
    with pytest.raises(EdgeSignsError, match=f"only 20.0 MB free on its disk; collect needs at least {config.COLLECT_MIN_FREE_MB} MB"):
        run_collect(_opts(tmp_path / "new", video, headless=True, label="1"), log=quiet)


def test_disk_filling_up_mid_run_keeps_what_was_saved(video, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real = os.open
    calls = []

    def open_(path, flags, *args, **kwargs):  # the disk fills after three crops: the fourth one's file cannot be created
        if ".jpg.tmp-" in os.fspath(path):
            calls.append(1)
            if len(calls) > 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(crop_writer.os, "open", open_)
    s = run_collect(_opts(out, video, headless=True, label="5", count=20, interval=0, countdown=0), log=quiet)
    assert s.saved["5"] == 3 and len(_files(out, "5")) == 3 and len(_rows(out)) == 3
    assert s.error is not None and "No space left on device" in s.error and "3 crops saved before it are kept" in s.error
    assert hidden_files(out) == []
    # The CLI prints the summary and ends with one error line, exit 1.
    calls.clear()
    result = CliRunner().invoke(cli.main, ["collect", "--out", str(tmp_path / "cli"), "--video", str(video), "--headless",
                                           "--label", "5", "--count", "20", "--interval", "0", "--countdown", "0"])
    assert result.exit_code == 1 and "saved 3 crops" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("edge-signs: error: saving stopped: ")


def test_a_full_queue_drops_a_cameras_crops_and_counts_them(tmp_path, monkeypatch):
    gate = threading.Event()
    real = cv2.imencode
    monkeypatch.setattr(crop_writer.cv2, "imencode", lambda *a: (gate.wait(5), real(*a))[1])  # a disk that keeps the writer waiting
    writer = CropWriter(tmp_path, "s20260101-000000-abcd", "camera 0", block=False, maxsize=2)
    crop = np.zeros((16, 16, 3), np.uint8)
    results = [writer.submit(Crop(crop, "1", (0, 0, 16), time.time(), k)) for k in range(6)]
    gate.set()
    writer.close()
    # One in the writer's hands, two queued, the rest dropped (never silently).
    assert results.count(False) == writer.dropped >= 2 and writer.saved["1"] == results.count(True)
    assert len(_files(tmp_path, "1")) == writer.saved["1"]


# -- the log and the crops agree -----------------------------------------------------------------------------


def test_a_log_that_cannot_be_written_is_refused_before_the_source_opens(video, tmp_path, monkeypatch):
    """collect_log.csv that cannot be written (here a link to where nobody, root included, can create a file):
    one line naming the log before the source opens, and no crop saved that the log would not list."""
    out = tmp_path / "out"
    out.mkdir()
    (out / config.COLLECT_CSV).symlink_to(UNWRITABLE / config.COLLECT_CSV)
    monkeypatch.setattr(collect, "open_collect_source", lambda *a, **k: pytest.fail("the source was opened"))
    with pytest.raises(EdgeSignsError, match=f"--out {out}: {out / config.COLLECT_CSV} cannot be written"):
        run_collect(_opts(out, video, headless=True, label="2", count=2, countdown=0), log=quiet)
    assert not (out / "2").exists()


def test_appending_to_a_log_without_a_final_newline_starts_a_new_row(video, tmp_path):
    """A log whose last row lacks its newline (an editor, a copy cut short): the next row is not glued onto it."""
    out = tmp_path / "out"
    run_collect(_opts(out, video, headless=True, label="1", count=1, countdown=0), log=quiet)
    log = out / config.COLLECT_CSV
    log.write_bytes(log.read_bytes().rstrip(b"\n"))
    run_collect(_opts(out, video, headless=True, label="2", count=2, countdown=0), log=quiet)
    rows = _rows(out)
    assert [r["label"] for r in rows] == ["1", "2", "2"]
    assert sorted(r["file"] for r in rows) == sorted(f"{p.parent.name}/{p.name}" for label in "12" for p in _files(out, label))


def test_a_crop_whose_log_row_cannot_be_written_is_not_kept(video, tmp_path):
    """The log's disk fills mid-run (here the log is a link onto a full tmpfs; root only): the crop whose row could not be
    written is not kept nor counted, so the folder and its log still agree, and the error names the log."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("this machine does not let the test mount a tmpfs")
    try:
        log = small / config.COLLECT_CSV
        log.write_bytes(b"file,label,source,roi,time,session,frame\n".ljust(4095, b"#") + b"\n")  # one page, full
        (small / "filler").write_bytes(b"x" * 4096)  # and the other one
        out = tmp_path / "out"
        out.mkdir()
        (out / config.COLLECT_CSV).symlink_to(log)
        s = run_collect(_opts(out, video, headless=True, label="5", count=3, countdown=0), log=quiet)
        assert s.error is not None and str(log) in s.error or config.COLLECT_CSV in s.error, s.error
        assert s.total_saved == 0 and _files(out, "5") == []
    finally:
        subprocess.run(["umount", "-l", str(small)], capture_output=True)
