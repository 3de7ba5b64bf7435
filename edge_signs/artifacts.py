"""Writing results so that nothing is lost and nothing is half-written.

- ``atomic_path``: a temporary file beside the target, moved into place only when
  complete; a reader sees the old file or the new one, never half of one.
  Temporary files carry the writer's PID (``.NAME.tmp-PID-XXXX``), so a later run
  removes those a killed process left (``remove_stale_temps``). A symlink's target is
  written, never the link; a FIFO or a device (/dev/null) is written directly, never
  replaced by a regular file.
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
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

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


def _held_by_a_writer(path: Path) -> bool:
    """Whether a live writer holds ``path`` (PendingFile locks its temporary file): the kernel's word, not a PID's."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _recovered_name(path: Path, pid: int) -> Path:
    for k in range(1000):
        name = path.with_name(f"{path.stem}.recovered-{pid}{f'-{k}' if k else ''}{path.suffix}")
        if not name.exists():
            return name
    raise EdgeSignsError(f"{path}: too many recovered files beside it; move them away")


def clear_stale_temps(path: str | os.PathLike, is_complete: Optional[Callable[[Path], bool]] = None) -> tuple[list[Path], list[Path]]:
    """(removed, recovered): the temporary files for ``path`` that dead writers left.

    A temporary file is removed only when its writer is surely dead -- the PID in its name
    is gone and nobody holds its lock -- and it is incomplete: one that ``is_complete``
    accepts (a playable recording a run could not publish) is someone's only copy, and is
    moved to a visible name beside ``path`` instead (``NAME.recovered-PID.EXT``).
    """
    path = Path(path)
    removed: list[Path] = []
    recovered: list[Path] = []
    if not path.parent.is_dir():
        return removed, recovered
    for candidate in path.parent.glob(f".{glob.escape(path.name)}{_TEMP_INFIX}*"):
        match = _STALE.search(candidate.name[len(path.name) + 1:])
        if not match or int(match.group(1)) == os.getpid() or _pid_alive(int(match.group(1))) or _held_by_a_writer(candidate):
            continue
        with contextlib.suppress(OSError):
            if is_complete is not None and is_complete(candidate):
                target = _recovered_name(path, int(match.group(1)))
                os.rename(candidate, target)
                recovered.append(target)
            else:
                candidate.unlink()
                removed.append(candidate)
    return removed, recovered


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files for ``path`` that killed processes left behind (see ``clear_stale_temps``)."""
    return clear_stale_temps(path)[0]


def resolve_target(path: str | os.PathLike) -> Path:
    """Where writing ``path`` lands: a symlink's target (replacing the link itself would cut it), else ``path``."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def special_kind(path: str | os.PathLike) -> Optional[str]:
    """'a FIFO', 'a character device', ... when ``path`` (links followed) exists and is neither a file nor a folder."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place on success.

    ``suffix`` keeps writers that insist on an extension (Keras, OpenCV) happy;
    by default the target's own suffix is used.
    """
    if special_kind(path) is not None:  # /dev/null, a FIFO: written directly, never replaced by a regular file
        yield Path(path)
        return
    path = resolve_target(path)
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


def check_output_file(path: str | os.PathLike, option: str, inputs: Iterable[str | os.PathLike | None] = (),
                      *, streams: bool = True) -> Path:
    """A file path results can be written to, that is not one of this run's ``inputs``.

    A FIFO or a device (/dev/null, /dev/stdout) is written directly where ``streams``; an
    output that must be a regular file (a video, rewritten at its end) refuses one.
    """
    path = Path(path)
    kind = special_kind(path)
    if kind is not None:
        if not streams:
            raise EdgeSignsError(f"{option} {path}: is {kind}; this output needs a regular file (it is rewritten when it ends)")
        return path
    if path.is_dir():
        raise EdgeSignsError(f"{option} {path}: is a folder, expected a file name")
    resolved = path.resolve()
    for item in inputs:
        if item is not None and Path(item).resolve() == resolved:
            raise EdgeSignsError(f"{option} {path}: is an input of this run ({item}); choose another file")
    check_output_dir(resolve_target(path).parent, option)
    return path


def check_outside_inputs(folder: str | os.PathLike, option: str, inputs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """An output folder that is not an input folder of the same run, nor inside one (its results would land among the input)."""
    out = Path(folder).resolve()
    for name, item in inputs:
        if not isinstance(item, (str, os.PathLike)):  # None, or data already loaded
            continue
        where = Path(item).resolve()
        if out == where or where in out.parents:
            raise EdgeSignsError(f"{option} {folder}: is inside {name} {item}, an input of this run (its results would land among "
                                 f"the input's files); choose an {option} outside it")


class PendingFile:
    """A file written over a whole run (a recording, JSON lines) and published only at its end.

    The content goes to a temporary file beside ``path`` (a symlink's target), locked while
    this process writes it; ``close(keep=True)`` moves it into place, ``close(keep=False)``
    (an error) removes it, so an existing file is only ever replaced by a complete new one.
    A killed process leaves a temporary file that the next writer of ``path`` removes, or
    recovers when ``is_complete`` says it is complete (``clear_stale_temps``).
    """

    def __init__(self, path: str | os.PathLike, suffix: str | None = None, *,
                 is_complete: Optional[Callable[[Path], bool]] = None):
        self.path = resolve_target(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _, self.recovered = clear_stale_temps(self.path, is_complete)
        self.tmp = make_temp(self.path, suffix)
        self._lock = os.open(self.tmp, os.O_RDONLY)
        fcntl.flock(self._lock, fcntl.LOCK_EX)  # the proof that its writer lives (a PID can be reused, or another namespace's)

    def close(self, keep: bool) -> None:
        try:
            if keep and self.tmp.exists():
                self._publish()
            else:
                with contextlib.suppress(FileNotFoundError):
                    self.tmp.unlink()
        finally:
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None

    def _publish(self) -> None:
        try:
            publish(self.tmp, self.path)
        except OSError as exc:  # complete, but its place is taken: kept where one can see it, never deleted
            why = exc.strerror or str(exc)
            try:
                aside = _recovered_name(self.path, os.getpid())
                os.rename(self.tmp, aside)
            except (OSError, EdgeSignsError):
                raise EdgeSignsError(f"cannot replace it ({why}); the complete file is left as {self.tmp}") from None
            raise EdgeSignsError(f"cannot replace it ({why}); the complete file is kept as {aside}") from None
