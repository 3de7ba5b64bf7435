"""The HTTP core of `live --serve`: the standard library's threading server, bounded.

Why ``ThreadingHTTPServer`` and not a server package: the ``[pi]`` install stays numpy,
OpenCV and LiteRT; the viewers are few (``SERVE_MAX_CLIENTS``), so a thread per connection
costs nothing that matters; and what a package would add is a few explicit lines here:

- a cap on open connections (``process_request``); when every slot is taken, the oldest
  connection that has not been authorized yet gives its slot to the new one, so a
  stranger's slow connections cannot keep the owner out;
- a deadline for the whole request (``DeadlineReader``, ``SERVE_HEADER_TIMEOUT_S``): a
  client trickling one byte at a time does not extend it;
- ``drop_all``, which shuts every open connection and joins the threads, for a clean stop.

An asyncio server would still need a thread beside the synchronous loop.
Standard library only: this runs on the Pi.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional


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


def plain(status: int, text: str, headers: Optional[dict[str, str]] = None) -> bytes:
    """A whole HTTP/1.0 text/plain response, for the accept thread's refusals."""
    body = (text + "\n").encode("utf-8")
    lines = [f"HTTP/1.0 {status} {HTTPStatus(status).phrase}", "Content-Type: text/plain; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class DeadlineReader(io.RawIOBase):
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


class BoundedHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on open connections and a list of them, for a clean stop.

    ``site`` is whatever the handler class serves (handlers reach it as ``self.server.site``);
    ``count`` is told each connection ``"evicted"`` for a newer one or ``"refused"`` (full).
    """

    daemon_threads = True  # a stuck client thread never keeps the process alive
    block_on_close = False  # close() joins the threads itself, with a timeout
    allow_reuse_address = True  # rebinding after a restart is not blocked by old TIME_WAIT connections

    def __init__(self, family: int, address: tuple, handler: type[BaseHTTPRequestHandler], site: Any, *,
                 max_connections: int, count: Callable[[str], None]):
        self.address_family = family
        self.site = site
        self._max_connections, self._count = max_connections, count
        self._open: dict[socket.socket, _Connection] = {}
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind() looks up the host's FQDN: seconds of DNS timeout on a Pi with no network.
        if self.address_family == socket.AF_INET6:
            with contextlib.suppress(OSError):  # '::' serves IPv4 too, where the system allows it
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super(ThreadingHTTPServer, self).server_bind()  # TCPServer's: bind only
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request, client_address) -> None:
        with self._open_lock:
            evicted = self._evict_one() if len(self._open) >= self._max_connections else None
            full = len(self._open) >= self._max_connections
            if not full:
                thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                          name="serve: client", daemon=True)
                self._open[request] = _Connection(thread, time.monotonic())
        if evicted is not None:
            self._count("evicted")
            with contextlib.suppress(OSError):
                evicted.shutdown(socket.SHUT_RDWR)  # its thread's read returns at once and it ends
        if full:  # answered on the accept thread, which must not wait: a short timeout, then gone
            self._count("refused")
            with contextlib.suppress(OSError):
                request.settimeout(0.5)
                request.sendall(plain(503, "too many connections to edge-signs live; try again shortly"))
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
        """From now on this connection's slot is not given to a newcomer."""
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
