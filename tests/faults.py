"""Helpers for the issue-9 tests (tests/*/test_artifacts.py, test_data_rules.py, test_outputs.py,
test_faults.py): what "a one-line error", "strict JSON" and "files intact" mean, checked the same
way everywhere. No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

# Nobody, root included, can create files under /proc (chmod does not stop root; the tests run as root in CI).
UNWRITABLE = Path("/proc/edge-signs-test")


def strict_json(text: str):
    """json.loads that fails on NaN, Infinity and -Infinity instead of accepting them."""
    def refuse(token):
        raise AssertionError(f"non-strict JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def interrupted_after(make_checkpoint, epoch_index: int):
    """A make_checkpoint_callback whose callback raises KeyboardInterrupt (what Ctrl-C raises) once epoch
    ``epoch_index`` (0-based) has ended and been checkpointed."""
    def make(*args):
        callback = make_checkpoint(*args)
        epoch_end = callback.on_epoch_end

        def on_epoch_end(epoch, logs=None):
            epoch_end(epoch, logs)
            if epoch == epoch_index:
                raise KeyboardInterrupt

        callback.on_epoch_end = on_epoch_end
        return callback

    return make


def hidden_files(folder: Path) -> list[str]:
    """Hidden files anywhere under ``folder`` (temporary files are hidden), the lock file aside."""
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob(".*") if p.name != ".edge-signs.lock")


def digests(*paths: Path) -> dict[Path, str | None]:
    """sha256 of each file (None when missing): compare before and after to prove files intact."""
    return {Path(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() if Path(p).is_file() else None for p in paths}


def one_line_error(proc, *words: str, before_work: bool = True, code: int = 1) -> str:
    """Exit ``code``, no traceback, and one `edge-signs: error:` line (the last on stderr) holding ``words``.

    ``before_work``: nothing else on stderr or stdout either (the run stopped before any work);
    otherwise progress lines may come first (e.g. `evaluate` loads models one after another).
    """
    assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # LiteRT's own "INFO: Created TensorFlow Lite XNNPACK delegate" line comes from C++, not from edge-signs
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("INFO: ")]
    errors = [ln for ln in lines if ln.startswith("edge-signs: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
    if before_work:
        assert len(lines) == 1 and proc.stdout == "", (proc.stdout, proc.stderr)  # no summary, no table, no progress
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def nan_float32_tflite(source: Path, out: Path) -> Path:
    """A copy of the float32 .tflite ``source`` with one NaN weight (a classifier bias): every probability is NaN.

    The weight is found by its bytes, so no TensorFlow is needed. No sidecar is written
    (the source's would name another file's sha256).
    """
    from edge_signs import config
    from edge_signs.edge.runtime import find_backend

    blob = bytearray(Path(source).read_bytes())
    interpreter = find_backend().interpreter_class(model_path=str(source))
    interpreter.allocate_tensors()
    bias = next(d for d in interpreter.get_tensor_details() if tuple(d["shape"]) == (config.NUM_CLASSES,) and d["dtype"] == np.float32)
    values = interpreter.get_tensor(bias["index"]).copy()
    at = bytes(blob).find(values.tobytes())
    assert at > 0, "the classifier bias was not found in the file"
    values[0] = np.nan
    blob[at:at + values.nbytes] = values.tobytes()
    Path(out).write_bytes(bytes(blob))
    return Path(out)
