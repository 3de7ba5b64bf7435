"""`edge-signs live --serve`: the page, the MJPEG stream, /status, the token, slow viewers and shutdown.

Every run here replays the SIGNS test set (looped) through the tiny committed int8
model, serves on 127.0.0.1 port 0 (a free port, read back through ``on_server``) and
is ended as Ctrl-C would end it. Only loopback addresses; every wait is bounded in
count and time; no timing is asserted (tools/bench_live.py --serve measures).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable, Optional

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge import serve as serve_module
from edge_signs.edge.live import LiveOptions, run_live
from edge_signs.edge.serve import Endpoint, HttpError, LiveServer, Request, check_token, host_name, parse_serve
from edge_signs.errors import EdgeSignsError
from tests.conftest import FIXTURES, REPO, SIGNS_DIR

MODEL = FIXTURES / "tiny_int8.tflite"  # the committed tiny classifier (tests/fixtures)
SIGNS = SIGNS_DIR  # the one SIGNS location of the test suite
WAIT_S = 120.0  # upper bound on any wait here: generous, for a 2-core machine shared with training jobs
TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module", autouse=True)
def _inputs():
    if not MODEL.is_file():
        pytest.fail(f"fixture model missing: {MODEL}")
    if not (SIGNS / "test_signs.h5").is_file():
        pytest.fail(f"SIGNS data not found at {SIGNS}; set {config.DATA_ENV_VAR}")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


# -- a served run in a thread -------------------------------------------------------------------------------------


class Run:
    def __init__(self):
        self.server: Optional[LiveServer] = None
        self.frames = 0
        self.labels: dict[int, Optional[str]] = {}  # frame -> smoothed label, when asked to record them
        self.logs: list[str] = []
        self.summary = None


@contextlib.contextmanager
def served(*, record_labels: bool = False, on_server: Optional[Callable[[LiveServer], None]] = None, **options):
    """run_live(--testset --loop --headless --serve 127.0.0.1:0) in a thread; leaving the block ends it like Ctrl-C."""
    run, stop, outcome = Run(), threading.Event(), {}

    def got_server(server: LiveServer) -> None:
        run.server = server
        if on_server is not None:
            on_server(server)

    def on_frame(r) -> None:
        run.frames = r.frame + 1
        if record_labels:
            run.labels[r.frame] = r.label
        if stop.is_set():
            raise KeyboardInterrupt  # what Ctrl-C does in the loop's thread

    def target() -> None:
        opts = dict(testset=True, loop=True, headless=True, data=SIGNS, serve="127.0.0.1:0", status_interval=0, max_frames=10**8)
        try:
            run.summary = run_live(MODEL, LiveOptions(**{**opts, **options}), log=run.logs.append, on_frame=on_frame, on_server=got_server)
        except BaseException as exc:  # noqa: BLE001 -- handed to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="test: run_live", daemon=True)
    thread.start()
    try:
        wait_until(lambda: run.frames > 0 or not thread.is_alive(), "the first frame")
        if "error" in outcome:
            raise outcome["error"]
        yield run
    finally:
        stop.set()
        thread.join(timeout=WAIT_S)
        assert not thread.is_alive(), "run_live did not end"
    if "error" in outcome:
        raise outcome["error"]


def request(port: int, path: str, *, method: str = "GET", headers: Optional[dict] = None, body: Optional[bytes] = None):
    """One HTTP request: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


class Viewer:
    """A /stream.mjpg client on a raw socket, parsing the multipart stream as a browser would."""

    def __init__(self, port: int, path: str = "/stream.mjpg", rcvbuf: Optional[int] = None, header: str = ""):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(WAIT_S)
        self.sock.connect(("127.0.0.1", port))
        extra = f"{header}\r\n" if header else ""
        self.sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode())
        self.f = self.sock.makefile("rb")
        self.status = self.headers = None

    def read_head(self) -> int:
        self.status = int(self.f.readline().split()[1])
        self.headers = {}
        while (line := self.f.readline().strip()) and len(self.headers) < 50:
            k, v = line.decode().split(":", 1)
            self.headers[k.lower()] = v.strip()
        return self.status

    def read_jpegs(self, n: int) -> list[bytes]:
        if self.status is None:
            assert self.read_head() == 200
            assert self.f.readline().strip() == b"--" + serve_module.BOUNDARY
        jpegs = []
        for _ in range(n):
            part = {}
            while (line := self.f.readline().strip()) and len(part) < 10:
                k, v = line.decode().split(":", 1)
                part[k.lower()] = v.strip()
            assert part.get("content-type") == "image/jpeg", part
            jpegs.append(self.f.read(int(part["content-length"])))
            assert self.f.readline() == b"\r\n"
            assert self.f.readline().strip() == b"--" + serve_module.BOUNDARY
        return jpegs

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.f.close()
            self.sock.close()


def serve_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("serve:")]


# -- parsing the options ---------------------------------------------------------------------------------------------


def test_parse_serve_and_token():
    assert parse_serve("8080") == Endpoint(config.SERVE_HOST, 8080)
    assert parse_serve("0.0.0.0:8080") == Endpoint("0.0.0.0", 8080)
    assert parse_serve("[::1]:0") == Endpoint("::1", 0)
    assert parse_serve("pi.local:80") == Endpoint("pi.local", 80)
    for bad in ("", "http", "8080:", ":8080", "::1:8080", "host:70000", "a:b:8080", "8080/x"):
        with pytest.raises(EdgeSignsError, match="--serve"):
            parse_serve(bad)
    check_token("A" * config.SERVE_MIN_TOKEN_CHARS)
    for bad in ("short", "has space in it!", "x" * 11 + "/"):
        with pytest.raises(EdgeSignsError, match="--token"):
            check_token(bad)
    assert host_name("localhost:8080") == "localhost" and host_name("[::1]:9") == "::1" and host_name("127.0.0.1") == "127.0.0.1"


@pytest.mark.parametrize("options, words", [
    (dict(serve="nope"), "--serve"),
    (dict(serve="8080", token="short"), "--token"),
    (dict(token=TOKEN), "--serve"),
])
def test_bad_serve_options_are_one_line_errors(options, words):
    with pytest.raises(EdgeSignsError, match=words) as exc:
        LiveOptions(testset=True, headless=True, **options).source_kind()
    assert "\n" not in str(exc.value)


def test_serving_draws_the_overlay():
    assert LiveOptions(headless=True, serve="8080").shows_frames()
    assert not LiveOptions(headless=True).shows_frames()


# -- the routes ------------------------------------------------------------------------------------------------------


def test_page_status_and_stream_on_loopback():
    with served() as run:
        port = run.server.port
        assert any(f"serving http://127.0.0.1:{port}/" in line for line in run.logs), run.logs

        status, headers, page = request(port, "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        text = page.decode()
        assert "stream.mjpg" in text and "status" in text
        # No external assets: nothing loaded from another host (the Pi may have no internet).
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text) and "@import" not in text
        assert headers["Cache-Control"] == "no-store" and "default-src 'none'" in headers["Content-Security-Policy"]

        status, headers, body = request(port, "/status")
        s = json.loads(body)
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert {"frame", "label", "smoothed_confidence", "raw_label", "confidence", "inference_ms", "fps", "truth",
                "model", "source", "labels", "viewers"} <= set(s)
        assert s["frame"] >= 0 and s["labels"] == list(config.LABELS) and s["truth"] in config.LABELS

        viewer = Viewer(port)
        try:
            jpegs = viewer.read_jpegs(3)
            assert viewer.headers["content-type"] == f"multipart/x-mixed-replace; boundary={serve_module.BOUNDARY.decode()}"
            for jpeg in jpegs:
                img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                assert img is not None and max(img.shape[:2]) <= config.SERVE_MAX_SIDE
                assert min(img.shape[:2]) >= config.DISPLAY_MIN_SIDE  # the overlay's upscaled 64x64 frame
            assert json.loads(request(port, "/status")[2])["viewers"] == 1
        finally:
            viewer.close()

        # Only the routes above: no files, no listing, no other method.
        for path in ("/nope", "/index.html", "/../../etc/passwd", "/%2e%2e/etc/passwd", "/stream.mjpg/x", "/status/", "/static/",
                     "http://127.0.0.1/status"):
            assert request(port, path)[0] == 404, path
        status, headers, _ = request(port, "/status", method="POST", body=b"{}", headers={"Content-Type": "application/json"})
        assert status == 405 and headers["Allow"] == "GET"
        # Without a token the server answers only to a loopback Host (no DNS rebinding from a web page).
        assert request(port, "/status", headers={"Host": "evil.example:80"})[0] == 403
        assert request(port, "/status", headers={"Host": f"localhost:{port}"})[0] == 200
    summary = run.summary
    assert summary.reason == "interrupted (Ctrl-C)"
    assert summary.served["viewer_connections"] == 1 and summary.served["encoded"] >= 3
    assert "served http://127.0.0.1:" in summary.text()


def test_token_protects_every_route_including_registered_ones():
    calls = []

    def add_routes(server: LiveServer) -> None:
        server.add_route("POST", "/capture", lambda req: calls.append(req.body) or {"saved": len(calls)})
        server.add_route("GET", "/counts", lambda req: {"0": 1})

    with served(token=TOKEN, on_server=add_routes) as run:
        port = run.server.port
        for path, method in (("/", "GET"), ("/status", "GET"), ("/stream.mjpg", "GET"), ("/counts", "GET"),
                             ("/capture", "POST"), ("/nope", "GET")):
            body = b'{"label": 3}' if method == "POST" else None
            ctype = {"Content-Type": "application/json"} if method == "POST" else {}
            status, headers, text = request(port, path, method=method, body=body, headers=ctype)
            assert status == 401 and "token" in text.decode() and headers["WWW-Authenticate"].startswith("Bearer"), path
            assert request(port, f"{path}?token=wrong-token-123", method=method, body=body, headers=ctype)[0] == 403, path
            assert request(port, path, method=method, body=body, headers={**ctype, "Authorization": "Bearer nope"})[0] == 403, path
            if path == "/stream.mjpg":
                for viewer in (Viewer(port, path, header=f"Authorization: Bearer {TOKEN}"), Viewer(port, f"{path}?token={TOKEN}")):
                    try:
                        assert len(viewer.read_jpegs(1)) == 1
                    finally:
                        viewer.close()
                continue
            expected = 404 if path == "/nope" else 200
            assert request(port, path, method=method, body=body, headers={**ctype, "Authorization": f"Bearer {TOKEN}"})[0] == expected, path
            assert request(port, f"{path}?token={TOKEN}", method=method, body=body, headers=ctype)[0] == expected, path
        assert calls == [{"label": 3}, {"label": 3}]
        # The page carries the token to its own requests (the video and /status), and never leaks it in a Referer.
        status, headers, page = request(port, f"/?token={TOKEN}")
        assert TOKEN in page.decode() and headers["Referrer-Policy"] == "no-referrer"


def test_beyond_loopback_a_token_is_generated_printed_and_required(monkeypatch):
    # Binds 127.0.0.1 but takes it for a network address: the tests never listen beyond loopback.
    monkeypatch.setattr(serve_module, "is_loopback", lambda address: False)
    with served() as run:
        port, token = run.server.port, run.server.token
        assert token and len(token) >= config.SERVE_MIN_TOKEN_CHARS
        line = next(line for line in run.logs if line.startswith("serving on"))
        assert f":{port}/?token={token}" in line and "token" in line
        assert request(port, "/status")[0] == 401
        assert request(port, f"/status?token={token}")[0] == 200


def test_registered_routes_take_only_bounded_json():
    seen: list[Request] = []

    def refuse(req: Request):
        raise HttpError(409, f"busy with {req.query['label'][-1]}")

    def bad_label(req: Request):
        raise EdgeSignsError("label 7: expected 0-5")

    def add_routes(server: LiveServer) -> None:
        server.add_route("post", "/capture", lambda req: seen.append(req) or {"ok": True})
        server.add_route("GET", "/broken", lambda req: object())  # not JSON: a bug in a route
        server.add_route("GET", "/busy", refuse)
        server.add_route("GET", "/label", bad_label)
        with pytest.raises(ValueError):
            server.add_route("GET", "/status", lambda req: None)
        with pytest.raises(ValueError):
            server.add_route("POST", "/../x", lambda req: None)

    with served(on_server=add_routes) as run:
        port = run.server.port
        json_ct = {"Content-Type": "application/json"}
        status, headers, body = request(port, "/capture?n=2", method="POST", body=b'{"label": 1}', headers=json_ct)
        assert status == 200 and headers["Content-Type"] == "application/json" and json.loads(body) == {"ok": True}
        assert headers["Cache-Control"] == "no-store"
        # A form post (what another web site could send without a preflight) is refused.
        assert request(port, "/capture", method="POST", body=b"label=1", headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
        assert request(port, "/capture", method="POST", body=b"{", headers=json_ct)[0] == 400
        big = b'"' + b"x" * config.SERVE_MAX_BODY + b'"'
        assert request(port, "/capture", method="POST", body=big, headers=json_ct)[0] == 413
        status, headers, _ = request(port, "/capture")
        assert status == 405 and headers["Allow"] == "POST"
        assert [(r.method, r.path, r.query, r.body) for r in seen] == [("POST", "/capture", {"n": ["2"]}, {"label": 1})]
        assert seen[0].headers["Content-Type"] == "application/json"
        # A route's own refusals: its status and line as given; a bad-input error is a 400 with its line.
        assert request(port, "/busy?label=3")[::2] == (409, b"busy with 3\n")
        assert request(port, "/label")[::2] == (400, b"label 7: expected 0-5\n")
        assert request(port, "/broken")[0] == 500  # said once in the log; the run goes on
        frames = run.frames
        wait_until(lambda: run.frames > frames, "the loop to go on")
        assert any("/broken failed" in line for line in run.logs)


# -- many, slow and stalled viewers ----------------------------------------------------------------------------------


def test_viewers_beyond_the_limit_get_503(monkeypatch):
    monkeypatch.setattr(config, "SERVE_MAX_CLIENTS", 1)
    with served() as run:
        port = run.server.port
        first = Viewer(port)
        try:
            first.read_jpegs(1)
            second = Viewer(port)
            try:
                assert second.read_head() == 503
                assert b"too many viewers" in second.f.read(500)
            finally:
                second.close()
            assert request(port, "/status")[0] == 200  # the page and status still answer
            first.read_jpegs(2)  # and the first viewer still gets frames
        finally:
            first.close()
    assert run.summary.served["refused"] == 1


def test_a_stalled_viewer_neither_slows_the_loop_nor_the_others(monkeypatch):
    # A short timeout and a small send buffer so the stall shows within seconds; every frame encoded.
    monkeypatch.setattr(config, "SERVE_SOCKET_TIMEOUT_S", 1.0)
    monkeypatch.setattr(config, "SERVE_SEND_BUFFER", 32 * 1024)
    monkeypatch.setattr(config, "SERVE_MAX_FPS", 1000.0)
    with served() as run:
        server = run.server
        stalled = Viewer(server.port, rcvbuf=4096)  # sends its request, then never reads
        try:
            wait_until(lambda: server.viewers == 1, "the stalled viewer to connect")
            frames = run.frames
            wait_until(lambda: run.frames >= frames + 100, "the loop to go on while the viewer stalls")
            reader = Viewer(server.port)
            try:
                assert len(reader.read_jpegs(5)) == 5  # a viewer that reads gets frames meanwhile
                wait_until(lambda: server.stats()["timed_out"] >= 1, "the stalled viewer to be dropped")
                wait_until(lambda: server.viewers == 1, "the stalled viewer's slot to be freed")
                assert len(reader.read_jpegs(3)) == 3
            finally:
                reader.close()
        finally:
            stalled.close()


# -- stopping ----------------------------------------------------------------------------------------------------------


def test_stopping_ends_every_viewer_releases_the_port_and_joins_the_threads():
    with served() as run:
        port = run.server.port
        reader, stalled = Viewer(port), Viewer(port, rcvbuf=4096)
        reader.read_jpegs(1)
        wait_until(lambda: run.server.viewers == 2, "two viewers")
    try:
        assert run.summary.reason == "interrupted (Ctrl-C)"
        # The reading viewer sees the stream end; the port is closed; no server thread is left.
        deadline = time.monotonic() + WAIT_S
        while reader.f.read(65536) and time.monotonic() < deadline:
            pass
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert serve_threads() == []
    finally:
        reader.close()
        stalled.close()


def test_port_in_use_is_one_line_before_the_source_opens(monkeypatch):
    import edge_signs.edge.live as live

    opened = []
    monkeypatch.setattr(live, "open_source", lambda *a, **k: opened.append(1))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(EdgeSignsError, match=f"port {port} is in use") as exc:
            run_live(MODEL, LiveOptions(testset=True, headless=True, serve=f"127.0.0.1:{port}"), log=lambda m: None)
        assert "\n" not in str(exc.value) and opened == []
        # The command line says it in one line too.
        proc = subprocess.run([sys.executable, "-m", "edge_signs", "live", str(MODEL), "--testset", "--headless",
                               "--signs", str(SIGNS), "--serve", f"127.0.0.1:{port}"], capture_output=True, text=True, cwd=REPO, timeout=2 * WAIT_S)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and "in use" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert serve_threads() == []


@pytest.mark.parametrize("signum, reason", [(signal.SIGTERM, "terminated (SIGTERM)"), (signal.SIGINT, "interrupted (Ctrl-C)")])
def test_sigterm_or_ctrl_c_stops_server_and_loop_cleanly(tmp_path, signum, reason):
    jsonl = tmp_path / "frames.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "edge_signs", "live", str(MODEL), "--testset", "--loop", "--headless",
                             "--signs", str(SIGNS), "--serve", "127.0.0.1:0", "--json", str(jsonl), "--status-every", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        port, err = None, []
        deadline = time.monotonic() + WAIT_S
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(queue.Empty):
                err.append(lines.get(timeout=0.5))
                m = re.search(r"serving http://127\.0\.0\.1:(\d+)/", err[-1])
                port = int(m.group(1)) if m else None
        assert port is not None, "".join(err)
        viewer = Viewer(port)
        try:
            viewer.read_jpegs(2)
            proc.send_signal(signum)
            out, _ = proc.communicate(timeout=WAIT_S)
            while viewer.f.read(65536):  # the stream ends (the socket closes), it does not hang
                pass
        finally:
            viewer.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=WAIT_S)
    assert proc.returncode == 0, "".join(err)
    assert f"ended: {reason}" in out and "served http://127.0.0.1:" in out
    frames = int(out.split(" frames from ")[0].splitlines()[-1])
    # The JSON lines were finalised: complete, in order, one per counted frame (the signal ends the loop between frames).
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [d["frame"] for d in lines] == list(range(len(lines))) and len(lines) == frames
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


# -- a real browser ----------------------------------------------------------------------------------------------------

BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")
def test_page_in_a_headless_browser_shows_frames_and_the_status_label(tmp_path):
    with served(record_labels=True) as run:
        port = run.server.port
        cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
               "--virtual-time-budget=3000", "--dump-dom", f"http://127.0.0.1:{port}/"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2 * WAIT_S)
        status = json.loads(request(port, "/status")[2])
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body is not None, proc.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    # The video shows frames; the sign shown is what /status said for the frame shown.
    assert int(attrs.get("video-width", 0)) >= config.DISPLAY_MIN_SIDE, attrs
    frame = int(attrs["frame"])
    assert frame in run.labels
    assert attrs["label"] == (run.labels[frame] or "")
    assert status["label"] == run.labels[status["frame"]]
    sign = re.search(r'<div id="sign"[^>]*>([^<]*)</div>', proc.stdout).group(1)
    assert sign == (run.labels[frame] if run.labels[frame] is not None else "no sign")
