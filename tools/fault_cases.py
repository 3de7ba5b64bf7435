"""The fault matrix's cases for outputs, logs, special files, own folders and the server (tools/fault_matrix.py).

One or more cases per class of fault: a recording lost or cut, outputs onto special
files, collect's log against its crops, own folders read wrongly, evaluation scoring the
wrong thing, finetune writing into its input, a server strangers can lock, and smaller
checks. ``cases(fm)`` takes the fault matrix module (its Case and scratch helpers).
Cases that mount a small tmpfs or make a device node are marked ``root``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from edge_signs.edge.display import playable_frames as _frames  # frames in its index, the last one read back

TOKEN = "fault-matrix-token-0123"


def _recording(path: Path, frames: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (96, 96))
    for k in range(frames):
        writer.write(np.full((96, 96, 3), 25 * k % 255, np.uint8))
    writer.release()


def _hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.name != ".edge-signs.lock")


# -- class 1: recordings ------------------------------------------------------------------------------------


def _block_json_when_it_starts(proc: subprocess.Popen, s: Path) -> None:
    deadline = time.time() + 120
    while not list(s.glob(".frames.jsonl.tmp-*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    (s / "frames.jsonl" / "blocker").mkdir(parents=True)  # its place is taken: it cannot be published


def _recording_kept_and_json_aside(s: Path) -> Optional[str]:
    if not _frames(s / "rec.avi"):
        return "the recording was not published"
    if not list(s.glob("frames.recovered-*.jsonl")):
        return "the complete JSON lines were not kept"
    return None


def _mount_small(size: str):
    def setup(s: Path, d: Path) -> None:
        (s / "small").mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(s / "small")], check=True)

    return setup


def _then_unmount(check):
    def after(s: Path) -> Optional[str]:
        try:
            problem = check(s)
            left = _hidden(s / "small")
            return problem or (f"left {left} on the full disk" if left else None)
        finally:
            subprocess.run(["umount", "-l", str(s / "small")], capture_output=True)

    return after


def _old_jsonl_intact(s: Path) -> Optional[str]:
    if (s / "small" / "frames.jsonl").read_text() != '{"old": 1}\n':
        return "the old JSON lines were replaced"
    return None if _frames(s / "rec.avi") else "the recording of the same run is missing"


def _old_recording_intact(s: Path) -> Optional[str]:
    if _frames(s / "small" / "rec.avi") != 7:
        return "the previous good recording was replaced"
    return None if (s / "frames.jsonl").stat().st_size else "the JSON lines of the same run are missing"


def _dead_runs_complete_recording(s: Path, d: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    _recording(s / f".out.avi.tmp-{proc.pid}-abcd1234.avi", 9)


def _recovered(s: Path) -> Optional[str]:
    kept = [p for p in s.glob("out.recovered-*.avi") if _frames(p) == 9]
    return None if kept else "the complete recording a dead run left was removed"


# -- class 2: special files ---------------------------------------------------------------------------------


def _fifo_with_reader(s: Path, d: Path) -> None:
    os.mkfifo(s / "frames.fifo")

    def read():
        with open(s / "frames.fifo", "rb") as f, open(s / "fifo.out", "wb") as out:
            out.write(f.read())

    threading.Thread(target=read, daemon=True).start()


def _fifo_read(s: Path) -> Optional[str]:
    for _ in range(100):
        if (s / "fifo.out").exists():
            break
        time.sleep(0.1)
    if not (s / "frames.fifo").is_fifo():
        return "the FIFO was replaced"
    got = (s / "fifo.out").read_text().splitlines() if (s / "fifo.out").exists() else []
    return None if len(got) == 5 else f"the reader got {len(got)} lines, expected 5"


def _still(kind: str, name: str):
    def check(s: Path) -> Optional[str]:
        ok = {"fifo": (s / name).is_fifo, "link": (s / name).is_symlink, "device": (s / name).is_char_device}[kind]()
        return None if ok else f"{name} was replaced by a regular file"

    return check


# -- classes 3-8 --------------------------------------------------------------------------------------------


def _own_folder(s: Path, root: str = "own", names=("s1_00001.jpg",)) -> Path:
    """A labelled folder s/root/<label>/NAME.jpg, one image per name and class."""
    for label in "012345":
        (s / root / label).mkdir(parents=True, exist_ok=True)
        for k, name in enumerate(names):
            img = np.full((96, 96, 3), 30 * int(label) + k, np.uint8)
            img[::5] = 250  # detail: entropy-coded data long enough to damage in the middle
            cv2.imwrite(str(s / root / label / name), img)
    return s / root


def _own_with_strays(s: Path, d: Path) -> None:
    folder = _own_folder(s) / "2"
    (folder / "notes.txt").write_text("settings")
    (folder / "nested").mkdir()
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "gone.jpg").symlink_to(s / "moved-away.jpg")


def _own_with(edit):
    def setup(s: Path, d: Path) -> None:
        _own_folder(s)
        edit(s / "own" / "3" / "s1_00001.jpg")

    return setup


def _damage_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 48] = b"\x13" * 48
    path.write_bytes(bytes(data))


def _png_named_jpg(path: Path) -> None:
    path.write_bytes(cv2.imencode(".png", np.full((80, 80, 3), 200, np.uint8))[1].tobytes())


def _train_and_test_folders(s: Path, d: Path) -> None:
    for split in ("train", "test"):
        _own_folder(s, f"own/{split}", names=("s1_00001.jpg", "s2_00001.jpg"))


def _every_session_held_out(s: Path, d: Path) -> None:
    from edge_signs import config
    from edge_signs.own_data import grouped_split

    names = [f"s{k:04d}" for k in range(400)]
    held = [names[i] for i in grouped_split(names, config.HOLDOUT_FRACTION, config.HOLDOUT_SALT)[1]]
    for k, label in enumerate("012345"):
        (s / "own" / label).mkdir(parents=True)
        cv2.imwrite(str(s / "own" / label / f"{held[k]}_00001.jpg"), np.full((96, 96, 3), 40 * k, np.uint8))


def _log_link_unwritable(read_only: str):
    def setup(s: Path, d: Path) -> None:
        (s / "out").mkdir()
        (s / "out" / "collect_log.csv").symlink_to(f"{read_only}/collect_log.csv")

    return setup


def _log_without_final_newline(s: Path, d: Path) -> None:
    (s / "out" / "1").mkdir(parents=True)
    cv2.imwrite(str(s / "out" / "1" / "s0_00000.jpg"), np.zeros((64, 64, 3), np.uint8))
    (s / "out" / "collect_log.csv").write_text("file,label,source,roi,time,session,frame\n1/s0_00000.jpg,1,video,\"0,0,64\",t,s0,0")


def _log_rows_agree(s: Path) -> Optional[str]:
    import csv

    with open(s / "out" / "collect_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    files = sorted(f"{p.parent.name}/{p.name}" for p in (s / "out").glob("*/*.jpg"))
    return None if sorted(r["file"] for r in rows) == files and len(rows) == 3 else f"log rows {len(rows)} vs crops {files}"


def _siege(proc: subprocess.Popen, s: Path) -> None:
    """Forty clients trickle request heads without a token while the owner polls /status with it; then SIGTERM."""
    port = int((s / "port").read_text())
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        time.sleep(0.2)
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /status HTTP/1.0\r\n")
                for _ in range(300):
                    if stop.is_set():
                        break
                    sock.sendall(b"X")
                    time.sleep(0.5)

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(40)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    answers = []
    for _ in range(15):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/status", headers={"Authorization": f"Bearer {TOKEN}"})
            answers.append(conn.getresponse().status)
        except OSError:
            answers.append(0)
        finally:
            conn.close()
        time.sleep(0.3)
    stop.set()
    (s / "answers").write_text(" ".join(map(str, answers)))
    proc.send_signal(15)


def _owner_answered(s: Path) -> Optional[str]:
    answers = (s / "answers").read_text().split() if (s / "answers").exists() else []
    return None if answers == ["200"] * 15 else f"the owner's /status answered {answers.count('200')} of 15 polls"


def _free_port(s: Path, d: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        (s / "port").write_text(str(sock.getsockname()[1]))


def cases(fm) -> list:
    Case, M, S = fm.Case, fm.M, "{S}"
    run = ["--testset", "--headless", "--status-every", "0", "--signs", "{D}"]
    return [
        # 1. recordings
        Case("live: --json cannot be published, --record kept", ["live", M, *run, "--loop", "--max-frames", "3000", "--record", f"{S}/rec.avi",
             "--json", f"{S}/frames.jsonl"], "error", "--json", setup=fm._copy_models, during=_block_json_when_it_starts,
             after=_recording_kept_and_json_aside),
        Case("live: --json on a filling disk, --record kept", ["live", M, *run, "--loop", "--max-frames", "3000", "--json", f"{S}/small/frames.jsonl",
             "--record", f"{S}/rec.avi"], "error", "no space left", root=True,
             setup=fm._both(fm._copy_models, _mount_small("48k"), lambda s, d: (s / "small" / "frames.jsonl").write_text('{"old": 1}\n')),
             after=_then_unmount(_old_jsonl_intact)),
        Case("live: --record on a filling disk, old one kept", ["live", M, *run, "--loop", "--max-frames", "3000", "--record", f"{S}/small/rec.avi",
             "--json", f"{S}/frames.jsonl"], "error", "--record", root=True,
             setup=fm._both(fm._copy_models, _mount_small("1m"), lambda s, d: _recording(s / "small" / "rec.avi", 7)),
             after=_then_unmount(_old_recording_intact)),
        Case("live: a dead run's complete recording is kept", ["live", M, *run, "--max-frames", "4", "--record", f"{S}/out.avi"], "ok", "recovered",
             setup=fm._both(fm._copy_models, _dead_runs_complete_recording), after=_recovered),
        # 2. special files
        Case("live: --json onto a FIFO streams into it", ["live", M, *run, "--max-frames", "5", "--json", f"{S}/frames.fifo"], "ok", "frames from",
             setup=fm._both(fm._copy_models, _fifo_with_reader), after=_fifo_read),
        Case("live: --json onto a link to /proc/self/fd/1", ["live", M, *run, "--max-frames", "3", "--json", f"{S}/out.jsonl"], "ok", '"frame": 2',
             setup=fm._both(fm._copy_models, lambda s, d: (s / "out.jsonl").symlink_to("/proc/self/fd/1")), after=_still("link", "out.jsonl")),
        Case("live: --json onto a character device", ["live", M, *run, "--max-frames", "3", "--json", f"{S}/null"], "ok", "frames from", root=True,
             setup=fm._both(fm._copy_models, lambda s, d: os.mknod(s / "null", 0o666 | 0o020000, os.makedev(1, 3))), after=_still("device", "null")),
        Case("live: --record onto a FIFO is refused", ["live", M, *run, "--max-frames", "3", "--record", f"{S}/rec.avi"], "error", "is a fifo",
             setup=fm._both(fm._copy_models, lambda s, d: os.mkfifo(s / "rec.avi")), after=_still("fifo", "rec.avi")),
        # 3. collect's log
        Case("collect: a log that cannot be written", ["collect", "--out", f"{S}/out", "--video", f"{S}/v.avi", "--headless", "--label", "1",
             "--count", "2", "--countdown", "0"], "error", "cannot be written",
             setup=fm._both(fm._video, _log_link_unwritable(fm.READ_ONLY)), after=fm._no_result_files("out/1")),
        Case("collect: a log without a final newline", ["collect", "--out", f"{S}/out", "--video", f"{S}/v.avi", "--headless", "--label", "2",
             "--count", "2", "--countdown", "0", "--size", "96"], "ok", "saved 2 crops", setup=fm._both(fm._video, _log_without_final_newline), after=_log_rows_agree),
        # 4. own folders
        Case("data: stray entries in a class folder are named", ["evaluate", M, "--own", f"{S}/own", "--out", f"{S}/ev", "--runs", "1",
             "--warmup", "0"], "warning", "broken link", setup=fm._both(fm._copy_models, _own_with_strays)),
        Case("data: a JPEG damaged in the middle", ["evaluate", M, "--own", f"{S}/own", "--out", f"{S}/ev"], "error", "damaged jpeg",
             setup=fm._both(fm._copy_models, _own_with(_damage_middle))),
        Case("data: a PNG named .jpg", ["evaluate", M, "--own", f"{S}/own", "--out", f"{S}/ev", "--runs", "1", "--warmup", "0"], "warning",
             "a png file named .jpg", setup=fm._both(fm._copy_models, _own_with(_png_named_jpg))),
        Case("data: a JPEG with bytes appended", ["evaluate", M, "--own", f"{S}/own", "--out", f"{S}/ev", "--runs", "1", "--warmup", "0"],
             "warning", "after the jpeg's end-of-image marker",
             setup=fm._both(fm._copy_models, _own_with(lambda p: p.write_bytes(p.read_bytes() + b"appended" * 8)))),
        # 5. evaluation
        Case("evaluate: --split on train/ and test/ folders", ["evaluate", M, "--own", f"{S}/own", "--split", "heldout", "--out", f"{S}/ev"],
             "error", "train/ and test/", setup=fm._both(fm._copy_models, _train_and_test_folders), after=fm._no_result_files("ev")),
        Case("evaluate: --split train with all held out", ["evaluate", M, "--own", f"{S}/own", "--split", "train", "--out", f"{S}/ev"],
             "error", "leaves no images", setup=fm._both(fm._copy_models, _every_session_held_out), after=fm._no_result_files("ev")),
        # 6. finetune into its input
        Case("finetune: --out inside --own", ["finetune", "--init", f"{S}/none.keras", "--own", f"{S}/own", "--out", f"{S}/own/run"],
             "error", "is inside --own", setup=lambda s, d: _own_folder(s), after=fm._no_result_files("own/run")),
        # 7. the server
        Case("live --serve: owner's /status under 40 slow clients", ["live", M, *run, "--loop", "--serve", "127.0.0.1:{PORT}", "--token", TOKEN],
             "ok", "terminated", setup=fm._both(fm._copy_models, _free_port), during=_siege, after=_owner_answered),
        # 8. smaller things
        Case("collect --size 20000", ["collect", "--out", f"{S}/out", "--video", f"{S}/v.avi", "--headless", "--label", "1", "--size", "20000"],
             "error", "at most 1024", setup=fm._video, after=fm._no_result_files("out")),
        Case("live: labels CSV, two rows from frame 0", ["live", M, "--video", f"{S}/v.avi", "--labels", f"{S}/l.csv", "--headless"], "error",
             "row 2: frames 0..4 overlap the range of row 1", setup=fm._write("l.csv", b"0,4,1\n0,9,2\n")),
    ]
