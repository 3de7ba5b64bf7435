"""`live --serve`'s answers: the page, the MJPEG stream, /status and the routes a caller registers.

    GET /             the page (serve_page.py)
    GET /stream.mjpg  the annotated frames as MJPEG (multipart/x-mixed-replace)
    GET /status       the latest prediction, and the last events, as JSON
    GET|POST PATH     a route registered with ``Routes.add``: JSON in (POST), JSON out

Anything else is a 404: the path is compared exactly, no directory listing, and no file
is ever read from a request's path. POST routes take only ``application/json``, which
another site cannot send without a CORS preflight this server never grants.

A viewer that stops reading blocks only its own thread: its kernel send buffer is capped
by ``SERVE_SEND_BUFFER`` and ``SERVE_SOCKET_TIMEOUT_S`` drops it and frees its slot.
Standard library only: this runs on the Pi.
"""

from __future__ import annotations

import errno
import io
import json
import re
import socket
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Mapping, Optional, Protocol
from urllib.parse import parse_qs

from edge_signs import config
from edge_signs.artifacts import dumps, finite_or_none
from edge_signs.edge.serve_frames import FrameHub
from edge_signs.edge.serve_http import BoundedHTTPServer, DeadlineReader, HttpError, Request
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log

BOUNDARY = b"edge-signs-frame"
BUILT_IN = ("/", "/stream.mjpg", "/status")  # GET only

RouteHandler = Callable[[Request], Any]  # returns something JSON-able (200), or raises HttpError

SECURITY_HEADERS = {
    "Cache-Control": "no-store",  # live data, and a token in the URL: nothing for caches
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the token never leaves in a Referer header
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; connect-src 'self'; "
                               "script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
}


class Routes:
    """The routes registered beside the built-in GETs: exact paths, JSON answers, a route's bug never a dead server."""

    def __init__(self, log: Log):
        self._log = log
        self._handlers: dict[tuple[str, str], RouteHandler] = {}

    def add(self, method: str, path: str, handler: RouteHandler) -> None:
        method = method.upper()
        if method not in ("GET", "POST") or not re.fullmatch(r"(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+", path):
            raise ValueError(f"a route is GET or POST at a plain path, got {method} {path!r}")
        if (method, path) in self._handlers or path in BUILT_IN:
            raise ValueError(f"{method} {path} is already served")
        self._handlers[(method, path)] = handler

    def find(self, method: str, path: str) -> RouteHandler:
        """The handler for exactly this method and path; else a 405 naming the methods the path takes, or a 404."""
        handler = self._handlers.get((method, path))
        if handler is not None:
            return handler
        allowed = [m for (m, p) in self._handlers if p == path] + (["GET"] if path in BUILT_IN else [])
        if allowed:
            raise HttpError(405, f"{path} takes {' or '.join(sorted(set(allowed)))}", {"Allow": ", ".join(sorted(set(allowed)))})
        raise HttpError(404, "not found: this server has /, /stream.mjpg and /status")

    def call(self, handler: RouteHandler, request: Request) -> bytes:
        """A route's answer as strict JSON; its errors become HTTP errors."""
        try:
            return dumps(finite_or_none(handler(request))).encode("utf-8")
        except HttpError:
            raise
        except EdgeSignsError as exc:
            raise HttpError(400, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 -- a route's bug must not end the run; say it once here
            self._log(f"warning: --serve {request.method} {request.path} failed: {type(exc).__name__}: {exc}")
            raise HttpError(500, "internal error (see the edge-signs live log)") from None


class Site(Protocol):
    """What the handler asks of the live server (serve.LiveServer)."""

    hub: FrameHub
    routes: Routes
    max_clients: int
    send_buffer: int
    socket_timeout: float
    header_timeout: float

    def authorize(self, headers: Mapping[str, str], query: dict[str, list[str]]) -> None: ...
    def page(self) -> bytes: ...
    def status_json(self) -> bytes: ...
    def enter_viewer(self) -> bool: ...
    def leave_viewer(self) -> None: ...
    def count(self, name: str) -> None: ...


class LiveRequestHandler(BaseHTTPRequestHandler):
    server: BoundedHTTPServer
    server_version = "edge-signs"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive connections to hold slots

    def setup(self) -> None:
        site: Site = self.server.site
        self.timeout = site.socket_timeout  # every read and write: a silent client is dropped
        super().setup()
        # Reads are due by one deadline for the whole request: a byte now and then does not extend it.
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, site.header_timeout, site.socket_timeout,
                                                      lambda: site.count("timed_out")))

    def log_message(self, format, *args) -> None:  # noqa: A002 -- the base class's name
        pass  # no line per request on the Pi's console

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        site: Site = self.server.site
        # The path as sent, compared exactly with the routes: nothing from it reaches the file system.
        path, _, raw_query = self.path.partition("?")
        query = parse_qs(raw_query, keep_blank_values=True)
        try:
            try:
                self._route(site, method, path, query)
            except HttpError as exc:
                self._send(exc.status, "text/plain; charset=utf-8", (exc.text + "\n").encode("utf-8"), exc.headers)
        except OSError as exc:  # the client went away, or stopped reading for SERVE_SOCKET_TIMEOUT_S
            if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
                site.count("timed_out")

    def _route(self, site: Site, method: str, path: str, query: dict[str, list[str]]) -> None:
        site.authorize(self.headers, query)
        self.server.authorized(self.connection)
        self.connection.settimeout(site.socket_timeout)  # what the request's deadline left is not the writes' timeout
        if method == "GET" and path == "/":
            self._send(200, "text/html; charset=utf-8", site.page())
        elif method == "GET" and path == "/stream.mjpg":
            self._stream(site)
        elif method == "GET" and path == "/status":
            self._send(200, "application/json", site.status_json())
        else:
            handler = site.routes.find(method, path)
            body = self._json_body() if method == "POST" else None
            self._send(200, "application/json", site.routes.call(handler, Request(method, path, query, body, dict(self.headers.items()))))

    def _send(self, status: int, ctype: str, body: bytes, headers: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in {**SECURITY_HEADERS, **(headers or {})}.items():
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

    def _stream(self, site: Site) -> None:
        if not site.enter_viewer():
            raise HttpError(503, f"too many viewers ({site.max_clients}): close another viewer's page, then reload this one")
        try:
            # A capped kernel buffer: a viewer that stops reading pins this much, not megabytes.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, site.send_buffer)
            self.send_response(200)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
            for k, v in SECURITY_HEADERS.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(b"--" + BOUNDARY + b"\r\n")
            seen = 0
            while not site.hub.closed:
                got = site.hub.wait_newer(seen, timeout=1.0)
                if got is None:
                    continue
                seen, jpeg = got
                # The boundary right after each part: browsers show a part once they see the next boundary.
                self.wfile.write(b"".join((b"Content-Type: image/jpeg\r\nContent-Length: ", str(len(jpeg)).encode(),
                                           b"\r\n\r\n", jpeg, b"\r\n--", BOUNDARY, b"\r\n")))
        finally:
            site.leave_viewer()
