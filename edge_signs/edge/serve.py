"""See the camera from a browser: `edge-signs live MODEL --serve [HOST:]PORT`.

An HTTP server beside the live loop, for Pis that run headless over SSH:

    GET /             a small page (no external assets: works on a Pi with no internet) showing
                      the annotated video, the smoothed sign, its confidence, FPS and inference time
    GET /stream.mjpg  the annotated frames as MJPEG (multipart/x-mixed-replace)
    GET /status       the latest prediction, and the last events (events.py), as JSON
    (+ routes a caller registers with ``LiveServer.add_route``: e.g. a future `collect`'s buttons)

Anything else is a 404: no directory listing and no file is ever read from a request's path.

The loop never waits for a viewer. ``publish_frame`` only copies the annotated frame
into the encoder's buffer when a viewer is connected, the encoder is idle and
``SERVE_MAX_FPS`` allows it; the encoder thread scales it to ``SERVE_MAX_SIDE`` and
makes ONE JPEG that every viewer shares. Each viewer's thread waits for a newer JPEG
and writes it; a viewer slower than the frame rate simply misses frames, and one that
stops reading blocks only its own thread (its kernel send buffer is capped by
``SERVE_SEND_BUFFER``) until ``SERVE_SOCKET_TIMEOUT_S`` drops it and frees its slot.
Memory is one JPEG per viewer at most, whatever the viewers do.

Safe by default: binds to 127.0.0.1 unless a host is given. Any other host (the
network) needs a token in every request (``?token=`` or ``Authorization: Bearer``),
generated with ``secrets.token_urlsafe`` and printed with the URL, or given with
``--token`` / ``$EDGE_SIGNS_TOKEN``; 401 without one, 403 for a wrong one. Without a
token (loopback only) the Host header must name loopback too, so a web page in the
Pi's own browser cannot reach the server through DNS rebinding, and POST routes take
only ``application/json``, which another site cannot send without a CORS preflight
this server never grants.

Why the standard library's ``ThreadingHTTPServer`` and not a server package: the
``[pi]`` install stays numpy, OpenCV and LiteRT; the viewers are few
(``SERVE_MAX_CLIENTS``), so a thread per connection costs nothing that matters; and
what a package would add -- bounded clients, stalled-client handling, a clean stop --
is a few explicit lines here: a connection cap in ``process_request``, per-socket
timeouts and send buffers, a deadline for the whole request (``SERVE_HEADER_TIMEOUT_S``:
a client trickling one byte at a time does not extend it), a full server giving the
slot of its oldest connection that has not shown the token yet to a new one (so
strangers cannot lock the owner out), one shared frame behind a condition, and ``close()``,
which stops accepting, releases the port, shuts every open connection and joins the
threads. An asyncio server would still need a thread beside the synchronous loop.

numpy, OpenCV and the standard library only: this runs on the Pi (never TensorFlow).
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import html
import io
import ipaddress
import json
import re
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs

import cv2
import numpy as np

from edge_signs import config
from edge_signs.artifacts import dumps, finite_or_none
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr

BOUNDARY = b"edge-signs-frame"
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")  # URL-safe: goes into ?token= unescaped

# -- the address and the token -------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where --serve listens: a host (name or address) and a port (0: any free port)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_serve(text: str) -> Endpoint:
    """'PORT', 'HOST:PORT' or '[IPV6]:PORT' -> Endpoint; a one-line error otherwise."""
    m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.%\w]+)\]:|([^\[\]:]+):)?(\d{1,5})", text.strip())
    if m is None or int(m.group(3)) > 65535:
        raise EdgeSignsError(f"--serve {text!r}: expected [HOST:]PORT, e.g. 8080, 0.0.0.0:8080 or [::]:8080 (port 0-65535)")
    host = m.group(1) or m.group(2) or config.SERVE_HOST
    return Endpoint(host, int(m.group(3)))


def check_token(token: str) -> None:
    """A --token a browser URL can carry unescaped, and not trivially guessed."""
    if not _TOKEN_CHARS.fullmatch(token) or len(token) < config.SERVE_MIN_TOKEN_CHARS:
        raise EdgeSignsError(f"--token: use at least {config.SERVE_MIN_TOKEN_CHARS} characters from A-Z a-z 0-9 . _ ~ -, "
                             f"or leave it out to get a random one")


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The name in a Host header, without its port: 'localhost:8080' -> 'localhost', '[::1]:8080' -> '::1'."""
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:value.index("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _resolve(endpoint: Endpoint) -> tuple[int, tuple]:
    """The socket family and address to bind; a one-line error for a host that is no address of ours."""
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise EdgeSignsError(f"--serve {endpoint}: unknown host {endpoint.host!r} ({exc.strerror}); "
                             f"use an address of this machine, 0.0.0.0 (every network) or 127.0.0.1 (this machine only)") from None
    family, _, _, _, address = infos[0]
    return family, address


def _lan_address() -> Optional[str]:
    """The address other machines most likely reach this one at (no packet is sent: a UDP connect only picks a route)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.254.254.254", 9))
        return s.getsockname()[0]
    return None


# -- requests, routes, errors ------------------------------------------------------------------------------


class HttpError(Exception):
    """An HTTP error answer: a status and one short line of text (route handlers may raise it too)."""

    def __init__(self, status: int, text: str, headers: Optional[dict[str, str]] = None):
        super().__init__(text)
        self.status, self.text, self.headers = status, text, headers or {}


@dataclass
class Request:
    """What a registered route's handler gets: no raw path is ever used to reach a file."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any = None  # the parsed JSON of a POST, else None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Any]  # returns something JSON-able (200), or raises HttpError

# -- frames: one JPEG shared by every viewer -----------------------------------------------------------------


class FrameHub:
    """The newest JPEG and its number. Viewers wait for a newer one; the producer never waits for them."""

    def __init__(self):
        self._cond = threading.Condition()
        self._jpeg: Optional[bytes] = None
        self._seq = 0
        self.closed = False

    def put(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg = jpeg  # the old one lives on only in a viewer still writing it
            self._seq += 1
            self._cond.notify_all()

    def wait_newer(self, seen: int, timeout: float) -> Optional[tuple[int, bytes]]:
        """The newest JPEG if it is newer than ``seen``, else None after ``timeout`` or when closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._seq > seen or self.closed, timeout=timeout)
            if self.closed or self._seq <= seen:
                return None
            return self._seq, self._jpeg

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class FrameEncoder:
    """Scales and JPEG-encodes frames in its own thread, at most ``max_fps`` a second.

    ``offer`` runs on the loop's thread and never blocks: it copies the frame into a
    reused buffer only when the encoder is idle and the rate allows, else it returns False.
    (OpenCV releases the GIL while it resizes and encodes, so this overlaps inference.)
    """

    def __init__(self, hub: FrameHub, max_fps: float, max_side: int, quality: int):
        self._hub = hub
        self._period = 1.0 / max_fps
        self._max_side = max_side
        self._params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        self._cond = threading.Condition()
        self._buf: Optional[np.ndarray] = None
        self._pending = False
        self._closed = False
        self._next_due = 0.0
        self.encoded = 0
        self._thread = threading.Thread(target=self._run, name="serve: encoder", daemon=True)
        self._thread.start()

    def due(self) -> bool:
        """Whether ``offer`` would take a frame now (so the loop can skip drawing one it would not)."""
        return not self._pending and time.monotonic() >= self._next_due

    def offer(self, img: np.ndarray) -> bool:
        now = time.monotonic()
        if self._pending or now < self._next_due or self._closed:
            return False
        self._next_due = now + self._period
        if self._buf is None or self._buf.shape != img.shape or self._buf.dtype != img.dtype:
            self._buf = np.empty_like(img)  # only when the frame size changes
        np.copyto(self._buf, img)  # the loop reuses its canvas: the encoder gets its own copy
        with self._cond:
            self._pending = True
            self._cond.notify()
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
            jpeg = self._encode(self._buf)  # the loop does not touch _buf while _pending
            if jpeg is not None:
                self._hub.put(jpeg)
                self.encoded += 1
            with self._cond:
                self._pending = False

    def _encode(self, img: np.ndarray) -> Optional[bytes]:
        h, w = img.shape[:2]
        scale = self._max_side / max(h, w)
        if scale < 1:
            img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", img, self._params)
        return buf.tobytes() if ok else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2.0)


# -- the page ----------------------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-signs live</title>
<style>
body{margin:0;font:16px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;background:#151515;color:#eee}
main{display:flex;flex-wrap:wrap;gap:20px;padding:16px;align-items:flex-start}
#video{display:block;width:min(640px,100%);aspect-ratio:auto;background:#000;image-rendering:pixelated;border-radius:6px}
section{min-width:260px;flex:1}
#sign{font-size:72px;font-weight:700;line-height:1;color:#50dc50}
#sign.none{color:#ffbe00;font-size:40px}
.bar{height:10px;background:#333;border-radius:5px;margin:10px 0 4px;max-width:360px}
#confbar{height:100%;width:0;background:#50dc50;border-radius:5px}
table{border-collapse:collapse;margin-top:12px}
th{text-align:left;font-weight:400;color:#aaa;padding:2px 16px 2px 0}
td{font-variant-numeric:tabular-nums}
#state{margin-top:12px;color:#aaa}#state.bad{color:#ff7070}
small{color:#888}
</style></head>
<body><main>
<img id="video" alt="annotated camera stream">
<section>
<div id="sign" class="none">waiting&hellip;</div>
<div class="bar"><div id="confbar"></div></div>
<div id="conf">&nbsp;</div>
<table>
<tr><th>this frame</th><td id="raw"></td></tr>
<tr><th>FPS</th><td id="fps"></td></tr>
<tr><th>inference</th><td id="inference"></td></tr>
<tr><th>frame</th><td id="frame"></td></tr>
<tr id="truthrow" hidden><th>truth</th><td id="truth"></td></tr>
<tr><th>viewers</th><td id="viewers"></td></tr>
</table>
<p><small>last events</small></p><ul id="events"></ul>
<p id="state">connecting&hellip;</p>
<p><small id="about">__ABOUT__</small></p>
</section></main>
<script>
"use strict";
const CFG = __CONFIG__;
const auth = CFG.token ? "token=" + encodeURIComponent(CFG.token) : "";
const $ = (id) => document.getElementById(id);
const pct = (x) => (100 * x).toFixed(0) + "%";

// The stream: one <img>; reconnect after an error (server busy: 503, or restarting).
function startStream() {
  $("video").src = "stream.mjpg?" + auth + (auth ? "&" : "") + "t=" + Date.now();
}
$("video").onerror = () => { state("video unavailable (too many viewers, or the server stopped); retrying", true); setTimeout(startStream, 2000); };

function state(text, bad) { $("state").textContent = text; $("state").className = bad ? "bad" : ""; }

function show(s) {
  const sign = $("sign");
  sign.textContent = s.frame === null ? "waiting\\u2026" : (s.label === null ? "no sign" : s.label);
  sign.className = s.label === null ? "none" : "";
  $("confbar").style.width = pct(s.smoothed_confidence || 0);
  $("conf").textContent = s.frame === null ? "" : "confidence " + pct(s.smoothed_confidence) + " (smoothed)";
  $("raw").textContent = s.frame === null ? "" : s.raw_label + " " + pct(s.confidence);
  $("fps").textContent = s.fps.toFixed(1);
  $("inference").textContent = s.inference_ms.toFixed(2) + " ms";
  $("frame").textContent = s.frame === null ? "" : s.frame;
  $("truthrow").hidden = !s.truth;
  $("truth").textContent = s.truth || "";
  $("viewers").textContent = s.viewers + " of " + s.max_viewers;
  const events = s.events || [];  // newest first
  $("events").replaceChildren(...events.map((e) => {
    const li = document.createElement("li");
    li.textContent = e.sign + " " + e.event + " " + pct(e.confidence) + ", " + e.held_s.toFixed(1) + " s";
    return li;
  }));
  // For tests and scripts: what the page shows, and whether the video has frames.
  document.body.dataset.frame = s.frame === null ? "" : s.frame;
  document.body.dataset.label = s.label === null ? "" : s.label;
  document.body.dataset.events = events.map((e) => e.sign + ":" + e.event).join(" ");
  document.body.dataset.videoWidth = $("video").naturalWidth;
}

async function poll() {
  try {
    const r = await fetch("status" + (auth ? "?" + auth : ""), {cache: "no-store"});
    if (!r.ok) throw new Error(r.status + " " + (await r.text()).trim());
    show(await r.json());
    state("live");
  } catch (e) {
    state("disconnected: " + e.message, true);
  }
  setTimeout(poll, CFG.poll_ms);
}
startStream();
poll();
</script>
</body></html>
"""


def render_page(token: Optional[str], about: str) -> bytes:
    cfg = json.dumps({"token": token, "poll_ms": config.SERVE_STATUS_POLL_MS}).replace("</", "<\\/")
    return PAGE.replace("__CONFIG__", cfg).replace("__ABOUT__", html.escape(about)).encode("utf-8")


# -- HTTP ---------------------------------------------------------------------------------------------------------


class _DeadlineReader(io.RawIOBase):
    """A client socket's reads, all due by one deadline: the whole request must arrive in time, not each byte."""

    def __init__(self, sock: socket.socket, seconds: float, idle: float, on_late: Callable[[], None]):
        self._sock, self._idle, self._on_late = sock, idle, on_late
        self._deadline = time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            self._on_late()
            raise TimeoutError("the request did not arrive within its deadline")
        self._sock.settimeout(min(left, self._idle))
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            if self._deadline - time.monotonic() <= 0:
                self._on_late()
            raise


@dataclass
class _Connection:
    thread: threading.Thread
    since: float  # time.monotonic() when accepted
    authorized: bool = False  # showed the token (or, on loopback without one, a loopback Host)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on open connections and a list of them, for a clean stop.

    When every slot is taken, the oldest connection that has not been authorized yet is
    dropped for the new one: a stranger's slow connections cannot keep the owner out.
    """

    daemon_threads = True  # a stuck client thread never keeps the process alive
    block_on_close = False  # close() joins the threads itself, with a timeout
    allow_reuse_address = True  # rebinding after a restart is not blocked by old TIME_WAIT connections

    def __init__(self, family: int, address: tuple, live: "LiveServer"):
        self.address_family = family
        self.live = live
        self._open: dict[socket.socket, _Connection] = {}
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() looks up the host's FQDN: seconds of DNS timeout on a Pi with no network.
        if self.address_family == socket.AF_INET6:
            with contextlib.suppress(OSError):  # '::' serves IPv4 too, where the system allows it
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super(ThreadingHTTPServer, self).server_bind()  # TCPServer's: bind only
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request, client_address) -> None:
        with self._open_lock:
            evicted = self._evict_one() if len(self._open) >= self.live.max_connections else None
            full = len(self._open) >= self.live.max_connections
            if not full:
                thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                          name="serve: client", daemon=True)
                self._open[request] = _Connection(thread, time.monotonic())
        if evicted is not None:
            self.live.count("evicted")
            with contextlib.suppress(OSError):
                evicted.shutdown(socket.SHUT_RDWR)  # its thread's read returns at once and it ends
        if full:  # answered on the accept thread, which must not wait: a short timeout, then gone
            self.live.count("refused")
            with contextlib.suppress(OSError):
                request.settimeout(0.5)
                request.sendall(_plain(503, "too many connections to edge-signs live; try again shortly"))
            self.shutdown_request(request)
            return
        thread.start()

    def _evict_one(self) -> Optional[socket.socket]:
        """The oldest connection still without authorization, taken off the list (the caller holds the lock)."""
        waiting = [(c.since, sock) for sock, c in self._open.items() if not c.authorized]
        if not waiting:
            return None
        sock = min(waiting, key=lambda item: item[0])[1]
        del self._open[sock]
        return sock

    def authorized(self, request) -> None:
        with self._open_lock:
            if request in self._open:
                self._open[request].authorized = True

    def shutdown_request(self, request) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        pass  # a client that went away mid-request (or was dropped for a newer one): nothing to report on the Pi's console

    def drop_all(self, timeout: float) -> None:
        """Unblock and end every client thread (a stalled viewer's too), waiting at most ``timeout`` in all."""
        with self._open_lock:
            items = list(self._open.items())
        for conn, _ in items:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # a thread blocked in send() or recv() returns at once
        deadline = time.monotonic() + timeout
        for _, connection in items:
            connection.thread.join(timeout=max(0.0, deadline - time.monotonic()))


def _plain(status: int, text: str, headers: Optional[dict[str, str]] = None) -> bytes:
    """A whole HTTP/1.0 text/plain response, for the accept thread's refusals."""
    body = (text + "\n").encode("utf-8")
    lines = [f"HTTP/1.0 {status} {HTTPStatus(status).phrase}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_SECURITY_HEADERS = {
    "Cache-Control": "no-store",  # live data, and a token in the URL: nothing for caches
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token never leaves in a Referer header
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; connect-src 'self'; "
                               "script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "edge-signs"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive connections to hold slots

    def setup(self) -> None:
        live = self.server.live
        self.timeout = live.socket_timeout  # every read and write: a silent client is dropped
        super().setup()
        # Reads are due by one deadline for the whole request: a byte now and then does not extend it.
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, live.header_timeout, live.socket_timeout,
                                                       lambda: live.count("timed_out")))

    def log_message(self, format, *args) -> None:  # noqa: A002 -- the base class's name
        pass  # no line per request on the Pi's console

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        live = self.server.live
        # The path as sent, compared exactly with the routes: nothing from it reaches the file system.
        path, _, raw_query = self.path.partition("?")
        query = parse_qs(raw_query, keep_blank_values=True)
        try:
            try:
                self._route(live, method, path, query)
            except HttpError as exc:
                self._send(exc.status, "text/plain; charset=utf-8", (exc.text + "\n").encode("utf-8"), exc.headers)
        except OSError as exc:  # the client went away, or stopped reading for SERVE_SOCKET_TIMEOUT_S
            if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
                live.count("timed_out")

    def _route(self, live: "LiveServer", method: str, path: str, query: dict[str, list[str]]) -> None:
        live.authorize(self.headers, query)
        self.server.authorized(self.connection)  # from now on its slot is not given to a newcomer
        self.connection.settimeout(live.socket_timeout)  # what the request's deadline left is not the writes' timeout
        if method == "GET" and path == "/":
            self._send(200, "text/html; charset=utf-8", live.page())
        elif method == "GET" and path == "/stream.mjpg":
            self._stream(live)
        elif method == "GET" and path == "/status":
            self._send(200, "application/json", live.status_json())
        else:
            handler = live.route(method, path)
            body = self._json_body() if method == "POST" else None
            self._send(200, "application/json", live.call(handler, Request(method, path, query, body, dict(self.headers.items()))))

    def _send(self, status: int, ctype: str, body: bytes, headers: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**_SECURITY_HEADERS, **(headers or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json_body(self) -> Any:
        """A POST route's JSON body: bounded in size, and only JSON (no cross-site form posts)."""
        if self.headers.get_content_type() != "application/json":
            raise HttpError(415, "send the body as Content-Type: application/json")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise HttpError(411, "a POST needs a Content-Length")
        if int(length) > config.SERVE_MAX_BODY:
            raise HttpError(413, f"body over {config.SERVE_MAX_BODY} bytes")
        raw = self.rfile.read(int(length)) if int(length) else b"null"
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "the body is not valid JSON") from None

    def _stream(self, live: "LiveServer") -> None:
        if not live.enter_viewer():
            raise HttpError(503, f"too many viewers ({live.max_clients}): close another viewer's page, then reload this one")
        try:
            # A capped kernel buffer: a viewer that stops reading pins this much, not megabytes.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, live.send_buffer)
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
            for k, v in _SECURITY_HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(b"--" + BOUNDARY + b"\r\n")
            seen = 0
            while not live.hub.closed:
                got = live.hub.wait_newer(seen, timeout=1.0)
                if got is None:
                    continue
                seen, jpeg = got
                # The boundary right after each part: browsers show a part once they see the next boundary.
                self.wfile.write(b"".join((b"Content-Type: image/jpeg\r\nContent-Length: ", str(len(jpeg)).encode(),
                                           b"\r\n\r\n", jpeg, b"\r\n--", BOUNDARY, b"\r\n")))
        finally:
            live.leave_viewer()


# -- the server ----------------------------------------------------------------------------------------------------


def _or(value, default):
    return default if value is None else value


class LiveServer:
    """The page, the MJPEG stream and the status JSON of one live run; binds in ``__init__``.

    The loop calls ``wants_frame`` / ``publish_frame`` / ``publish_status``, none of
    which waits for a viewer. Callers may ``add_route`` before ``start`` (a future
    `collect` adds its buttons this way); ``close`` (or leaving ``with``) stops it all.
    """

    def __init__(self, endpoint: Endpoint, token: Optional[str] = None, *, log: Log = log_stderr,
                 max_fps: Optional[float] = None, max_side: Optional[int] = None, quality: Optional[int] = None,
                 max_clients: Optional[int] = None, max_connections: Optional[int] = None,
                 socket_timeout: Optional[float] = None, send_buffer: Optional[int] = None,
                 header_timeout: Optional[float] = None):
        # Defaults read from config now, not at import: tests and tools may change them.
        self.max_clients = _or(max_clients, config.SERVE_MAX_CLIENTS)
        self.max_connections = _or(max_connections, config.SERVE_MAX_CONNECTIONS)
        self.socket_timeout = _or(socket_timeout, config.SERVE_SOCKET_TIMEOUT_S)
        self.header_timeout = _or(header_timeout, config.SERVE_HEADER_TIMEOUT_S)
        self.send_buffer = _or(send_buffer, config.SERVE_SEND_BUFFER)
        self.log = log
        family, address = _resolve(endpoint)
        self.loopback = is_loopback(address[0])
        if token is not None:
            check_token(token)
        # The network needs a token; loopback only when one was asked for.
        self.token = token if token is not None or self.loopback else secrets.token_urlsafe(config.SERVE_TOKEN_BYTES)
        self._httpd = self._bind(endpoint, family, address)
        self.host, self.port = self._httpd.server_address[:2]
        self.hub = FrameHub()
        self._encoder = FrameEncoder(self.hub, _or(max_fps, config.SERVE_MAX_FPS), _or(max_side, config.SERVE_MAX_SIDE),
                                     _or(quality, config.SERVE_JPEG_QUALITY))
        self._routes: dict[tuple[str, str], Handler] = {}
        self._status: dict = {"frame": None, "label": None, "smoothed_confidence": 0.0, "raw_label": None, "confidence": 0.0,
                              "inference_ms": 0.0, "fps": 0.0, "truth": None, "events": []}
        self._info: dict = {}
        self._viewers = 0
        self._counts = {"viewer_connections": 0, "refused": 0, "timed_out": 0, "evicted": 0}
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def _bind(self, endpoint: Endpoint, family: int, address: tuple) -> _HTTPServer:
        try:
            return _HTTPServer(family, address, self)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                why = f"port {endpoint.port} is in use (another edge-signs live? see 'ss -ltnp | grep :{endpoint.port}'); choose another port"
            elif exc.errno == errno.EACCES:
                why = "ports below 1024 need root; use one above, e.g. 8080"
            elif exc.errno == errno.EADDRNOTAVAIL:
                why = f"{endpoint.host} is not an address of this machine; use 0.0.0.0 (every network) or 127.0.0.1"
            else:
                why = exc.strerror or str(exc)
            raise EdgeSignsError(f"--serve {endpoint}: {why}") from None

    # -- set-up, before the loop

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``handler`` at exactly ``path`` (GET or POST); it gets a Request and returns JSON-able data."""
        method = method.upper()
        if method not in ("GET", "POST") or not re.fullmatch(r"(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+", path):
            raise ValueError(f"a route is GET or POST at a plain path, got {method} {path!r}")
        if (method, path) in self._routes or path in ("/", "/stream.mjpg", "/status"):
            raise ValueError(f"{method} {path} is already served")
        self._routes[(method, path)] = handler

    def set_info(self, **info: Any) -> None:
        """What the run is (model, source, labels): added to every /status and shown on the page."""
        self._info = dict(info)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="serve: accept", daemon=True)
        self._thread.start()
        self._announce()

    def urls(self) -> list[str]:
        """The page's address(es), with the token: a wildcard host is named by this machine's addresses."""
        query = f"?token={self.token}" if self.token else ""
        host = str(self.host)
        if host in ("0.0.0.0", "::"):
            hosts = [h for h in (_lan_address(), f"{socket.gethostname()}.local") if h]
        else:
            hosts = [host]
        return [f"http://{f'[{h}]' if ':' in h else h}:{self.port}/{query}" for h in hosts]

    def _announce(self) -> None:
        urls = self.urls()
        where = f"{self.host}:{self.port}"
        if self.loopback:
            self.log(f"serving {urls[0]} (this machine only; from another: ssh -L {self.port}:127.0.0.1:{self.port} USER@THIS-HOST, "
                     f"then open it there, or --serve 0.0.0.0:PORT)")
        else:
            self.log(f"serving on {where} for the network; every request needs the token: open {' or '.join(urls)}")

    # -- the loop's side: never waits

    def wants_frame(self) -> bool:
        """Whether a frame published now would be encoded (a viewer is watching and the rate allows)."""
        return self._viewers > 0 and self._encoder.due()

    def publish_frame(self, img: np.ndarray) -> bool:
        """Hand an annotated frame to the encoder if it will take it; False (dropped) otherwise."""
        return self._viewers > 0 and self._encoder.offer(img)

    def publish_status(self, status: dict) -> None:
        """The latest frame's prediction: a fresh dict each time (swapped whole, so readers see one frame's values)."""
        self._status = status

    # -- the handlers' side

    def authorize(self, headers, query: dict[str, list[str]]) -> None:
        if self.token is None:
            # No token (loopback only): the Host must be loopback too, against DNS rebinding.
            host = host_name(headers.get("Host") or "")
            if host != "localhost" and not is_loopback(host):
                raise HttpError(403, "this server answers only to localhost / 127.0.0.1 (Host header)")
            return
        given = ""
        auth = headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        elif query.get("token"):
            given = query["token"][-1]
        if not given:
            raise HttpError(401, "token required: open the URL edge-signs live printed (...?token=...) or send 'Authorization: Bearer TOKEN'",
                            {"WWW-Authenticate": 'Bearer realm="edge-signs"'})
        if not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
            raise HttpError(403, "wrong token")

    def route(self, method: str, path: str) -> Handler:
        handler = self._routes.get((method, path))
        if handler is not None:
            return handler
        allowed = [m for (m, p) in self._routes if p == path] + (["GET"] if path in ("/", "/stream.mjpg", "/status") else [])
        if allowed:
            raise HttpError(405, f"{path} takes {' or '.join(sorted(set(allowed)))}", {"Allow": ", ".join(sorted(set(allowed)))})
        raise HttpError(404, "not found: this server has /, /stream.mjpg and /status")

    def call(self, handler: Handler, request: Request) -> bytes:
        """A registered route's answer as strict JSON; its errors become HTTP errors, never a dead server."""
        try:
            return dumps(finite_or_none(handler(request))).encode("utf-8")
        except HttpError:
            raise
        except EdgeSignsError as exc:
            raise HttpError(400, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 -- a route's bug must not end the run; say it once here
            self.log(f"warning: --serve {request.method} {request.path} failed: {type(exc).__name__}: {exc}")
            raise HttpError(500, "internal error (see the edge-signs live log)") from None

    def page(self) -> bytes:
        about = " | ".join(str(self._info[k]) for k in ("model", "source") if self._info.get(k))
        return render_page(self.token, about)

    def status_json(self) -> bytes:
        status = {**self._status, **self._info, "viewers": self._viewers, "max_viewers": self.max_clients}
        return dumps(finite_or_none(status)).encode("utf-8")

    def enter_viewer(self) -> bool:
        with self._lock:
            if self._viewers >= self.max_clients:
                self._counts["refused"] += 1
                return False
            self._viewers += 1
            self._counts["viewer_connections"] += 1
            return True

    def leave_viewer(self) -> None:
        with self._lock:
            self._viewers -= 1

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    @property
    def viewers(self) -> int:
        return self._viewers

    def stats(self) -> dict:
        """For the run's summary: what was served."""
        with self._lock:
            return {"url": self.urls()[0].split("?")[0], "encoded": self._encoder.encoded, **self._counts}

    # -- the end

    def close(self) -> None:
        """Stop accepting, release the port, end every connection and thread. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.hub.close()  # viewers waiting for a frame return now
        if self._thread is not None:
            self._httpd.shutdown()  # serve_forever returns within its poll interval
        self._httpd.server_close()  # the listening socket: the port is free again
        self._httpd.drop_all(timeout=2.0)  # viewers blocked writing to a client that stopped reading
        self._encoder.close()

    def __enter__(self) -> "LiveServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
