"""Fetching SIGNS: the two course files from a pinned mirror into the Keras cache, verified by hash.

Done once, the way ``keras.datasets`` do; ``data.resolve_data`` calls it when no folder has the data.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from pathlib import Path
from typing import Mapping

from edge_signs import config
from edge_signs.artifacts import atomic_path
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr


def git_blob_sha1(data: bytes) -> str:
    """The hash git gives a file's content: verifiable without git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fetch_signs(
    cache: str | os.PathLike | None = None,
    *,
    base_url: str = config.MIRROR_BASE_URL,
    blob_sha1: Mapping[str, str] = config.MIRROR_BLOB_SHA1,
    log: Log = log_stderr,
    timeout: float = 60.0,
) -> Path:
    """Download each file of ``blob_sha1`` from ``base_url`` into ``cache`` once, verified by hash."""
    cache = Path(cache) if cache is not None else config.keras_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for name, expected in blob_sha1.items():
        target = cache / name
        if target.is_file() and git_blob_sha1(target.read_bytes()) == expected:
            log(f"{target}: already there, hash verified")
            continue
        url = base_url + name
        log(f"fetching {url}")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                content = response.read()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise EdgeSignsError(f"{url}: download failed ({getattr(exc, 'reason', exc)})") from None
        actual = git_blob_sha1(content)
        if actual != expected:
            raise EdgeSignsError(f"{url}: hash mismatch (git blob sha1 {actual}, expected {expected}); file not saved")
        with atomic_path(target) as tmp:
            tmp.write_bytes(content)
        log(f"{target}: saved ({len(content) / 1e6:.1f} MB, hash verified)")
    return cache
