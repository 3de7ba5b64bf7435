"""The rules every writer follows (edge_signs.artifacts): strict JSON, no half-written or
lost files, temporary files a killed writer left are removed by the next one, one writer per
folder, and output paths checked before the work.

No TensorFlow. The commands that rely on these rules are tested end to end in
tests/edge/test_outputs.py and tests/trainer/test_faults.py.
"""

from __future__ import annotations

import math
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edge_signs import artifacts
from edge_signs.errors import EdgeSignsError
from tests.conftest import REPO
from tests.faults import UNWRITABLE, hidden_files, strict_json


def _dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _python(code: str, *args: str) -> subprocess.Popen:
    """A child interpreter running ``code`` with this checkout's edge_signs, stdout piped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


# -- strict JSON -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_write_json_refuses_non_finite_numbers_and_keeps_the_old_file(tmp_path, bad):
    """JSON is always strict JSON (no NaN in metrics.json): a non-finite number is a one-line error,
    the existing file keeps its bytes, no temporary is left."""
    target = tmp_path / "metrics.json"
    target.write_text('{"test_accuracy": 0.97}\n')
    before = target.read_bytes()
    with pytest.raises(EdgeSignsError, match="non-finite") as err:
        artifacts.write_json(target, {"train_loss": 0.1, "history": {"loss": [1.0, bad]}})
    assert "\n" not in str(err.value)
    assert target.read_bytes() == before
    assert hidden_files(tmp_path) == []


def test_dumps_is_strict_and_finite_or_none_marks_unmeasured_values_null():
    """JSON is always strict JSON (`evaluate --json` of a broken model too): reports map NaN/infinity
    to null, everywhere in nested data, before writing."""
    with pytest.raises(EdgeSignsError):
        artifacts.dumps({"loss": float("nan")})
    report = {"loss": float("nan"), "rows": [{"p90": float("inf")}, (1.5, -float("inf"))], "n": 3, "ok": True, "name": "x"}
    cleaned = artifacts.finite_or_none(report)
    assert cleaned == {"loss": None, "rows": [{"p90": None}, [1.5, None]], "n": 3, "ok": True, "name": "x"}
    assert strict_json(artifacts.dumps(cleaned)) == cleaned
    assert math.isnan(report["loss"])  # the input is not changed


def test_write_json_replaces_atomically_with_normal_permissions(tmp_path):
    """Existing files are only replaced atomically, when the new content is complete."""
    target = tmp_path / "history.json"
    target.write_text("old\n")
    artifacts.write_json(target, {"loss": [1.0, 0.5]})
    assert strict_json(target.read_text()) == {"loss": [1.0, 0.5]}
    # mkstemp's private 0600 is not what a result file gets
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    assert hidden_files(tmp_path) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- temporary files of killed writers -------------------------------------------------------------


def test_temp_file_of_a_dead_writer_is_removed_by_the_next_write(tmp_path):
    """A killed run's hidden temporary file is cleaned up by the next run: a temp named for a dead
    PID goes; one of a live process (a writer still at work) stays."""
    target = tmp_path / "out.avi"
    dead = tmp_path / f".out.avi.tmp-{_dead_pid()}-abc123.avi"
    dead.write_bytes(b"half a video")
    alive = tmp_path / f".out.avi.tmp-{os.getppid()}-def456.avi"  # our parent is alive
    alive.write_bytes(b"someone else's video in progress")
    other = tmp_path / f".other.avi.tmp-{_dead_pid()}-x.avi"  # another target's file is not ours to remove
    other.write_bytes(b"x")

    artifacts.write_bytes(target, b"new video")

    assert target.read_bytes() == b"new video"
    assert not dead.exists()
    assert alive.exists() and other.exists()


def test_writer_killed_mid_write_leaves_the_old_file_and_the_next_writer_cleans_up(tmp_path):
    """Existing files are only replaced at the end: a real process killed with SIGKILL while a
    PendingFile is open (a recording, say) leaves the old file."""
    target = tmp_path / "frames.jsonl"
    target.write_text('{"old": 1}\n')
    child = _python(
        "import sys, time\n"
        "from edge_signs.artifacts import PendingFile\n"
        "f = PendingFile(sys.argv[1])\n"
        "f.tmp.write_text('{\"frame\": 0}\\n')\n"
        "print(f.tmp, flush=True)\n"
        "time.sleep(120)\n",
        str(target),
    )
    try:
        tmp = Path(child.stdout.readline().strip())
        assert tmp.parent == tmp_path and tmp.name.startswith(".frames.jsonl.tmp-"), tmp
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert tmp.exists()  # what kill -9 leaves
    assert target.read_text() == '{"old": 1}\n'  # and the old file is untouched

    again = artifacts.PendingFile(target)  # the next writer of the same file
    assert not tmp.exists()
    again.tmp.write_text('{"frame": 0}\n{"frame": 1}\n')
    assert target.read_text() == '{"old": 1}\n'  # nothing visible before the end
    again.close(keep=True)
    assert target.read_text() == '{"frame": 0}\n{"frame": 1}\n'
    assert hidden_files(tmp_path) == []


def test_pending_file_dropped_on_error_keeps_the_old_file(tmp_path):
    """A run that fails leaves the previous file (prev.jsonl) as it was, not truncated."""
    target = tmp_path / "prev.jsonl"
    target.write_text('{"frame": 0}\n')
    pending = artifacts.PendingFile(target)
    pending.tmp.write_text("partial")
    pending.close(keep=False)
    assert target.read_text() == '{"frame": 0}\n'
    assert hidden_files(tmp_path) == []


def test_atomic_path_removes_its_temp_when_the_writer_fails(tmp_path):
    """Existing files are only replaced when the new content is complete."""
    target = tmp_path / "model.keras"
    target.write_bytes(b"good model")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_path(target, suffix=".keras") as tmp:
            tmp.write_bytes(b"half a model")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"good model"
    assert hidden_files(tmp_path) == []


# -- one writer per folder -------------------------------------------------------------------------

_HOLD_LOCK = """
import sys, time
from edge_signs.artifacts import folder_lock
with folder_lock(sys.argv[1], "train into the test folder"):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_folder_lock_held_by_another_process_is_refused_until_it_dies(tmp_path):
    """One run per output folder at a time (two runs into one --out): a lock left by a killed
    process does not block forever."""
    folder = tmp_path / "run"
    holder = _python(_HOLD_LOCK, str(folder))
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        with pytest.raises(EdgeSignsError, match="in use by") as err:
            with artifacts.folder_lock(folder, "a second train"):
                pytest.fail("a second writer got the lock")
        message = str(err.value)
        assert "\n" not in message and f"pid {holder.pid}" in message and str(folder) in message
    finally:
        holder.send_signal(signal.SIGKILL)  # killed, not a clean exit: the lock file stays behind
        holder.communicate(timeout=30)
    assert (folder / artifacts.LOCK_NAME).exists()
    entered = []
    with artifacts.folder_lock(folder, "the next train"):  # the kernel dropped the dead process's lock
        entered.append(True)
    assert entered


def test_folder_lock_is_released_on_error_in_this_process(tmp_path):
    """One run per output folder at a time: a run that fails frees the folder."""
    folder = tmp_path / "run"
    with pytest.raises(EdgeSignsError, match="diverged"):
        with artifacts.folder_lock(folder, "train"):
            raise EdgeSignsError("diverged")
    with artifacts.folder_lock(folder, "train again"):
        pass


# -- outputs checked before the work ---------------------------------------------------------------


def test_check_output_dir_rules(tmp_path):
    """Every output path is checked before the work starts: writable, not a file;
    a missing folder under a writable one is fine, and checking it creates nothing."""
    file = tmp_path / "file.txt"
    file.write_text("keep me\n")
    with pytest.raises(EdgeSignsError, match="is a file, expected a folder"):
        artifacts.check_output_dir(file, "--out")
    with pytest.raises(EdgeSignsError, match="not writable"):
        artifacts.check_output_dir(UNWRITABLE / "out", "--out")
    with pytest.raises(EdgeSignsError, match="not writable"):  # a file where a parent folder should be
        artifacts.check_output_dir(file / "sub", "--out")
    assert artifacts.check_output_dir(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing created, no probe left
    assert file.read_text() == "keep me\n"


def test_check_output_file_rules(tmp_path, monkeypatch):
    """Every output path is checked before the work starts: writable, not a directory, not an input
    of the same run (the model, its metadata, the labels CSV)."""
    model, sidecar, labels = tmp_path / "m.tflite", tmp_path / "m.json", tmp_path / "labels.csv"
    for f in (model, sidecar, labels):
        f.write_text("input")
    inputs = [model, sidecar, None, labels]
    folder = tmp_path / "x.avi"
    folder.mkdir()
    with pytest.raises(EdgeSignsError, match="is a folder, expected a file name"):
        artifacts.check_output_file(folder, "--record", inputs)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    for same in (sidecar, tmp_path / "sub" / ".." / "m.json", Path("m.json")):  # however the path is spelt
        with pytest.raises(EdgeSignsError, match="is an input of this run"):
            artifacts.check_output_file(same, "--json", inputs)
    link = tmp_path / "link.json"
    link.symlink_to(sidecar)
    with pytest.raises(EdgeSignsError, match="is an input of this run"):
        artifacts.check_output_file(link, "--json", inputs)
    with pytest.raises(EdgeSignsError, match="is an input of this run"):
        artifacts.check_output_file(labels, "--json", inputs)
    with pytest.raises(EdgeSignsError, match="not writable"):
        artifacts.check_output_file(UNWRITABLE / "x.avi", "--record", inputs)
    assert artifacts.check_output_file(tmp_path / "new" / "frames.jsonl", "--json", inputs) == tmp_path / "new" / "frames.jsonl"
    assert not (tmp_path / "new").exists()
    assert all(f.read_text() == "input" for f in (model, sidecar, labels))
