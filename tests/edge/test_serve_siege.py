"""--serve under siege: clients that trickle their request head cannot hold the server's connection slots.

A header deadline that one byte at a time does not extend (the whole request head must
arrive within ``SERVE_HEADER_TIMEOUT_S``), and a connection that has not shown the token
yet is the first to give its slot up to a new one. Real sockets on loopback, against a
LiveServer with a token (as with --serve 0.0.0.0:PORT); every loop is bounded in count and
time and stops by itself.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time

import pytest

from edge_signs import config
from edge_signs.edge.serve import Endpoint, LiveServer
from edge_signs.log import quiet

TOKEN = "siege-token-0123456789"
HEADER_TIMEOUT_S = 1.5  # short, so the test takes seconds; the socket timeout stays far longer
SOCKET_TIMEOUT_S = 30.0


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(config, "SERVE_HEADER_TIMEOUT_S", HEADER_TIMEOUT_S, raising=False)
    live = LiveServer(Endpoint("127.0.0.1", 0), TOKEN, log=quiet, socket_timeout=SOCKET_TIMEOUT_S)
    live.start()
    try:
        yield live
    finally:
        live.close()


def _trickle(port: int, stop: threading.Event, seconds: float, pause: float = 0.2) -> tuple[float, bool]:
    """Send a request head one byte per ``pause``, as long as the server listens and at most ``seconds``:
    (seconds the connection stayed open, whether the server ended it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(True)
    t0 = time.monotonic()
    try:
        sock.sendall(b"GET /status HTTP/1.0\r\n")
        for _ in range(int(seconds / pause)):
            if stop.is_set():
                break
            sock.sendall(b"X")
            time.sleep(pause)
            sock.settimeout(0.001)
            try:
                if sock.recv(1024) == b"":
                    return time.monotonic() - t0, True
            except (BlockingIOError, TimeoutError, socket.timeout):
                pass
            finally:
                sock.settimeout(5)
        return time.monotonic() - t0, False
    except OSError:  # reset or broken pipe: the server ended it
        return time.monotonic() - t0, True
    finally:
        sock.close()


def _status(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/status", headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return 0
    finally:
        conn.close()


def test_a_request_head_sent_one_byte_at_a_time_is_cut_at_the_header_deadline(server):
    """Each byte comes well within the socket timeout, yet the head as a whole is late: the connection is ended at the
    header deadline, not kept for as long as bytes keep coming."""
    held, ended = _trickle(server.port, threading.Event(), seconds=4 * HEADER_TIMEOUT_S + 2)
    assert ended, f"still open after {held:.1f} s of one byte per 0.2 s"
    assert held < HEADER_TIMEOUT_S + 2.0, held
    assert server.stats()["timed_out"] >= 1


def test_the_owners_status_answers_while_40_slow_clients_trickle_headers(server):
    """Forty clients without a token, each trickling its head and reconnecting when cut, more than the server has slots:
    the owner's /status with the right token answers every one of 15 polls."""
    assert 40 > config.SERVE_MAX_CONNECTIONS
    stop = threading.Event()
    deadline = time.monotonic() + 60  # the siege ends by itself whatever happens

    def siege():
        while not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                _trickle(server.port, stop, seconds=30)

    threads = [threading.Thread(target=siege, daemon=True, name=f"siege {k}") for k in range(40)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)  # every slot taken by now
        answers = []
        for _ in range(15):
            answers.append(_status(server.port))
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert answers == [200] * 15, answers
    assert not any(t.is_alive() for t in threads)
