"""The one default logger: progress and warnings go to stderr, results to stdout.

Functions that report progress take ``log: Log = log_stderr``; tests and callers
pass their own (``quiet`` to silence it, a list's ``append`` to capture it).
"""

from __future__ import annotations

import sys
from typing import Callable

Log = Callable[[str], None]


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet(message: str) -> None:
    """A logger that drops everything."""
