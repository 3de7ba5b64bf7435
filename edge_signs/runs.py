"""Run folders: where `train` and `finetune` write when no --out is given, and which run is the newest.

``runs/<command>/<name><N>`` under the current folder, N one more than the highest
already there (run1, run2, ...), the folder made at once so that two runs started
together never share one. `quantize` and `evaluate` with no model named take the
newest run's files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence

from edge_signs import config
from edge_signs.errors import EdgeSignsError


def _counter(name: str, folder: Path) -> Optional[int]:
    match = re.fullmatch(re.escape(name) + r"(\d+)", folder.name)
    return int(match.group(1)) if match and folder.is_dir() else None


def next_run_dir(command: str, name: str = config.RUN_NAME, root: str | os.PathLike = config.RUNS_DIR) -> Path:
    """A new, empty ``root/command/nameN`` folder (made here), N after the highest in use."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise EdgeSignsError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (it names a folder)")
    parent = Path(root) / command
    parent.mkdir(parents=True, exist_ok=True)
    used = [n for n in (_counter(name, p) for p in parent.iterdir()) if n is not None]
    n = max(used, default=0) + 1
    while True:
        folder = parent / f"{name}{n}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # another run took it meanwhile
            n += 1


def newest_run(root: str | os.PathLike = config.RUNS_DIR, commands: Sequence[str] = ("train", "finetune"),
               pattern: str = "model.keras") -> Optional[Path]:
    """The run folder whose newest file matching ``pattern`` is the most recent, or None."""
    best: Optional[tuple[float, Path]] = None
    for command in commands:
        parent = Path(root) / command
        if not parent.is_dir():
            continue
        for folder in parent.iterdir():
            stamps = [f.stat().st_mtime for f in folder.glob(pattern) if f.is_file()] if folder.is_dir() else []
            if stamps and (best is None or max(stamps) > best[0]):
                best = (max(stamps), folder)
    return best[1] if best else None


def newest_keras_model(root: str | os.PathLike = config.RUNS_DIR) -> Path:
    """`quantize` with no MODEL: the newest run's model.keras."""
    run = newest_run(root)
    if run is None:
        raise EdgeSignsError(f"no MODEL named, and no {Path(root)}/train/*/model.keras or {Path(root)}/finetune/*/model.keras here "
                             f"to default to: name one (edge-signs quantize PATH/model.keras)")
    return run / "model.keras"


def newest_tflite_models(root: str | os.PathLike = config.RUNS_DIR) -> list[Path]:
    """`evaluate` with no MODELS: the newest quantized run's .tflite files, float32 first (the others' agreement is with it)."""
    run = newest_run(root, pattern="*.tflite")
    if run is None:
        raise EdgeSignsError(f"no MODELS named, and no quantized run under {Path(root)}/train or {Path(root)}/finetune "
                             f"to default to: name them (edge-signs evaluate PATH/model_int8.tflite ...)")
    order = {fmt: k for k, fmt in enumerate(config.FORMATS)}
    return sorted(run.glob("*.tflite"), key=lambda p: (order.get(p.stem.rsplit("_", 1)[-1], len(order)), p.name))
