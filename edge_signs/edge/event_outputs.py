"""Two event outputs: ``--events FILE`` (JSON lines) and ``--exec 'COMMAND'`` (a command per held sign).

Both are ``events.EventOutput``s, fed by the loop's ``EventHub``. Neither makes the
loop wait: a JSON line is one buffered write, and commands run in a worker thread
behind a bounded queue.
"""

from __future__ import annotations

import collections
import os
import signal
import stat
import subprocess
import threading
from pathlib import Path
from typing import Iterable, Optional

from edge_signs import config
from edge_signs.artifacts import PendingFile, check_output_file, dumps, finite_or_none
from edge_signs.edge.event_types import HELD, EventOutput, SignEvent
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr


def _is_stream(path: Path) -> bool:
    """A FIFO, a terminal or /dev/stdout: written as it comes, not published at the end."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def check_events_path(path: Path, inputs: Iterable = ()) -> None:
    if _is_stream(path):
        if not os.access(path, os.W_OK):
            raise EdgeSignsError(f"--events {path}: not writable by this user")
        return
    check_output_file(path, "--events", inputs)


class JsonLinesOutput(EventOutput):
    """One JSON object per event, a line each, flushed as it is written.

    A regular file is written as live's ``--json`` is: into a temporary file beside
    it (``tail -f`` that while the run goes on), which replaces FILE only when the run
    ends well, so a failed run never truncates an older file. A FIFO or /dev/stdout
    is written directly, without waiting: another program reads the events as they
    happen. A line that finds the pipe full (a reader that stopped reading, or none
    yet and 64 KB waiting) is dropped and counted rather than stalling the loop; a
    line is far below PIPE_BUF, so the kernel writes it whole or not at all.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.name = f"--events {self.path}"
        self.written = self.dropped = 0
        self._pending: Optional[PendingFile] = None
        self._file = None
        self._fd: Optional[int] = None
        if _is_stream(self.path):
            # A FIFO opened for reading too never waits for a reader to appear (Linux); nothing here reads it.
            fifo = stat.S_ISFIFO(os.stat(self.path).st_mode)
            self._fd = os.open(self.path, (os.O_RDWR if fifo else os.O_WRONLY) | os.O_NONBLOCK)
        else:
            self._pending = PendingFile(self.path)
            self._file = open(self._pending.tmp, "w", buffering=1, encoding="utf-8")

    def on_event(self, event: SignEvent) -> None:
        line = dumps(finite_or_none(event.as_dict())) + "\n"
        if self._file is not None:
            self._file.write(line)
        else:
            try:
                os.write(self._fd, line.encode("utf-8"))
            except BlockingIOError:
                self.dropped += 1
                return
        self.written += 1

    def close(self, keep: bool = True) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._file is None or self._file.closed:
            return
        try:
            self._file.close()
        finally:
            self._pending.close(keep=keep)

    def stats(self) -> dict:
        return {"lines": self.written, "dropped": self.dropped}

    def lines(self) -> list[str]:
        dropped = f"; {self.dropped} dropped: the reader did not keep up" if self.dropped else ""
        return [f"wrote {self.path} ({self.written} event lines{dropped})"]


def _describe(command: str) -> str:
    return repr(command if len(command) <= 60 else command[:57] + "...")


class ExecOutput(EventOutput):
    """Runs ``command`` (with ``sh -c``) once per held sign, in a worker thread.

    The command finds the event in its environment: EDGE_SIGNS_SIGN, EDGE_SIGNS_CONFIDENCE,
    EDGE_SIGNS_START, EDGE_SIGNS_HELD_S, EDGE_SIGNS_ID, EDGE_SIGNS_FRAME and the whole event
    as JSON in EDGE_SIGNS_EVENT_JSON; its output goes to stderr (stdout is the summary's).
    Held signs wait in a queue of ``queue_size``; a full queue drops the oldest (counted).
    A command still running after ``timeout`` is killed with its process group (a shell
    pipeline's children too) and named; one that exits non-zero is named. The loop never waits.
    """

    def __init__(self, command: str, *, timeout: Optional[float] = None, queue_size: Optional[int] = None, log: Log = log_stderr):
        # Defaults read from config now, not at import: tests and tools may change them.
        self.timeout = config.EXEC_TIMEOUT_S if timeout is None else timeout
        queue_size = config.EXEC_QUEUE if queue_size is None else queue_size
        self.command, self.log = command, log
        self.name = f"--exec {_describe(command)}"
        self.ran = self.failed = self.timed_out = self.dropped = 0
        self._queue: collections.deque[SignEvent] = collections.deque(maxlen=queue_size)
        self._cond = threading.Condition()
        self._closing = False
        self._abandoned = False  # close() gave up waiting: the command running now is killed
        self._proc: Optional[subprocess.Popen] = None
        self._thread = threading.Thread(target=self._run, name="--exec worker", daemon=True)
        self._thread.start()

    def on_event(self, event: SignEvent) -> None:
        if event.event != HELD:
            return
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1  # the deque drops its oldest on append
            self._queue.append(event)
            self._cond.notify()

    def environment(self, event: SignEvent) -> dict[str, str]:
        return {**os.environ, "EDGE_SIGNS_SIGN": event.sign, "EDGE_SIGNS_CONFIDENCE": f"{event.confidence:.4f}",
                "EDGE_SIGNS_START": f"{event.start:.3f}", "EDGE_SIGNS_HELD_S": f"{event.held_s:.3f}",
                "EDGE_SIGNS_ID": str(event.id), "EDGE_SIGNS_FRAME": str(event.frame),
                "EDGE_SIGNS_EVENT_JSON": dumps(finite_or_none(event.as_dict()))}

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                event = self._queue.popleft()
            self._execute(event)

    def _execute(self, event: SignEvent) -> None:
        what = f"{self.name} for sign {event.sign}"
        try:
            proc = subprocess.Popen(["/bin/sh", "-c", self.command], env=self.environment(event), stdin=subprocess.DEVNULL,
                                    stdout=2, start_new_session=True)  # its own group: a timeout kills all of it
        except OSError as exc:
            self.failed += 1
            self.log(f"warning: {what} could not start ({exc.strerror or exc})")
            return
        self._proc = proc
        try:
            code = proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._kill(proc)
            self.timed_out += 1
            self.log(f"warning: {what} still ran after {self.timeout:g} s: killed")
            return
        finally:
            self._proc = None
        if self._abandoned:
            self.timed_out += 1
            self.log(f"warning: {what} still ran when the run ended: killed")
            return
        self.ran += 1
        if code != 0:
            self.failed += 1
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            self.log(f"warning: {what} failed ({how})")

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
        proc.wait()

    def close(self, keep: bool = True) -> None:
        """Run what is queued, each within its timeout; commands past that are killed, the rest not run (counted)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=self.timeout + 1.0)
        if self._thread.is_alive():
            with self._cond:
                self.dropped += len(self._queue)
                self._queue.clear()
            self._abandoned = True
            proc = self._proc
            if proc is not None:
                self._kill(proc)
            self._thread.join(timeout=2.0)

    def stats(self) -> dict:
        return {"ran": self.ran, "failed": self.failed, "timed_out": self.timed_out, "dropped": self.dropped}

    def lines(self) -> list[str]:
        return [f"{self.name}: ran {self.ran}, failed {self.failed}, killed after {self.timeout:g} s {self.timed_out}, "
                f"dropped {self.dropped} (queue of {self._queue.maxlen} full)"]
