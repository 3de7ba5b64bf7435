"""What `edge-signs evaluate` scores: the SIGNS test set, folders of one's own images (or a split of them).

Also the warning when a model is scored on the very images it was fine-tuned or taught on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_signs.data import detect_layout, resolve_data
from edge_signs.edge.runtime import sidecar_path
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.own_data import labelled_root, load_labelled, own_split


@dataclass
class EvalSet:
    """Labelled images to score: the SIGNS test set, or (a split of) a folder of your own."""

    name: str  # "SIGNS test", "hands-webcam heldout"
    x: np.ndarray  # uint8 (N, 64, 64, 3) RGB
    y: np.ndarray
    source: str
    sha256: str
    signs: object = None  # the Signs it came from (SIGNS only): the int8 diagnosis calibrates from it


def signs_test_set(signs) -> EvalSet:
    return EvalSet("SIGNS test", signs.test.x, signs.test.y, signs.source, signs.checksum(), signs)


def is_signs_folder(folder: str | os.PathLike) -> bool:
    """The course's HDF5 pair, or train/ and test/ image folders: SIGNS, whose test set is scored."""
    found = detect_layout(Path(folder)) if Path(folder).is_dir() else None
    return found is not None and (found[0] == "hdf5" or ((found[1] / "train").is_dir() and (found[1] / "test").is_dir()))


def _check_split_applies(folder: str | os.PathLike, split: str) -> None:
    """train/ and test/ image folders are both SIGNS's layout and a Keras-style folder of one's own: with a --split, say which."""
    layout, where = detect_layout(Path(folder))
    if split == "all" or layout != "images":
        return
    raise EdgeSignsError(f"--data {folder} --split {split}: {where} has train/ and test/ image folders, SIGNS's layout, whose test/ "
                         f"is scored whole (a --split does not apply to it); to score the {split} sessions of your own images "
                         f"there, pass --data {where / 'train'} (or {where / 'test'})")


def load_eval_sets(data: list[str | os.PathLike] | tuple = (), split: str = "all", *, log: Log = log_stderr) -> list[EvalSet]:
    """What ``--data`` names, in order: SIGNS folders give their test set, other labelled folders ``split`` of theirs.

    No ``--data``: the SIGNS test set from wherever `resolve_data` finds it.
    """
    if not data:
        return [signs_test_set(resolve_data(None, log=log))]
    sets: list[EvalSet] = []
    for folder in data:
        if is_signs_folder(folder):
            _check_split_applies(folder, split)
            found = signs_test_set(resolve_data(folder, log=log))
        else:
            own = own_split(load_labelled(folder, log=log), split)
            name = f"{Path(folder).resolve().name} {split}"
            found = EvalSet(name, own.x, own.y, own.source, own.checksum())
        if not len(found.y):
            raise EdgeSignsError(f"{found.source}: --split {split} leaves no images to score")
        if any(s.name == found.name for s in sets):
            found.name = f"{found.name} ({len(sets) + 1})"
        sets.append(found)
    return sets


def _root_or_none(folder) -> str | None:
    """The resolved class-folder root of a labelled folder, or None where there is none (moved, emptied): warnings only."""
    try:
        return str(labelled_root(folder).resolve())
    except (EdgeSignsError, OSError, TypeError):
        return None


def _trained_on(model: Path) -> tuple[list[str], str]:
    """The own folders a model was fine-tuned on (its run's metrics.json) or taught on (its sidecar's ``teach``), and which."""
    try:
        taught = json.loads(sidecar_path(model).read_text()).get("teach", {}).get("data")
    except (OSError, ValueError, AttributeError):
        taught = None
    if isinstance(taught, str):
        return [taught], "taught"
    try:
        return json.loads((model.parent / "metrics.json").read_text()).get("dataset", {}).get("own") or [], "fine-tuned"
    except (OSError, ValueError, AttributeError):
        return [], "fine-tuned"


def warn_trained_on(models: list[str | os.PathLike], data: list[str | os.PathLike] | tuple, split: str, log: Log) -> None:
    """A fine-tuned or taught model scored on all of the folder it learnt from: say so (its run's metrics.json or its sidecar names them)."""
    if split == "heldout":
        return
    for model in models:
        trained, how = _trained_on(Path(model))
        if not trained:
            continue
        trained_roots = {_root_or_none(t) for t in trained} - {None}
        for folder in data:
            if not is_signs_folder(folder) and _root_or_none(folder) in trained_roots:
                log(f"warning: {Path(model).name} was {how} on {folder}: --split {split} scores images it trained on; "
                    f"--split heldout scores the sessions/photos it never saw")
