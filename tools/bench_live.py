#!/usr/bin/env python3
"""Benchmark the live loop: start-up, per-frame overhead against invoke, memory over a long run.

    python tools/bench_live.py model_int8.tflite [--frames 10000] [--data DIR]
    python tools/bench_live.py model_int8.tflite --serve [--frames 10000] [--replay-frames 2000] [--rounds 3]
    python tools/bench_live.py model_int8.tflite --camera [--replay-frames 600] [--rounds 5] [--camera-fps 0] [--camera-mjpg] [--camera-size 640x480]
    python tools/bench_live.py model_int8.tflite --events [--replay-frames 600] [--rounds 5] [--camera-fps 0]

Prints numbers; asserts nothing. Run it on the Pi itself to get the Pi's numbers.

1. start-up: a fresh `edge-signs live --testset --headless --max-frames 1`
   process, from spawn to its first prediction (the JSON line's wall-clock time);
2. overhead: everything per frame except ``invoke`` (capture/decode, preprocess,
   overlay, recording, JSON), as a median and as % of the median invoke, for a
   test-set replay, a camera-sized video replay, that video while recording, and
   a 640x480 mp4 decoded ahead of the loop (``ReadAhead``) and in the loop itself;
3. memory: RSS at the first frame, at the end and the maximum, sampled every 100
   frames over a long replay of the test set (looped), to catch per-frame leaks.

With --camera, only the camera loop (``CameraLike`` below):

6. a camera-like source: 640x480 (--camera-size) BGR frames (SIGNS test images, upscaled into a
   scene with a textured background) delivered at a steady rate, faster than the
   model takes them as a Pi's camera is, through the same path a USB camera
   takes (``open_source`` -> ``CameraSource`` -> the ``LatestFrame`` capture
   thread); with --camera-mjpg each frame is a JPEG decoded in the capture thread,
   as a USB camera's MJPG mode is. For --threads 1 and --threads os.cpu_count():
   the model alone (median/mean invoke), invoke in the loop (median/mean), the
   median per-frame work outside invoke (ms and % of invoke), end-to-end FPS, the
   share of wall time spent in invoke ("busy"), FPS against 1 / invoke and against
   the model alone, CPU time per frame and camera frames decoded per frame taken:
   headless, headless with every frame prepared (the capture thread without
   PrepareSchedule, for comparison), and with the overlay (--record, and --serve
   with one viewer reading). The scenarios alternate round by round, so a machine
   whose speed drifts (a shared VM) drifts for all of them.

With --events, only the event outputs' cost (edge_signs/edge/events.py, event_outputs.py, mqtt.py):

7. the camera-like source of 6., each scene held for a second of camera time (so
   the smoothed sign is held and released about once a second: events to send),
   --threshold 0 so every frame names a sign: no event output, against --exec
   'true' with --mqtt to a running broker (a mosquitto this starts on a free
   loopback port; the row is left out, and said, without the binary), and with
   --mqtt to a port where no broker listens (down: paho retrying, events queued
   and dropped). Median FPS, outside-invoke ms and CPU time per frame (this
   process, every thread; the commands' own processes are not counted) over
   --rounds alternated rounds, and each against no output.

With --serve, only the browser server's cost (``live --serve``, edge_signs/edge/serve.py):

4. FPS of the test-set replay (looped, --headless) without a server, against the
   same replay with --serve 127.0.0.1:0 and one local viewer reading /stream.mjpg in
   a thread, alternated over --rounds rounds (medians; the ratio is what matters);
5. a stalled viewer: connects to /stream.mjpg and never reads (a tiny receive
   buffer), beside one viewer that reads, over --frames frames: RSS sampled every
   100 frames, and when the server dropped the stalled one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_labelled_video import make_labelled_video  # noqa: E402

from edge_signs import config  # noqa: E402
from edge_signs.data import resolve_data  # noqa: E402
from edge_signs.edge import sources as sources_module  # noqa: E402
from edge_signs.edge.events import EventOptions  # noqa: E402
from edge_signs.edge.live import LiveOptions, run_live  # noqa: E402
from edge_signs.edge.runtime import Classifier  # noqa: E402
from edge_signs.edge.sources import GrabRetrieve, PrepareSchedule  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.log import quiet  # noqa: E402

SOAK_FRAMES = 10_000  # memory soak: frames replayed (the test set, looped)
CAMERA_SIZE = (640, 480)  # the camera-like source's frames (width, height): a common USB camera mode
CAMERA_SCENES = 24  # distinct frames it cycles through (test images in a scene)
CAMERA_RATE = 1.5  # --camera-fps 0: the source delivers this many times the model's rate (1 / invoke)


def rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def startup_seconds(model: Path, threads: int, data: Path | None, runs: int) -> list[float]:
    """Spawn -> first prediction of a fresh `edge-signs live` process, ``runs`` times."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(runs):
            out = Path(tmp) / f"first{k}.jsonl"
            cmd = [sys.executable, "-m", "edge_signs", "live", str(model), "--testset", "--headless", "--max-frames", "1",
                   "--threads", str(threads), "--status-every", "0", "--json", str(out)]
            if data is not None:
                cmd += ["--signs", str(data)]
            t_spawn = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise EdgeSignsError(f"live run failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
            first = json.loads(out.read_text().splitlines()[0])
            times.append(first["time"] - t_spawn)
    return times


def import_seconds() -> float:
    """What the imports alone cost in a fresh process (numpy, OpenCV, the interpreter, edge_signs.live)."""
    code = ("import time; t = time.perf_counter(); import edge_signs.edge.live; from edge_signs.edge.runtime import find_backend; "
            "find_backend(); print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip())


def replay(model: Path, options, label: str) -> dict:
    s = run_live(model, options, log=quiet)
    pct = 100.0 * s.median_overhead_ms / s.median_inference_ms
    return {"scenario": label, "frames": s.frames, "fps": s.fps, "invoke": s.median_inference_ms, "overhead": s.median_overhead_ms, "pct": pct}


class MjpegViewer:
    """A /stream.mjpg client in a thread: reads (and counts) JPEG parts until the stream ends, or never reads at all."""

    def __init__(self, port: int, read: bool = True):
        self.jpegs = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if not read:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills at once: the server's send blocks
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET /stream.mjpg HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        self.thread = threading.Thread(target=self._read, daemon=True) if read else None
        if self.thread is not None:
            self.thread.start()

    def _read(self) -> None:
        f = self.sock.makefile("rb")
        with contextlib.suppress(OSError, ValueError):
            while line := f.readline():
                if line.lower().startswith(b"content-length:"):
                    f.readline()  # the blank line before the JPEG
                    f.read(int(line.split(b":")[1]))
                    self.jpegs += 1

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.thread is not None:
            self.thread.join(timeout=5)


def cpu_timed_run(model: Path, options: LiveOptions, on_each=None, **kwargs) -> tuple:
    """run_live, and the process's CPU time per frame (every thread: loop, encoder, server, viewer) from frame 0 to the end.

    FPS is wall time, which a busy machine (another job on the cores) makes noisy; CPU
    time per frame is what the work costs, whoever else runs.
    """
    marks: list[float] = []

    def mark(result) -> None:
        if result.frame == 0 or result.frame == options.max_frames - 1:
            marks.append(time.process_time())
        if on_each is not None:
            on_each(result)

    s = run_live(model, options, log=quiet, on_frame=mark, **kwargs)
    return s, 1e3 * (marks[-1] - marks[0]) / max(1, s.frames - 1)


def serve_fps(model: Path, threads: int, data: Path | None, frames: int, rounds: int) -> None:
    """Headless replay against the same replay with --serve and one viewer reading the stream, alternated."""
    common = dict(testset=True, headless=True, threads=threads, data=data, max_frames=frames, loop=True, status_interval=0)
    rows: dict[str, list] = {"headless": [], "serve": []}
    received = []
    for _ in range(rounds):
        rows["headless"].append(cpu_timed_run(model, LiveOptions(**common)))
        viewers: list[MjpegViewer] = []
        # The viewer connects while the model loads; it reads until the run's end closes the stream.
        rows["serve"].append(cpu_timed_run(model, LiveOptions(serve="127.0.0.1:0", **common),
                                           on_server=lambda server: viewers.append(MjpegViewer(server.port))))
        for v in viewers:
            v.close()
            received.append(v.jpegs)
    med = {k: {"fps": statistics.median(s.fps for s, _ in v), "invoke": statistics.median(s.median_inference_ms for s, _ in v),
               "overhead": statistics.median(s.median_overhead_ms for s, _ in v), "cpu": statistics.median(c for _, c in v)}
           for k, v in rows.items()}
    print(f"\n--serve, the test-set replay (looped, {frames} frames a run, {rounds} rounds alternated, medians; "
          f"SERVE_MAX_FPS {config.SERVE_MAX_FPS:g}, SERVE_MAX_SIDE {config.SERVE_MAX_SIDE}, quality {config.SERVE_JPEG_QUALITY}):")
    print(f"{'scenario':40s} {'fps':>7s} {'invoke ms':>9s} {'overhead ms':>11s} {'CPU ms/frame':>12s}   fps / CPU ms of each round")
    for key, label in (("headless", "--headless"), ("serve", "--headless --serve, one viewer reading")):
        m = med[key]
        each = ", ".join(f"{s.fps:.0f} / {c:.2f}" for s, c in rows[key])
        print(f"{label:40s} {m['fps']:7.1f} {m['invoke']:9.2f} {m['overhead']:11.3f} {m['cpu']:12.3f}   {each}")
    ratio = med["serve"]["fps"] / med["headless"]["fps"]
    cpu = med["serve"]["cpu"] / med["headless"]["cpu"]
    print(f"serve / headless: FPS {ratio:.3f} ({100 * (ratio - 1):+.1f}%), CPU per frame {cpu:.3f} ({100 * (cpu - 1):+.1f}%); "
          f"the viewer received {statistics.median(received):.0f} JPEGs a run (median; {', '.join(map(str, received))}), "
          f"encoded {statistics.median(s.served['encoded'] for s, _ in rows['serve']):.0f}")


def serve_stalled_memory(model: Path, threads: int, data: Path | None, frames: int) -> None:
    """RSS over a long --serve replay with one viewer that never reads (and one that does)."""
    samples: list[float] = []
    state: dict = {"viewers": [], "dropped_at": None}

    def on_server(server) -> None:
        state["server"] = server
        state["viewers"] += [MjpegViewer(server.port, read=False), MjpegViewer(server.port)]

    def sample(result) -> None:
        if result.frame % 100 == 0 or result.frame == frames - 1:
            samples.append(rss_mb())
            if state["dropped_at"] is None and state["server"].stats()["timed_out"]:
                state["dropped_at"] = (result.frame, time.perf_counter() - t0)

    t0 = time.perf_counter()
    s = run_live(model, LiveOptions(testset=True, headless=True, threads=threads, data=data, max_frames=frames, loop=True,
                                    status_interval=0, serve="127.0.0.1:0"), log=quiet, on_frame=sample, on_server=on_server)
    for v in state["viewers"]:
        v.close()
    mid = samples[len(samples) // 2]
    print(f"\n--serve, a viewer that never reads (beside one that reads), RSS over {s.frames} frames "
          f"({time.perf_counter() - t0:.0f} s, {s.fps:.1f} fps, {len(samples)} samples): first frame {samples[0]:.1f} MB, "
          f"end {samples[-1]:.1f} MB, max {max(samples):.1f} MB; growth first->end {samples[-1] - samples[0]:+.1f} MB, "
          f"second half {samples[-1] - mid:+.2f} MB")
    dropped = state["dropped_at"]
    print("  stalled viewer dropped by the server: "
          + (f"at frame {dropped[0]} ({dropped[1]:.1f} s; SERVE_SOCKET_TIMEOUT_S {config.SERVE_SOCKET_TIMEOUT_S:g})" if dropped else "no")
          + f"; the reading viewer got {state['viewers'][1].jpegs} JPEGs of {s.served['encoded']} encoded")


def write_scene_video(path: Path, scenes: list[np.ndarray], fps: float = 30.0) -> Path:
    """An mp4v file of the camera-like scenes, each held for 5 frames: a camera-sized file to replay."""
    h, w = scenes[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for scene in scenes:
        for _ in range(5):
            writer.write(scene)
    writer.release()
    return path


def camera_scenes(images_rgb: np.ndarray, size: tuple[int, int] = CAMERA_SIZE, count: int = CAMERA_SCENES) -> list[np.ndarray]:
    """BGR frames of ``size`` with real content: a hand image (upscaled to 5/6 of the height) on a textured background."""
    w, h = size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (60 + 80 * xx / w + 40 * yy / h)[..., None] + rng.normal(0, 12, (h, w, 3))
    background = np.clip(base, 0, 255).astype(np.uint8)
    side = h * 5 // 6
    frames = []
    for rgb in images_rgb[:count]:
        frame = background.copy()
        hand = cv2.resize(np.ascontiguousarray(rgb[..., ::-1]), (side, side), interpolation=cv2.INTER_LINEAR)
        y0, x0 = (h - side) // 2, (w - side) // 2
        frame[y0:y0 + side, x0:x0 + side] = hand
        frames.append(frame)
    return frames


class CameraLike(GrabRetrieve):
    """A stand-in for a USB camera: frames at a steady rate, like cv2.VideoCapture's grab and retrieve into one reused buffer.

    A frame not taken before the next is due is the camera's loss, not a queue: ``grab``
    sleeps until the next frame time (releasing the GIL, as a driver's wait does) and
    never returns frames faster than ``fps``; ``retrieve`` fills the buffer (the
    driver's conversion) or, with ``mjpg``, decodes a JPEG, in the reading thread (a USB
    camera's MJPG mode through OpenCV). ``retrieved`` counts the frames decoded.
    """

    live = True

    def __init__(self, scenes: list[np.ndarray], fps: float, mjpg: bool = False, name: str = "camera-like"):
        self.name = f"{name} {scenes[0].shape[1]}x{scenes[0].shape[0]} at {fps:.0f} fps{' (MJPG decode)' if mjpg else ''}"
        self.fps = min(fps, 1000.0)  # what --record writes into the file (containers refuse absurd rates)
        self.end_reason = "camera-like source stopped"
        self._scenes = scenes
        self._jpegs = [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 85])[1] for f in scenes] if mjpg else None
        self._buf = np.empty_like(scenes[0])
        self._period = 1.0 / fps
        self._next = 0.0
        self._i = 0
        self.retrieved = 0

    def grab(self) -> bool:
        now = time.perf_counter()
        if self._next > now:
            time.sleep(self._next - now)
        # A camera late by more than a frame does not catch up with a burst: it starts again from now.
        self._next = max(self._next + self._period, time.perf_counter())
        self._i += 1
        return True

    def retrieve(self):
        i = (self._i - 1) % len(self._scenes)
        if self._jpegs is not None:
            frame = cv2.imdecode(self._jpegs[i], cv2.IMREAD_COLOR)
        else:
            np.copyto(self._buf, self._scenes[i])  # the driver's conversion into the caller's buffer
            frame = self._buf
        self.retrieved += 1
        return frame, None

    def close(self) -> None:
        pass


@contextlib.contextmanager
def camera_is(factory):
    """sources.open_source builds ``factory(index, width, height, fps)`` for --camera: the real camera path, a fake device."""
    real = sources_module.CameraSource
    sources_module.CameraSource = factory
    try:
        yield
    finally:
        sources_module.CameraSource = real


def invoke_ms(model: Path, threads: int, runs: int = 600) -> tuple[float, float]:
    """Median and mean invoke of the model on its own: no camera, no loop (sets the camera's rate)."""
    clf = Classifier(model, threads=threads)
    clf.set_input(np.zeros((config.IMAGE_SIZE, config.IMAGE_SIZE, 3), np.uint8))
    for _ in range(20):
        clf.invoke()
    times = [clf.invoke() for _ in range(runs)]
    return statistics.median(times), statistics.fmean(times)


@contextlib.contextmanager
def prepare_every_frame():
    """The capture thread without PrepareSchedule, for comparison: every frame the camera delivers is decoded and prepared."""
    real = PrepareSchedule.wants
    PrepareSchedule.wants = lambda self, now, *, ready, waiting: True
    try:
        yield
    finally:
        PrepareSchedule.wants = real


def camera_bench(model: Path, threads_list: list[int], data: Path | None, frames: int, camera_fps: float, mjpg: bool, rounds: int,
                 size: tuple[int, int] = CAMERA_SIZE) -> None:
    """The camera loop at each thread count: headless, and with the overlay for --record and a --serve viewer."""
    signs = resolve_data(data, log=quiet)
    scenes = camera_scenes(signs.test.x, size)
    w, h = size
    print(f"\ncamera-like source, {w}x{h} BGR{' MJPG-decoded' if mjpg else ''} frames through open_source -> CameraSource -> "
          f"LatestFrame (the capture thread), {frames} frames a run, {rounds} round(s) with the scenarios alternated, medians of runs:")
    print(f"{'threads':>7s} {'scenario':32s} {'cam fps':>7s} {'alone ms':>13s} {'invoke ms':>13s} {'outside ms':>10s} {'% invoke':>8s} "
          f"{'fps':>6s} {'busy':>5s} {'ratio':>5s} {'alone':>5s} {'CPU ms':>6s} {'decoded':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        for threads in threads_list:
            alone, alone_mean = invoke_ms(model, threads)
            fps = camera_fps or CAMERA_RATE * 1e3 / alone
            common = dict(camera=0, width=w, height=h, fps=fps, headless=True, threads=threads, max_frames=frames, status_interval=0)
            scenarios = [
                ("headless", LiveOptions(**common), None),
                ("headless, every frame prepared", LiveOptions(**common), "every"),
                ("overlay + --record .avi", LiveOptions(record=Path(tmp) / "rec.avi", **common), None),
                ("overlay + --serve, 1 viewer", LiveOptions(serve="127.0.0.1:0", **common), "viewer"),
            ]
            rows: dict[str, list] = {label: [] for label, _, _ in scenarios}
            for _ in range(rounds):
                for label, options, extra in scenarios:
                    viewers: list[MjpegViewer] = []
                    invokes: list[float] = []
                    cameras: list[CameraLike] = []
                    kwargs = {"on_server": lambda server: viewers.append(MjpegViewer(server.port))} if extra == "viewer" else {}

                    def camera(index, width, height, cam_fps):
                        cameras.append(CameraLike(scenes, cam_fps, mjpg))
                        return cameras[-1]

                    policy = prepare_every_frame() if extra == "every" else contextlib.nullcontext()
                    with camera_is(camera), policy:
                        s, cpu = cpu_timed_run(model, options, on_each=lambda r: invokes.append(r.inference_ms), **kwargs)
                    for v in viewers:
                        v.close()
                    rows[label].append({"s": s, "mean": statistics.fmean(invokes), "cpu": cpu, "decoded": cameras[0].retrieved / s.frames})
            for label, _, _ in scenarios:
                runs = rows[label]

                def med(key):
                    return statistics.median(key(r) for r in runs)

                inv, mean = med(lambda r: r["s"].median_inference_ms), med(lambda r: r["mean"])
                out, e2e = med(lambda r: r["s"].median_overhead_ms), med(lambda r: r["s"].fps)
                print(f"{threads:7d} {label:32s} {fps:7.0f} {alone:6.3f}/{alone_mean:6.3f} {inv:6.3f}/{mean:6.3f} {out:10.3f} "
                      f"{100 * out / inv:7.1f}% {e2e:6.1f} {med(lambda r: r['s'].fps * r['mean'] / 1e3):5.3f} "
                      f"{med(lambda r: r['s'].fps * r['s'].median_inference_ms / 1e3):5.3f} {e2e * alone_mean / 1e3:5.3f} "
                      f"{med(lambda r: r['cpu']):6.2f} {med(lambda r: r['decoded']):7.2f}")
    print("alone: the model by itself (no camera, no loop), median/mean ms; invoke: in the loop, median/mean ms; outside: the median of "
          "everything per frame but invoke in the loop's thread (waiting for a frame, overlay, recording, JSON), and its % of the median "
          "invoke; busy = fps x mean invoke: the share of wall time the model is invoked (1 - busy is the loop's own cost); ratio = fps / "
          "(1 / median invoke); alone = fps / (1 / mean alone); CPU ms: process CPU time per frame, every thread; decoded: camera frames "
          "decoded and prepared per frame the model took; 'every frame prepared': the capture thread without PrepareSchedule")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mosquitto(folder: Path):
    """A mosquitto broker on a free loopback port: its mqtt:// URL, or None without the binary."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if binary is None:
        yield None
        return
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise EdgeSignsError("mosquitto did not start")
            time.sleep(0.05)
        yield f"mqtt://127.0.0.1:{port}/bench"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def events_bench(model: Path, threads: int, data: Path | None, frames: int, camera_fps: float, rounds: int) -> None:
    """The camera loop with no event output, against --exec and --mqtt (broker up, and down), alternated round by round."""
    signs = resolve_data(data, log=quiet)
    alone, _ = invoke_ms(model, threads)
    fps = camera_fps or CAMERA_RATE * 1e3 / alone
    held = [scene for scene in camera_scenes(signs.test.x) for _ in range(max(1, round(fps)))]  # each scene a second: references, no copies
    w, h = CAMERA_SIZE
    with tempfile.TemporaryDirectory() as tmp, mosquitto(Path(tmp)) as up:
        down = f"mqtt://127.0.0.1:{_free_port()}/bench"  # nothing listens there
        scenarios = [("no event output", EventOptions())]
        if up is not None:
            scenarios.append(("--exec true --mqtt (broker up)", EventOptions(command="true", mqtt=up)))
        else:
            print("no mosquitto binary: the broker-up row is left out (apt-get install mosquitto)")
        scenarios += [("--exec true --mqtt (broker down)", EventOptions(command="true", mqtt=down)),
                      ("--mqtt (broker down)", EventOptions(mqtt=down))]
        rows: dict[str, list] = {label: [] for label, _ in scenarios}
        common = dict(camera=0, width=w, height=h, fps=fps, headless=True, threads=threads, max_frames=frames, status_interval=0, threshold=0.0)
        for _ in range(rounds):
            for label, events in scenarios:
                with camera_is(lambda index, width, height, cam_fps: CameraLike(held, cam_fps)):
                    rows[label].append(cpu_timed_run(model, LiveOptions(events=events, **common)))
    print(f"\nevent outputs, camera-like {w}x{h} source at {fps:.0f} fps, each scene held 1 s, --threshold 0, {frames} frames a run, "
          f"{rounds} round(s) alternated, medians:")
    print(f"{'scenario':36s} {'fps':>7s} {'invoke ms':>9s} {'outside ms':>10s} {'CPU ms/frame':>12s} {'events':>6s} {'fps vs none':>11s} {'CPU vs none':>11s}")
    base_fps = statistics.median(s.fps for s, _ in rows["no event output"])
    base_cpu = statistics.median(c for _, c in rows["no event output"])
    for label, _ in scenarios:
        runs = rows[label]
        f, cpu = statistics.median(s.fps for s, _ in runs), statistics.median(c for _, c in runs)
        print(f"{label:36s} {f:7.1f} {statistics.median(s.median_inference_ms for s, _ in runs):9.3f} "
              f"{statistics.median(s.median_overhead_ms for s, _ in runs):10.3f} {cpu:12.3f} "
              f"{statistics.median(s.events['events'] for s, _ in runs):6.0f} {100 * (f / base_fps - 1):+10.1f}% {100 * (cpu / base_cpu - 1):+10.1f}%")
    print("outside ms: the median per-frame time in the loop's thread outside invoke (waiting for a frame included); CPU ms/frame: this "
          "process's CPU time per frame, every thread (paho's, the --exec worker's), not the commands' own processes")


@click.command()
@click.argument("model", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--frames", type=click.IntRange(min=100), default=SOAK_FRAMES, show_default=True, help="Frames in the memory soak (the test set, looped).")
@click.option("--replay-frames", type=click.IntRange(min=10), default=600, show_default=True, help="Frames per overhead scenario.")
@click.option("--threads", type=click.IntRange(min=1), default=config.THREADS, show_default=True)
@click.option("--startup-runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--video-size", type=click.IntRange(min=64), default=480, show_default=True, help="Side of the replayed video's frames (camera-sized).")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="SIGNS folder (default: as edge-signs train).")
@click.option("--serve", "serve", is_flag=True, help="Measure only --serve: FPS with a viewer against --headless, memory with a stalled viewer.")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True, help="--serve: alternated rounds of the FPS comparison; --camera: runs per scenario.")
@click.option("--camera", "camera", is_flag=True, help="Measure only the camera loop: a 640x480 camera-like source at --threads 1 and os.cpu_count().")
@click.option("--camera-fps", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help=f"--camera: the source's frame rate (0: {CAMERA_RATE:g}x the model's rate, so the camera outruns the model).")
@click.option("--camera-mjpg", is_flag=True, help="--camera: decode each frame from a JPEG in the capture thread (a USB camera's MJPG mode).")
@click.option("--camera-size", default=f"{CAMERA_SIZE[0]}x{CAMERA_SIZE[1]}", show_default=True, metavar="WxH",
              help="--camera: the camera-like source's frame size (e.g. 320x240, the live default).")
@click.option("--events", "events", is_flag=True, help="Measure only the event outputs: --exec and --mqtt (broker up, and down) against none, on the camera-like source.")
def main(model, frames, replay_frames, threads, startup_runs, video_size, data, serve, rounds, camera, camera_fps, camera_mjpg, camera_size,
         events):
    """Print start-up, per-frame overhead and memory numbers for MODEL in the live loop."""
    rss_start_process = rss_mb()
    clf = Classifier(model, threads=threads)
    print(f"model:   {clf.describe()}")
    print(f"machine: {os.cpu_count()} CPU(s), {sys.platform}, Python {sys.version.split()[0]}")
    del clf

    if events:
        print(f"load:    {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min)")
        try:
            events_bench(model, threads, data, replay_frames, camera_fps, rounds)
        except EdgeSignsError as exc:
            click.echo(f"bench_live: error: {exc}", err=True)
            sys.exit(1)
        return
    if camera:
        print(f"load:    {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1, 5, 15 min)")
        try:
            size = tuple(int(v) for v in camera_size.lower().split("x"))
            camera_bench(model, sorted({1, os.cpu_count() or 1}), data, replay_frames, camera_fps, camera_mjpg, rounds, size)
        except EdgeSignsError as exc:
            click.echo(f"bench_live: error: {exc}", err=True)
            sys.exit(1)
        return
    if serve:
        try:
            serve_fps(model, threads, data, replay_frames, rounds)
            serve_stalled_memory(model, threads, data, frames)
        except EdgeSignsError as exc:
            click.echo(f"bench_live: error: {exc}", err=True)
            sys.exit(1)
        return
    try:
        # memory first, while the process holds nothing else: over a long replay
        samples: list[float] = []

        def sample(result) -> None:
            if result.frame % 100 == 0 or result.frame == frames - 1:  # the last sample: the last frame, loop still live
                samples.append(rss_mb())

        t0 = time.perf_counter()
        s = run_live(model, LiveOptions(testset=True, headless=True, threads=threads, data=data, max_frames=frames, loop=True,
                                        status_interval=0), log=quiet, on_frame=sample)
        print(f"\nmemory, RSS over {s.frames} frames ({time.perf_counter() - t0:.0f} s, test set looped, {len(samples)} samples): "
              f"bench process before the model {rss_start_process:.1f} MB; first frame {samples[0]:.1f} MB, end {samples[-1]:.1f} MB, "
              f"max {max(samples):.1f} MB; growth first->end {samples[-1] - samples[0]:+.1f} MB")
        mid = samples[len(samples) // 2]
        print(f"  second half {mid:.1f} -> {samples[-1]:.1f} MB ({samples[-1] - mid:+.2f} MB; a per-frame leak would grow steadily); "
              f"after the run returned {rss_mb():.1f} MB")

        # start-up
        imports = import_seconds()
        times = startup_seconds(model, threads, data, startup_runs)
        print(f"\nstart-up, process spawn -> first prediction (--testset, {startup_runs} runs): "
              f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s; imports alone {imports:.2f} s")

        # overhead against invoke
        signs = resolve_data(data, log=quiet)
        common = dict(headless=True, threads=threads, data=data, max_frames=replay_frames, loop=True, status_interval=0)
        rows = [replay(model, LiveOptions(testset=True, **common), "testset replay (64x64 frames)")]
        with tempfile.TemporaryDirectory() as tmp:
            video, csv = Path(tmp) / "replay.avi", Path(tmp) / "replay.csv"
            make_labelled_video(video, csv, signs.test.x, signs.test.y, 5, video_size)
            rows.append(replay(model, LiveOptions(video=str(video), **common), f"video replay ({video_size}x{video_size} MJPG decode)"))
            rows.append(replay(model, LiveOptions(video=str(video), record=Path(tmp) / "rec.avi", json_path=Path(tmp) / "rec.jsonl", **common),
                               "video replay + overlay + --record .avi + --json"))
            mp4 = write_scene_video(Path(tmp) / "scenes.mp4", camera_scenes(signs.test.x))
            w, h = CAMERA_SIZE
            rows.append(replay(model, LiveOptions(video=str(mp4), **common), f"video replay ({w}x{h} mp4v, decoded ahead)"))
            rows.append(replay(model, LiveOptions(video=str(mp4), capture_thread=False, **common),
                               f"video replay ({w}x{h} mp4v, --no-capture-thread)"))
        print(f"\nper-frame time at {threads} thread(s), medians (overhead = everything but invoke):")
        print(f"{'scenario':50s} {'frames':>6s} {'fps':>7s} {'invoke ms':>9s} {'overhead ms':>11s} {'% of invoke':>11s}")
        for r in rows:
            print(f"{r['scenario']:50s} {r['frames']:6d} {r['fps']:7.1f} {r['invoke']:9.2f} {r['overhead']:11.2f} {r['pct']:10.1f}%")
    except EdgeSignsError as exc:
        click.echo(f"bench_live: error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
