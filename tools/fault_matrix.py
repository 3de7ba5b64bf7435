#!/usr/bin/env python3
"""Fault injection: bad inputs, kills and signals against every command, one line per case.

    python tools/fault_matrix.py [--data DIR] [--quick] [--only WORD]

Each case runs `edge-signs ...` in a fresh process inside a scratch folder, the way a
user would, and checks three things against what it should do:

- the outcome: a one-line error and a non-zero exit, a warning, or success;
- no Python traceback on stderr;
- files intact: the files the case must not touch (a good model, an old result, the
  model's metadata) have the same bytes afterwards, and no hidden temporary files
  are left behind.

It prints ``PASS``/``FAIL`` with expected vs observed for each case and a total, and
exits non-zero when any case fails. ``--quick`` skips the cases that train a real
ResNet50 (the rest need no TensorFlow except those that build a tiny Keras file).
The models are the committed test fixtures (tests/fixtures/tiny_*.tflite); other bad
inputs are made here. The cases for outputs, logs, special files, own folders and the
server are in tools/fault_cases.py; those that mount a small tmpfs or make a device node
run only as root (skipped and named otherwise).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import click
import cv2
import fault_cases  # tools/fault_cases.py, beside this file
import numpy as np

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
TRACEBACK = "Traceback (most recent call last)"
READ_ONLY = "/proc/edge-signs-out"  # a place nobody, root included, can create files in (Linux)


@dataclasses.dataclass
class Case:
    name: str
    args: list[str]  # after `edge-signs`; "{S}" is the scratch folder, "{D}" the SIGNS folder
    expect: str  # "error", "ok" or "warning"
    words: str = ""  # expected in the output (case-insensitive)
    protect: tuple[str, ...] = ()  # files (relative to the scratch folder) whose bytes must not change
    setup: Optional[Callable[[Path, Path], None]] = None  # (scratch, signs) -> None
    during: Optional[Callable[[subprocess.Popen, Path], None]] = None  # e.g. a signal after a while
    after: Optional[Callable[[Path], Optional[str]]] = None  # extra check: a problem, or None
    trains: bool = False  # needs TensorFlow and a few training steps
    root: bool = False  # mounts a small tmpfs or makes a device node: skipped unless run as root


# -- scratch inputs -------------------------------------------------------------------------------


def _copy_models(s: Path, _d: Path) -> None:
    for f in FIXTURES.glob("tiny_int8.*"):
        shutil.copy(f, s / f.name)


def _h5(s: Path, name: str, x: np.ndarray, y: np.ndarray, split: str) -> None:
    import h5py

    with h5py.File(s / name, "w") as f:
        f[f"{split}_set_x"] = x
        f[f"{split}_set_y"] = y


def _h5_pair(train_x, train_y, test_x=None, test_y=None):
    def setup(s: Path, _d: Path) -> None:
        (s / "h5").mkdir()
        tx = test_x if test_x is not None else np.zeros((6, 64, 64, 3), np.uint8)
        ty = test_y if test_y is not None else np.arange(6)
        _h5(s / "h5", "train_signs.h5", train_x, train_y, "train")
        _h5(s / "h5", "test_signs.h5", tx, ty, "test")

    return setup


def _video(s: Path, d: Path, frames: int = 20) -> None:
    _copy_models(s, d)
    writer = cv2.VideoWriter(str(s / "v.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (128, 128))
    for k in range(frames):
        writer.write(np.full((128, 128, 3), (k * 12) % 255, np.uint8))
    writer.release()


def _write(rel: str, data: bytes):
    def setup(s: Path, d: Path) -> None:
        _video(s, d)
        (s / rel).parent.mkdir(parents=True, exist_ok=True)
        (s / rel).write_bytes(data)

    return setup


def _both(*setups):
    def setup(s: Path, d: Path) -> None:
        for f in setups:
            f(s, d)

    return setup


def _sidecar_edit(change: Callable[[dict], None]):
    def setup(s: Path, d: Path) -> None:
        import json

        _copy_models(s, d)
        meta = json.loads((s / "tiny_int8.json").read_text())
        change(meta)
        (s / "tiny_int8.json").write_text(json.dumps(meta))

    return setup


def _image_folder_with_truncated_jpeg(s: Path, d: Path) -> None:
    for split in ("train", "test"):
        for label in "012345":
            folder = s / "imgs" / split / label
            folder.mkdir(parents=True)
            for k in range(3):
                ok, jpg = cv2.imencode(".jpg", np.full((64, 64, 3), 40 * int(label) + k, np.uint8))
                (folder / f"{k}.jpg").write_bytes(jpg.tobytes())
    bad = s / "imgs" / "train" / "3" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])


_NAN_KERAS = """
import sys, numpy as np, keras
inp = keras.Input((64, 64, 3)); x = keras.layers.Conv2D(4, 5, strides=4, activation="relu")(inp)
x = keras.layers.GlobalAveragePooling2D()(x); out = keras.layers.Dense(6, activation="softmax")(x)
m = keras.Model(inp, out); w = m.get_weights(); w[0][0, 0, 0, 0] = np.nan; m.set_weights(w); m.save(sys.argv[1])
"""


def _nan_model(s: Path, d: Path) -> None:
    (s / "deploy").mkdir()
    for f in FIXTURES.glob("tiny_int8.*"):
        shutil.copy(f, s / "deploy" / f.name.replace("tiny_", "nan_"))
    subprocess.run([sys.executable, "-c", _NAN_KERAS, str(s / "nan.keras")], check=True, capture_output=True)


def _interrupted_run(s: Path, d: Path) -> None:
    """A real run stopped by Ctrl-C after its first checkpoint."""
    proc = subprocess.Popen(_cmd(["train", "--signs", str(d), "--limit", "60", "--epochs", "3", "--recipe", "seed", "--out", str(s / "kint")]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=s, env=_env())
    state = s / "kint" / "checkpoint" / "state.json"
    deadline = time.time() + 600
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    (s / "other").mkdir()
    _h5_pair(np.repeat(np.arange(6), 4)[:, None, None, None].astype(np.uint8) * np.ones((1, 64, 64, 3), np.uint8) * 40, np.repeat(np.arange(6), 4))(s / "other", d)


def _sigterm_after(seconds: float):
    def during(proc: subprocess.Popen, _s: Path) -> None:
        time.sleep(seconds)
        proc.send_signal(signal.SIGTERM)

    return during


def _kill9_after(seconds: float):
    def during(proc: subprocess.Popen, _s: Path) -> None:
        time.sleep(seconds)
        proc.kill()

    return during


def _second_train(s: Path, d: Path) -> None:
    """A run that holds `busy/` while the case's own run tries to write there."""
    _second_train.proc = subprocess.Popen(_cmd(["train", "--signs", str(d), "--limit", "60", "--epochs", "3", "--recipe", "seed", "--out", str(s / "busy")]),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=s, env=_env())
    deadline = time.time() + 120
    while not (s / "busy" / ".edge-signs.lock").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)


def _stop_second_train(_s: Path) -> Optional[str]:
    proc = getattr(_second_train, "proc", None)
    if proc is not None:
        proc.kill()
        proc.wait()
    return None


def _no_result_files(*names: str):
    def check(s: Path) -> Optional[str]:
        present = [n for n in names if (s / n).exists()]
        return f"written although the run failed: {', '.join(present)}" if present else None

    return check


def _then_rerun_cleans(args: list[str]):
    """After a kill -9, the next run of the same command leaves no temporary files behind."""
    def check(s: Path) -> Optional[str]:
        subprocess.run(_cmd([a.replace("{S}", str(s)) for a in args]), capture_output=True, cwd=s, timeout=300, env=_env())
        return None

    return check


# -- the matrix ------------------------------------------------------------------------------------

M = "{S}/tiny_int8.tflite"
ONE_IMAGE = ["--testset", "--headless", "--max-frames", "5", "--status-every", "0", "--signs", "{D}"]  # hermetic: never the Keras cache or a download


def cases() -> list[Case]:
    x6 = np.zeros((6, 64, 64, 3), np.uint8)
    return [
        # 1. a diverged run, and a NaN model
        Case("train: diverging learning rate", ["train", "--signs", "{D}", "--limit", "60", "--epochs", "2", "--recipe", "seed", "--learning-rate", "1e6", "--out", "{S}/nan"],
             "error", "diverged", after=_no_result_files("nan/model.keras", "nan/metrics.json"), trains=True),
        Case("quantize: model with a NaN weight", ["quantize", "{S}/nan.keras", "--int8", "--out", "{S}/deploy", "--signs", "{D}"], "error", "nan or infinite weights",
             protect=("deploy/nan_int8.tflite", "deploy/nan_int8.json"), setup=_nan_model),
        # 2. resume
        Case("train --resume with other options", ["train", "--resume", "--out", "{S}/kint", "--learning-rate", "0.5", "--batch-size", "4", "--signs", "{D}"],
             "error", "differ", protect=("kint/options.json", "kint/checkpoint/state.json"), setup=_interrupted_run, trains=True),
        Case("train --resume on other data", ["train", "--resume", "--out", "{S}/kint", "--signs", "{S}/other/h5"], "error", "not the data",
             protect=("kint/options.json", "kint/checkpoint/state.json"), setup=_interrupted_run, trains=True),
        # 3. one run per folder
        Case("train: second run into a busy --out", ["train", "--signs", "{D}", "--limit", "60", "--epochs", "1", "--out", "{S}/busy"], "error", "in use by",
             setup=_second_train, after=_stop_second_train, trains=True),
        # 4. outputs checked before the work
        Case("live: --record where nothing can be written", ["live", M, *ONE_IMAGE, "--json", "{S}/prev.jsonl", "--record", READ_ONLY + "/x.avi"], "error", "not writable",
             protect=("prev.jsonl",), setup=_write("prev.jsonl", b'{"old": 1}\n')),
        Case("live: --json onto the model's metadata", ["live", M, *ONE_IMAGE, "--json", "{S}/tiny_int8.json"], "error", "input of this run",
             protect=("tiny_int8.json", "tiny_int8.tflite"), setup=_copy_models),
        Case("evaluate: --out where nothing can be written", ["evaluate", M, "--out", READ_ONLY], "error", "not writable", setup=_copy_models),
        Case("live: --report where nothing can be written", ["live", M, *ONE_IMAGE, "--report", READ_ONLY], "error", "not writable", setup=_copy_models),
        Case("live: --record onto a folder", ["live", M, *ONE_IMAGE, "--record", "{S}/x.avi"], "error", "is a folder",
             setup=_both(_copy_models, lambda s, d: (s / "x.avi").mkdir())),
        Case("live: SIGTERM while recording keeps a playable video", ["live", M, "--video", "{S}/v.avi", "--loop", "--headless", "--record", "{S}/out.avi", "--json", "{S}/out.jsonl"],
             "ok", "terminated", setup=_video, during=_sigterm_after(4.0),
             after=lambda s: None if cv2.VideoCapture(str(s / "out.avi")).read()[0] and (s / "out.jsonl").stat().st_size else "recording or JSON lines missing"),
        Case("live: kill -9 while recording, then the next run", ["live", M, "--video", "{S}/v.avi", "--loop", "--headless", "--record", "{S}/out.avi"], "killed", "",
             setup=_video, during=_kill9_after(4.0), after=_then_rerun_cleans(["live", M, "--video", "{S}/v.avi", "--headless", "--record", "{S}/out.avi"])),
        # 5. tracebacks
        Case("train --seed -1", ["train", "--seed", "-1", "--out", "{S}/r", "--signs", "{D}"], "error", "seed"),
        Case("train --val-fraction nan", ["train", "--val-fraction", "nan", "--out", "{S}/r", "--signs", "{D}"], "error", "finite"),
        Case("data: HDF5 with an empty training set", ["data", "info", "--signs", "{S}/h5"], "error", "at least",
             setup=_h5_pair(np.zeros((0, 64, 64, 3), np.uint8), np.zeros(0, np.int64))),
        Case("data: HDF5 with 0x0 images", ["data", "info", "--signs", "{S}/h5"], "error", "shape", setup=_h5_pair(np.zeros((6, 0, 0, 3), np.uint8), np.arange(6))),
        Case("live: labels CSV with non-UTF-8 bytes", ["live", M, "--video", "{S}/v.avi", "--labels", "{S}/l.csv", "--headless"], "error", "utf-8",
             setup=_write("l.csv", b"start_frame,end_frame,label\n0,4,\xff\n")),
        Case("live: labels CSV with label '\u00b2'", ["live", M, "--video", "{S}/v.avi", "--labels", "{S}/l.csv", "--headless"], "error", "unknown label",
             setup=_write("l.csv", "0,4,\u00b2\n".encode())),
        # 6. values refused in one line
        Case("train --dropout nan", ["train", "--dropout", "nan", "--out", "{S}/r", "--signs", "{D}"], "error", "finite"),
        Case("train --devices /gpu:7", ["train", "--devices", "/gpu:7", "--limit", "60", "--epochs", "1", "--out", "{S}/r", "--signs", "{D}"], "error", "no such device", trains=True),
        Case("data: HDF5 training set missing a class", ["data", "info", "--signs", "{S}/h5"], "error", "too few",
             setup=_h5_pair(np.zeros((10, 64, 64, 3), np.uint8), np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4]))),
        Case("data: HDF5 training set of 3 images", ["data", "info", "--signs", "{S}/h5"], "error", "too few", setup=_h5_pair(x6[:3], np.arange(3))),
        Case("data: truncated JPEG", ["data", "info", "--signs", "{S}/imgs"], "error", "truncated jpeg", setup=_image_folder_with_truncated_jpeg),
        Case("live: metadata of another model", ["live", M, *ONE_IMAGE], "error", "another model",
             setup=_sidecar_edit(lambda m: m.update(tflite_sha256="0" * 64))),
        Case("live: metadata labels are ints", ["live", M, *ONE_IMAGE], "error", "labels", setup=_sidecar_edit(lambda m: m.update(labels=[0, 1, 2, 3, 4, 5]))),
        Case("live: metadata labels are nested lists", ["live", M, *ONE_IMAGE], "error", "labels", setup=_sidecar_edit(lambda m: m.update(labels=[["0"], ["1"], ["2"], ["3"], ["4"], ["5"]]))),
        Case("live: metadata labels permuted", ["live", M, *ONE_IMAGE], "error", "labels", setup=_sidecar_edit(lambda m: m.update(labels=["5", "4", "3", "2", "1", "0"]))),
        Case("evaluate: models with other labels", ["evaluate", M, "{S}/tiny_int8.tflite", "--out", "{S}/ev"], "error", "labels",
             setup=_sidecar_edit(lambda m: m.update(labels=["a", "b", "c", "d", "e", "f"]))),
        Case("live: labels CSV past the end of the video", ["live", M, "--video", "{S}/v.avi", "--labels", "{S}/l.csv", "--headless"], "warning", "never reached",
             setup=_write("l.csv", b"0,4,1\n10,60,2\n")),
        Case("live: truncated video", ["live", M, "--video", "{S}/cut.avi", "--labels", "{S}/l.csv", "--headless"], "warning", "never reached",
             setup=_both(_write("l.csv", b"0,19,1\n"), lambda s, d: (s / "cut.avi").write_bytes((s / "v.avi").read_bytes()[: (s / "v.avi").stat().st_size // 2]))),
        Case("live: labels CSV with a UTF-8 BOM", ["live", M, "--video", "{S}/v.avi", "--labels", "{S}/l.csv", "--headless"], "ok", "accuracy",
             setup=_write("l.csv", b"\xef\xbb\xbfstart_frame,end_frame,label\n0,4,1\n")),
        Case("train --out on an existing file", ["train", "--out", "{S}/file.txt", "--signs", "{D}"], "error", "is a file",
             protect=("file.txt",), setup=_write("file.txt", b"keep me\n")),
        Case("quantize: --out on an existing file", ["quantize", "{S}/nan.keras", "--out", "{S}/file.txt", "--signs", "{D}"], "error", "is a file",
             protect=("file.txt",), setup=_both(_nan_model, _write("file.txt", b"keep me\n"))),
        *fault_cases.cases(sys.modules[__name__]),  # outputs, logs, special files, own folders, the server
    ]


# -- running a case ----------------------------------------------------------------------------------


def _cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "edge_signs", *args]


def _env() -> dict:
    """This checkout's edge_signs, unbuffered output, quiet TensorFlow."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _digest(path: Path) -> Optional[str]:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def run_case(case: Case, signs: Path, timeout: float) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix="edge-signs-fault-") as tmp:
        s = Path(tmp)
        if case.setup is not None:
            case.setup(s, signs)
        before = {p: _digest(s / p) for p in case.protect}
        port = (s / "port").read_text() if (s / "port").is_file() else ""  # a case's free port, found by its setup
        args = [a.replace("{S}", str(s)).replace("{D}", str(signs)).replace("{PORT}", port) for a in case.args]
        proc = subprocess.Popen(_cmd(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=s, env=_env())
        if case.during is not None:
            case.during(proc, s)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        rc = proc.returncode
        problem = case.after(s) if case.after is not None else None
        intact = all(_digest(s / p) == d for p, d in before.items())
        # After a kill -9 the case's `after` reran the command: that run must have removed the killed run's files.
        leftovers = [str(p.relative_to(s)) for p in s.rglob(".*.tmp-*")]
        text = (out + err).lower()
        traceback = TRACEBACK.lower() in text
        observed = {
            "error": rc not in (0, None) and rc != -9,
            "ok": rc == 0 and "warning" not in err.lower(),
            "warning": rc == 0 and "warning" in text,
            "killed": rc == -9,
        }[case.expect]
        words = case.words.lower() in text
        # Our own errors are one "edge-signs: error: ..." line; click's option errors are its usual "Error: Invalid value ..." line.
        error_lines = [ln for ln in err.strip().splitlines() if ln.startswith(("edge-signs: error", "Error: "))]
        one_line = case.expect != "error" or len(error_lines) == 1
        passed = observed and words and not traceback and intact and not leftovers and one_line and problem is None
        line = (f"{'PASS' if passed else 'FAIL'}  {case.name:52s} expected {case.expect:7s} got exit {rc:4d}  "
                f"traceback {'yes' if traceback else 'no '}  files intact {'yes' if intact and not leftovers else 'no '}")
        if not passed:
            last = (err.strip().splitlines() or out.strip().splitlines() or [""])[-1][:160]
            why = [w for w, bad in (("outcome", not observed), (f"no '{case.words}'", not words), ("traceback", traceback),
                                    ("changed files", not intact), (f"left {leftovers}", bool(leftovers)), ("not one line", not one_line),
                                    (problem or "", problem is not None)) if bad]
            line += f"\n      {'; '.join(why)} | {last}"
        return passed, line


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, help="SIGNS folder (default: $EDGE_SIGNS_DATA or ../shared/datasets/signs).")
@click.option("--quick", is_flag=True, help="Skip the cases that train a real ResNet50.")
@click.option("--only", default=None, help="Only cases whose name contains this.")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds per case.")
def main(data, quick, only, timeout):
    """Run the fault matrix and print one line per case and a total."""
    signs = data or Path(os.environ.get("EDGE_SIGNS_DATA") or REPO.parent / "shared" / "datasets" / "signs")
    chosen = [c for c in cases() if (not quick or not c.trains) and (only is None or only.lower() in c.name.lower())]
    if os.geteuid() != 0:
        skipped = [c for c in chosen if c.root]
        chosen = [c for c in chosen if not c.root]
        print(f"skipped {len(skipped)} case(s) that need root: {', '.join(c.name for c in skipped)}" if skipped else "", end="\n" if skipped else "")
    passed = 0
    t0 = time.perf_counter()
    for case in chosen:
        ok, line = run_case(case, signs, timeout)
        passed += ok
        print(line, flush=True)
    print(f"{passed} passed, {len(chosen) - passed} failed  ({time.perf_counter() - t0:.0f} s)")
    sys.exit(0 if passed == len(chosen) else 1)


if __name__ == "__main__":
    main()
