"""Who may reach `live --serve`: the address it binds, the token, and the check on every request.

Safe by default: the server binds 127.0.0.1 unless a host is given. Any other host (the
network) needs a token in every request (``?token=`` or ``Authorization: Bearer``); 401
without one, 403 for a wrong one. Without a token (loopback only) the Host header must
name loopback too, so a web page in the Pi's own browser cannot reach the server through
DNS rebinding.

Standard library only: this runs on the Pi.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Mapping, Optional

from edge_signs import config
from edge_signs.edge.serve_http import HttpError
from edge_signs.errors import EdgeSignsError

_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")  # URL-safe: goes into ?token= unescaped


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


def resolve(endpoint: Endpoint) -> tuple[int, tuple]:
    """The socket family and address to bind; a one-line error for a host that is no address of ours."""
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise EdgeSignsError(f"--serve {endpoint}: unknown host {endpoint.host!r} ({exc.strerror}); "
                             f"use an address of this machine, 0.0.0.0 (every network) or 127.0.0.1 (this machine only)") from None
    family, _, _, _, address = infos[0]
    return family, address


def bind_error(endpoint: Endpoint, exc: OSError) -> EdgeSignsError:
    """Why binding ``endpoint`` failed, as one line that says what to do instead."""
    if exc.errno == errno.EADDRINUSE:
        why = f"port {endpoint.port} is in use (another edge-signs live? see 'ss -ltnp | grep :{endpoint.port}'); choose another port"
    elif exc.errno == errno.EACCES:
        why = "ports below 1024 need root; use one above, e.g. 8080"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = f"{endpoint.host} is not an address of this machine; use 0.0.0.0 (every network) or 127.0.0.1"
    else:
        why = exc.strerror or str(exc)
    return EdgeSignsError(f"--serve {endpoint}: {why}")


def lan_address() -> Optional[str]:
    """The address other machines most likely reach this one at (no packet is sent: a UDP connect only picks a route)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("10.254.254.254", 9))
        return s.getsockname()[0]
    return None


def check_access(token: Optional[str], headers: Mapping[str, str], query: dict[str, list[str]]) -> None:
    """Raise the HttpError a request without the right to an answer gets; return for one that has it."""
    if token is None:
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
    if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        raise HttpError(403, "wrong token")
