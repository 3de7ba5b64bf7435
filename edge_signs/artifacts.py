"""Writing results so that nothing is lost and nothing is half-written.

- ``atomic_path``: a temporary file beside the target, moved into place only when
  complete; a reader sees the old file or the new one, never half of one.
  Temporary files carry the writer's PID (``.NAME.tmp-PID-XXXX``), so a later run
  removes those a killed process left (``remove_stale_temps``).
- ``write_json``: strict JSON only (no NaN or Infinity, which most parsers reject).
- ``folder_lock``: one writer per output folder; the lock dies with its process.
- ``check_output_file`` / ``check_output_dir``: an output path is checked before the
  work starts (writable, the right kind, not an input of the same run).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import glob
import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from edge_signs.errors import EdgeSignsError

LOCK_NAME = ".edge-signs.lock"
_TEMP_INFIX = ".tmp-"
_STALE = re.compile(r"\.tmp-(\d+)-")


def temp_prefix(path: Path) -> str:
    """The name prefix of this process's temporary files for ``path``."""
    return f".{path.name}{_TEMP_INFIX}{os.getpid()}-"


def make_temp(path: str | os.PathLike, suffix: str | None = None) -> Path:
    """An empty temporary file beside ``path``, named so that ``remove_stale_temps`` can find it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=suffix if suffix is not None else path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def publish(tmp: Path, path: Path) -> None:
    """Move a finished temporary file into place, with the permissions a plain open() would give."""
    # mkstemp makes the file private (0600); results are for sharing.
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files for ``path`` that a killed process left behind."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.glob(f".{glob.escape(path.name)}{_TEMP_INFIX}*"):
        match = _STALE.search(candidate.name[len(path.name) + 1:])
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                candidate.unlink()
                removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place on success.

    ``suffix`` keeps writers that insist on an extension (Keras, OpenCV) happy;
    by default the target's own suffix is used.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp_path = make_temp(path, suffix)
    try:
        yield tmp_path
        publish(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def dumps(obj: Any, **kwargs) -> str:
    """Strict JSON: a NaN or infinity is a bug upstream, never written as a bare token."""
    try:
        return json.dumps(obj, allow_nan=False, **kwargs)
    except ValueError as exc:
        raise EdgeSignsError(f"refusing to write non-finite numbers (NaN or infinity) as JSON ({exc})") from None


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN/infinite float replaced by None (JSON null): for reports where it means 'not measured'."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | os.PathLike) -> str:
    """The file's SHA-256; a file not changed since (same size and mtime) is not read again in this process."""
    st = os.stat(path)
    return _sha256(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: the cache key, a rewritten file misses
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- one writer per folder ---------------------------------------------------------------------


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold ``folder``'s lock while writing into it; a second holder gets a one-line error.

    An advisory ``flock`` on ``folder/.edge-signs.lock``: the kernel drops it when the
    holding process ends, however it ends, so a killed run never blocks the next one.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise EdgeSignsError(f"{folder}: in use by {holder}; wait for it to finish or choose another output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"edge-signs {what} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- outputs checked before the work ---------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def check_output_dir(folder: str | os.PathLike, option: str) -> Path:
    """A folder results can be written into (created later if missing), or a one-line error."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise EdgeSignsError(f"{option} {folder}: is a file, expected a folder")
    base = _nearest_existing(folder)
    if not base.is_dir() or not _can_create_in(base):
        raise EdgeSignsError(f"{option} {folder}: not writable ({base} does not let this user create files)")
    return folder


def _can_create_in(folder: Path) -> bool:
    """Try it: permission bits do not tell root, read-only mounts or full disks apart."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".edge-signs-probe-"):
            return True
    except OSError:
        return False


def check_output_file(path: str | os.PathLike, option: str, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """A file path results can be written to, that is not one of this run's ``inputs``."""
    path = Path(path)
    if path.is_dir():
        raise EdgeSignsError(f"{option} {path}: is a folder, expected a file name")
    resolved = path.resolve()
    for item in inputs:
        if item is not None and Path(item).resolve() == resolved:
            raise EdgeSignsError(f"{option} {path}: is an input of this run ({item}); choose another file")
    check_output_dir(path.parent, option)
    return path


class PendingFile:
    """A file written over a whole run (a recording, JSON lines) and published only at its end.

    The content goes to a temporary file beside ``path``; ``close(keep=True)`` moves it
    into place, ``close(keep=False)`` (an error) removes it, so an existing file is only
    ever replaced by a complete new one. A killed process leaves a temporary file that
    the next writer of ``path`` removes.
    """

    def __init__(self, path: str | os.PathLike, suffix: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(self.path)
        self.tmp = make_temp(self.path, suffix)

    def close(self, keep: bool) -> None:
        if keep and self.tmp.exists():
            publish(self.tmp, self.path)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.tmp.unlink()
