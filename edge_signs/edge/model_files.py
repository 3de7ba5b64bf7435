"""Writing a .tflite file and its metadata sidecar: checked in a child process, then published, model first.

Shared by `quantize` (a converted model, on the workstation) and `teach` (a
personal head written into an int8 file, on the Pi).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

from edge_signs.artifacts import dumps, make_temp, publish, remove_stale_temps
from edge_signs.edge.runtime import sidecar_path
from edge_signs.errors import EdgeSignsError

# Run in a child process: an interpreter that cannot run a file may abort the whole
# process (SIGABRT), and then only a child dies, not the conversion that checks it.
_CHECK_RUNS = """
import sys, numpy as np
from edge_signs.edge.runtime import Classifier
clf = Classifier(sys.argv[1], check_metadata=False)
p = clf.predict_rgb(np.full((64, 64, 3), 128, np.uint8)).probs
sys.exit(0 if np.isfinite(p).all() and abs(float(p.sum()) - 1.0) < 0.05 else 3)
"""


def check_runs(tflite_path: Path, what: str) -> None:
    """A written file loads in the edge runtime and classifies an image to finite probabilities."""
    try:
        proc = subprocess.run([sys.executable, "-c", _CHECK_RUNS, str(tflite_path)], capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise EdgeSignsError(f"the {what} model did not classify an image within 300 s; nothing was replaced") from None
    if proc.returncode != 0:
        why = "its probabilities are not finite" if proc.returncode == 3 else (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise EdgeSignsError(f"the {what} model does not run in the edge runtime ({why}); nothing was replaced")


def write_pair(blob: bytes, path: Path, what: str, sidecar: Callable[[Path], dict]) -> dict:
    """The model and its metadata (``sidecar`` of the checked temporary file), each complete before either replaces anything.

    The .tflite is moved into place first, then its sidecar: a kill between the two
    leaves a new model beside the old sidecar, which names another file's sha256 and
    is refused when loaded, never silently used.
    """
    for target in (path, sidecar_path(path)):
        remove_stale_temps(target)
    model_tmp = make_temp(path)
    meta_tmp = None
    try:
        model_tmp.write_bytes(blob)
        check_runs(model_tmp, what)
        meta = sidecar(model_tmp)
        meta_tmp = make_temp(sidecar_path(path))
        meta_tmp.write_text(dumps(meta, indent=2) + "\n")
        publish(model_tmp, path)
        publish(meta_tmp, sidecar_path(path))
        return meta
    finally:
        for tmp in (model_tmp, meta_tmp):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
