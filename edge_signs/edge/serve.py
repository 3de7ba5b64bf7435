"""See the camera from a browser: `edge-signs live MODEL --serve [HOST:]PORT`.

An HTTP server beside the live loop, for Pis that run headless over SSH: a page with the
annotated video and the prediction, an MJPEG stream and a status JSON. The loop never
waits for a viewer: it offers frames to an encoder thread that makes one JPEG for every
viewer, and swaps in a fresh status dict per frame.

    serve.py           LiveServer: binds, starts, takes the loop's frames and status, stops it all
    serve_access.py    the address (--serve), the token (--token) and the check on every request
    serve_http.py      the standard library's threading server, bounded (connections, deadlines, clean stop)
    serve_handlers.py  the page, /stream.mjpg, /status and registered routes (``LiveServer.add_route``)
    serve_frames.py    one shared JPEG: the encoder thread and the hub viewers wait on
    serve_page.py      the page's HTML and script (no external assets)

Every name other modules use is importable from here.
numpy, OpenCV and the standard library only: this runs on the Pi (never TensorFlow).
"""

from __future__ import annotations

import secrets
import socket
import threading
from typing import Any, Mapping, Optional

import numpy as np

from edge_signs import config
from edge_signs.artifacts import dumps, finite_or_none
from edge_signs.edge.serve_access import Endpoint, bind_error, check_access, check_token, host_name, is_loopback, lan_address, parse_serve, resolve
from edge_signs.edge.serve_frames import FrameEncoder, FrameHub
from edge_signs.edge.serve_handlers import BOUNDARY, LiveRequestHandler, RouteHandler, Routes
from edge_signs.edge.serve_http import BoundedHTTPServer, HttpError, Request
from edge_signs.edge.serve_page import PAGE, render_page
from edge_signs.log import Log, log_stderr

Handler = RouteHandler

__all__ = ["BOUNDARY", "PAGE", "Endpoint", "FrameEncoder", "FrameHub", "Handler", "HttpError", "LiveServer", "Request",
           "check_token", "host_name", "is_loopback", "parse_serve", "render_page"]


def _or(value, default):
    return default if value is None else value


class LiveServer:
    """The page, the MJPEG stream and the status JSON of one live run; binds in ``__init__``.

    The loop calls ``wants_frame`` / ``publish_frame`` / ``publish_status``, none of
    which waits for a viewer. Callers may ``add_route`` before ``start`` (JSON routes
    for buttons on the page); ``close`` (or leaving ``with``) stops it all.
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
        family, address = resolve(endpoint)
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
        self.routes = Routes(log)
        self._status: dict = {"frame": None, "label": None, "smoothed_confidence": 0.0, "raw_label": None, "confidence": 0.0,
                              "inference_ms": 0.0, "fps": 0.0, "truth": None, "events": []}
        self._info: dict = {}
        self._viewers = 0
        self._counts = {"viewer_connections": 0, "refused": 0, "timed_out": 0, "evicted": 0}
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    def _bind(self, endpoint: Endpoint, family: int, address: tuple) -> BoundedHTTPServer:
        try:
            return BoundedHTTPServer(family, address, LiveRequestHandler, self, max_connections=self.max_connections, count=self.count)
        except OSError as exc:
            raise bind_error(endpoint, exc) from None

    # -- set-up, before the loop

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``handler`` at exactly ``path`` (GET or POST); it gets a Request and returns JSON-able data."""
        self.routes.add(method, path, handler)

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
            hosts = [h for h in (lan_address(), f"{socket.gethostname()}.local") if h]
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

    def authorize(self, headers: Mapping[str, str], query: dict[str, list[str]]) -> None:
        check_access(self.token, headers, query)

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
