#!/usr/bin/env python3
"""Benchmark `edge-signs collect`: per-frame cost with nothing saved against live's, and bursts at a camera's rate.

    python tools/bench_collect.py [--model tests/fixtures/tiny_int8.tflite] [--frames 300] [--rounds 3]
                                  [--fps 30] [--burst-seconds 10] [--camera-only]

Prints numbers; asserts nothing. Run it on the Pi itself to get the Pi's numbers.

1. The same 640x480 MJPG video (textured, so decoding costs what a camera's frames
   cost), alternated over --rounds rounds (medians of the per-run medians):
   - live --headless: per-frame work outside invoke (read/decode, preprocess, output);
   - collect with nothing to save (--labels naming no frame of the video): read, loop;
   - live with a window and collect with a window (OpenCV's imshow/waitKey stood in
     for, no display needed): the same plus drawing the overlay.
2. A camera-like source: those frames delivered at --fps in real time through live's
   LatestFrame capture thread, as a USB camera is, for --burst-seconds:
   - the window, nothing saved (baseline);
   - the window with a burst at the camera's rate (keys 3 then b, --interval 1/fps);
   - the same burst with the writing done in the loop thread (for comparison: what
     the writer thread saves the loop from);
   - --headless --label 3 --count fps*seconds --interval 1/fps.
   Alternated over --rounds rounds. For each: loop FPS, crops saved, saves dropped (writer queue full), camera frames
   the loop missed (LatestFrame.dropped: replaced by a newer one before it took them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_signs import config  # noqa: E402
from edge_signs.edge import collect, display, live  # noqa: E402
from edge_signs.edge.collect import CollectOptions, run_collect  # noqa: E402
from edge_signs.edge.crop_writer import CropWriter  # noqa: E402
from edge_signs.edge.live import LiveOptions, run_live  # noqa: E402
from edge_signs.edge.sources import EndOfStream, FrameSource, LatestFrame  # noqa: E402
from edge_signs.log import quiet  # noqa: E402

W, H = 640, 480


def make_video(path: Path, frames: int, fps: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    out = []
    for k in range(frames):
        frame = np.roll(base, 4 * k, axis=1)
        cv2.circle(frame, (W // 2, H // 2), 60 + k % 40, (40, 180, 220), -1)
        writer.write(frame)
        out.append(frame)
    writer.release()
    return out


class FakeGui:
    """OpenCV's window calls stood in for; ``keys`` maps the i-th shown frame to a key."""

    def __init__(self, keys: dict[int, str] | None = None):
        self.keys = keys or {}
        self.shown = 0
        self._saved = {}

    def __enter__(self):
        patches = {
            (cv2, "namedWindow"): lambda *a, **k: None,
            (cv2, "imshow"): self._imshow,
            (cv2, "waitKey"): lambda ms: ord(self.keys[self.shown - 1]) if self.shown - 1 in self.keys else -1,
            (cv2, "getWindowProperty"): lambda *a: 1.0,
            (cv2, "destroyWindow"): lambda *a: None,
            (live, "check_gui"): lambda: None,
            (display, "check_gui"): lambda: None,
            (collect, "check_gui"): lambda: None,
        }
        for (mod, name), fn in patches.items():
            self._saved[(mod, name)] = getattr(mod, name)
            setattr(mod, name, fn)
        return self

    def _imshow(self, name, img):
        self.shown += 1

    def __exit__(self, *exc):
        for (mod, name), fn in self._saved.items():
            setattr(mod, name, fn)


class PacedCamera(FrameSource):
    """Frames at a steady rate in real time, like a camera (read blocks until the next exposure)."""

    live = True

    def __init__(self, frames: list[np.ndarray], fps: float, seconds: float):
        self.frames, self.period, self.n = frames, 1.0 / fps, int(round(fps * seconds))
        self.fps = fps
        self.name = f"paced camera {fps:g} fps"
        self.end_reason = "paced camera ended"
        self.k = 0
        self.t0 = None

    def read(self):
        if self.k >= self.n:
            raise EndOfStream
        if self.t0 is None:
            self.t0 = time.perf_counter()
        wait = self.t0 + self.k * self.period - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        frame = self.frames[self.k % len(self.frames)]
        self.k += 1
        return frame, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tiny_int8.tflite")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--fps", type=float, default=float(config.CAMERA_FPS))
    ap.add_argument("--burst-seconds", type=float, default=10.0)
    ap.add_argument("--camera-only", action="store_true", help="Only part 2 (the camera-like source).")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_collect-", dir=os.environ.get("TMPDIR")) as tmp:
        tmp = Path(tmp)
        video = tmp / "clip.avi"
        frames = make_video(video, args.frames, args.fps)
        nothing = tmp / "nothing.csv"
        nothing.write_text(f"{args.frames + 10},{args.frames + 10},0\n")  # a labelled frame the video never reaches
        print(f"video {W}x{H} MJPG, {args.frames} frames; model {args.model.name}; load average {os.getloadavg()[0]:.2f}; "
              f"{os.cpu_count()} CPUs")

        results: dict[str, list[tuple[float, float, float]]] = {}
        cpu = [time.process_time()]

        def add(name, ms, fps, frames):
            # CPU time of the whole process (all threads) per frame: robust on a loaded machine, where wall times are not.
            now = time.process_time()
            results.setdefault(name, []).append((ms, fps, (now - cpu[0]) / frames * 1e3))
            cpu[0] = now

        for r in range(0 if args.camera_only else args.rounds):
            cpu[0] = time.process_time()
            s = run_live(args.model, LiveOptions(video=str(video), headless=True, status_interval=0), log=quiet)
            add("live --headless: per-frame work outside invoke", s.median_overhead_ms, s.fps, s.frames)
            c = run_collect(CollectOptions(out=tmp / f"o{r}", video=str(video), labels_csv=nothing), log=quiet)
            assert c.total_saved == 0
            add("collect, nothing saved (no window)", c.median_frame_ms, c.frames / c.seconds, c.frames)
            with FakeGui():
                s = run_live(args.model, LiveOptions(video=str(video), status_interval=0), log=quiet)
            add("live with a window: per-frame work outside invoke", s.median_overhead_ms, s.fps, s.frames)
            with FakeGui():
                c = run_collect(CollectOptions(out=tmp / f"w{r}", video=str(video)), log=quiet)
            assert c.total_saved == 0
            add("collect with a window, nothing saved", c.median_frame_ms, c.frames / c.seconds, c.frames)
        if results:
            print(f"\n1. per frame, same video, median of {args.rounds} rounds: wall ms per frame (median), loop FPS, "
                  f"process CPU ms per frame (all threads; live's includes invoke)")
        for name, vals in results.items():
            print(f"   {name:52s} {statistics.median(v[0] for v in vals):6.2f} ms  {statistics.median(v[1] for v in vals):7.1f} fps"
                  f"  {statistics.median(v[2] for v in vals):6.2f} ms CPU")

        print(f"\n2. camera-like source at {args.fps:g} fps through LatestFrame, {args.burst_seconds:g} s each, --interval 1/{args.fps:g}, "
              f"{args.rounds} rounds alternated (the load average is printed per run: compare runs of one round)")
        interval = 1.0 / args.fps
        count = int(round(args.fps * args.burst_seconds))
        runs = [
            ("window, nothing saved", dict(interval=interval), {}, False),
            ("window, burst at the camera's rate", dict(interval=interval), {0: "3", 1: "b"}, False),
            ("  the same, written in the loop thread", dict(interval=interval), {0: "3", 1: "b"}, True),
            (f"--headless --count {count}", dict(headless=True, label="3", count=count, interval=interval, countdown=0), None, False),
        ]
        for r in range(args.rounds):
            for k, (name, kw, keys, in_loop) in enumerate(runs):
                cam = LatestFrame(PacedCamera(frames, args.fps, args.burst_seconds))
                opts = CollectOptions(out=tmp / f"b{r}-{k}", **kw)
                submit = CropWriter.submit
                if in_loop:  # for comparison only: what the writer thread saves the loop from
                    CropWriter.submit = lambda self, item: (self._write(item), True)[1]
                c0 = time.process_time()
                try:
                    if keys is None:
                        c = run_collect(opts, source=cam, log=quiet)
                    else:
                        with FakeGui(keys):
                            c = run_collect(opts, source=cam, log=quiet)
                finally:
                    CropWriter.submit = submit
                print(f"   round {r + 1} {name:40s} {c.frames / c.seconds:5.1f} fps; saved {c.total_saved:4d}, saves dropped {c.dropped}, "
                      f"camera frames missed {cam.dropped:3d} of {cam.captured}; CPU {(time.process_time() - c0) / max(1, cam.captured) * 1e3:.2f} ms "
                      f"per camera frame; load {os.getloadavg()[0]:.2f}", flush=True)
        print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
