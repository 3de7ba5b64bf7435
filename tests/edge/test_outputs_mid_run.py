"""`live`'s outputs when something goes wrong mid-run, and outputs onto special files.

Each output (--json, --record) fails alone, with its own file name in the message; what
was written completely is kept; an incomplete file never replaces a complete one; a
temporary file that holds someone's only copy is never removed as stale. A filling file
system is a small tmpfs the test mounts (root only; skipped otherwise). FIFOs and symlinks
are made in the test's temporary folder.

Runs without TensorFlow, on copies of the committed tiny models.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_signs.edge.live import LiveOptions, run_live
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from tests.conftest import run_cli
from tests.faults import digests, hidden_files, one_line_error

TESTSET = ["--testset", "--headless", "--status-every", "0"]


@pytest.fixture
def model(tiny_models, tmp_path) -> Path:
    for suffix in (".tflite", ".json"):
        shutil.copy(tiny_models["int8"].with_suffix(suffix), tmp_path / f"m_int8{suffix}")
    return tmp_path / "m_int8.tflite"


def _frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _good_recording(path: Path, frames: int = 7) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (96, 96))
    for k in range(frames):
        writer.write(np.full((96, 96, 3), 30 * k, np.uint8))
    writer.release()
    assert _frames(path) == frames


@contextlib.contextmanager
def _small_filesystem(where: Path, size: str):
    """A tmpfs of ``size`` mounted at ``where``: a disk that fills. Root only."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True).returncode:
        pytest.skip("this machine does not let the test mount a tmpfs")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- class 1: a recording is never lost or silently cut ------------------------------------------------------


def test_json_that_cannot_be_published_keeps_the_recording(model, signs_dir, tmp_path):
    """--json whose destination cannot be replaced at the end (a folder appeared there) fails alone: the
    recording of the same run is published, playable with every frame, and the error names the JSON file."""
    record, jsonl = tmp_path / "rec.avi", tmp_path / "frames.jsonl"

    def block_the_json(r):
        if r.frame == 3:
            (jsonl / "blocker").mkdir(parents=True)

    with pytest.raises(EdgeSignsError) as caught:
        run_live(model, LiveOptions(testset=True, data=signs_dir, headless=True, status_interval=0, max_frames=12,
                                    record=record, json_path=jsonl), log=quiet, on_frame=block_the_json)
    message = str(caught.value)
    assert message.startswith(f"--json {jsonl}:") and "--record" not in message, message
    assert _frames(record) == 12  # the recording is complete, and published
    assert caught.value.summary.frames == 12
    assert hidden_files(tmp_path) == []  # no temporary left for a later run to delete


def test_json_on_a_filling_disk_fails_alone_and_keeps_the_recording(model, signs_dir, tmp_path):
    """--json on a file system that fills mid-run: one error naming the JSON file, exit 1 (no abort), the
    recording published and playable with every frame the run counted, nothing left behind."""
    small = tmp_path / "small"
    with _small_filesystem(small, "48k"):
        jsonl, record = small / "frames.jsonl", tmp_path / "rec.avi"
        (small / "frames.jsonl").write_text('{"old": 1}\n')
        before = digests(jsonl)
        proc = run_cli("live", model, *TESTSET, "--loop", "--max-frames", "3000", "--signs", signs_dir, "--json", jsonl, "--record", record)
        assert "terminate called" not in proc.stderr
        error = one_line_error(proc, f"--json {jsonl}", before_work=False)
        assert "--record" not in error and "No space left" in error, error
        frames = int(proc.stdout.split(" frames from ")[0].splitlines()[-1])
        assert 0 < frames < 3000
        assert _frames(record) == frames  # kept, with every frame the summary counts
        assert digests(jsonl) == before  # the old JSON lines are not replaced by an incomplete file
        assert hidden_files(tmp_path) == []


def test_record_on_a_filling_disk_is_not_published_and_keeps_the_old_one(model, signs_dir, tmp_path):
    """--record onto a file system that fills: not "wrote rec.avi (3000 frames)" with exit 0; the previous good
    recording stays, the error names the recording, and the JSON lines of the same run are kept."""
    small = tmp_path / "small"
    with _small_filesystem(small, "1m"):
        record, jsonl = small / "rec.avi", tmp_path / "frames.jsonl"
        _good_recording(record)
        before = digests(record)
        proc = run_cli("live", model, *TESTSET, "--loop", "--max-frames", "3000", "--signs", signs_dir, "--record", record, "--json", jsonl)
        assert "terminate called" not in proc.stderr
        error = one_line_error(proc, f"--record {record}", before_work=False)
        assert "--json" not in error, error
        assert f"wrote {record}" not in proc.stderr
        assert digests(record) == before and _frames(record) == 7
        frames = int(proc.stdout.split(" frames from ")[0].splitlines()[-1])
        assert len(jsonl.read_text().splitlines()) == frames  # the other output is complete and kept
        assert hidden_files(small) == []


def test_a_complete_recording_left_by_a_dead_run_is_not_removed_as_stale(model, signs_dir, tmp_path):
    """A temporary recording whose writer is dead but which is complete (playable to its last frame) is
    someone's only copy: the next `live --record` to that path keeps it, under a name one can see."""
    record = tmp_path / "out.avi"
    pid = _dead_pid()
    left = tmp_path / f".out.avi.tmp-{pid}-abcd1234.avi"
    _good_recording(left, frames=9)
    proc = run_cli("live", model, *TESTSET, "--max-frames", "4", "--signs", signs_dir, "--record", record)
    assert proc.returncode == 0, proc.stderr
    kept = [p for p in tmp_path.iterdir() if p.suffix == ".avi" and p != record and _frames(p) == 9]
    assert len(kept) == 1, sorted(p.name for p in tmp_path.iterdir())
    assert kept[0].name in proc.stderr  # said where it went
    assert _frames(record) == 4


def test_a_temp_file_whose_writer_still_holds_it_is_not_removed(model, signs_dir, tmp_path):
    """A PID in a name is no proof that its writer is dead (another PID namespace, a container): a temporary file
    its writer still holds (locked) stays, even when it is incomplete and the PID in its name is gone."""
    record = tmp_path / "out.avi"
    held = tmp_path / f".out.avi.tmp-{_dead_pid()}-abcd1234.avi"
    held.write_bytes(b"RIFF....AVI half written")
    holder = open(held, "rb")
    fcntl.flock(holder, fcntl.LOCK_EX)  # what a live writer of the file holds
    try:
        proc = run_cli("live", model, *TESTSET, "--max-frames", "3", "--signs", signs_dir, "--record", record)
        assert proc.returncode == 0, proc.stderr
        assert held.exists()
    finally:
        holder.close()
    # Once nobody holds it, the incomplete file of a dead writer is removed by the next run.
    proc = run_cli("live", model, *TESTSET, "--max-frames", "3", "--signs", signs_dir, "--record", record)
    assert proc.returncode == 0, proc.stderr
    assert not held.exists() and hidden_files(tmp_path) == []


# -- class 2: outputs onto special files are streamed to or refused, never replaced ---------------------------


def _read_fifo(path: Path, into: list) -> threading.Thread:
    def read():
        with open(path, "rb") as f:
            into.append(f.read())

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_json_onto_a_fifo_streams_into_it(model, signs_dir, tmp_path):
    """--json onto a FIFO: the reader gets the JSON lines, and the FIFO stays a FIFO."""
    fifo = tmp_path / "frames.fifo"
    os.mkfifo(fifo)
    got: list = []
    reader = _read_fifo(fifo, got)
    proc = run_cli("live", model, *TESTSET, "--max-frames", "5", "--signs", signs_dir, "--json", fifo, timeout=120)
    reader.join(timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert fifo.is_fifo()
    lines = got[0].decode().splitlines()
    assert [int(ln.split('"frame": ')[1].split(",")[0]) for ln in lines] == list(range(5))
    assert hidden_files(tmp_path) == []


def test_json_onto_a_symlink_to_stdout_streams_to_stdout(model, signs_dir, tmp_path):
    """--json onto a symlink to /proc/self/fd/1 writes to the process's stdout; the link stays a link."""
    link = tmp_path / "stdout.jsonl"
    link.symlink_to("/proc/self/fd/1")
    proc = run_cli("live", model, *TESTSET, "--max-frames", "4", "--signs", signs_dir, "--json", link)
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"
    assert sum(line.startswith('{"frame": ') for line in proc.stdout.splitlines()) == 4
    assert hidden_files(tmp_path) == []


def test_json_onto_a_character_device_streams_into_it(model, signs_dir, tmp_path):
    """--json onto a character device (a null device made here, as /dev/null is): written, never replaced."""
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    null = tmp_path / "null"
    os.mknod(null, 0o666 | 0o020000, os.makedev(1, 3))  # S_IFCHR: the kernel's null device
    proc = run_cli("live", model, *TESTSET, "--max-frames", "3", "--signs", signs_dir, "--json", null)
    assert proc.returncode == 0, proc.stderr
    assert null.is_char_device()
    assert hidden_files(tmp_path) == []


def test_record_onto_a_fifo_is_refused_before_the_run(model, signs_dir, tmp_path):
    """A video is rewritten when it ends, so it cannot stream: --record onto a FIFO is one line, the FIFO untouched."""
    fifo = tmp_path / "rec.avi"
    os.mkfifo(fifo)
    proc = run_cli("live", model, *TESTSET, "--max-frames", "3", "--signs", signs_dir, "--record", fifo, timeout=120)
    one_line_error(proc, f"--record {fifo}", "is a FIFO", "regular file")
    assert fifo.is_fifo()


def test_outputs_onto_a_symlink_replace_its_target_not_the_link(model, signs_dir, tmp_path):
    """--record and --json onto symlinks to files elsewhere: the targets get the new content, the links stay links."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "rec.avi").write_bytes(b"old")
    (elsewhere / "frames.jsonl").write_text("old\n")
    for name in ("rec.avi", "frames.jsonl"):
        (tmp_path / name).symlink_to(elsewhere / name)
    proc = run_cli("live", model, *TESTSET, "--max-frames", "6", "--signs", signs_dir, "--record", tmp_path / "rec.avi",
                   "--json", tmp_path / "frames.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "rec.avi").is_symlink() and (tmp_path / "frames.jsonl").is_symlink()
    assert _frames(elsewhere / "rec.avi") == 6 and len((elsewhere / "frames.jsonl").read_text().splitlines()) == 6
    assert hidden_files(tmp_path) == []
