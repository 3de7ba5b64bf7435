"""Model files behind one interface, picked by file type.

Each world knows how to run its own files: the edge side ``.tflite`` files through
LiteRT (``edge.evaluate.TFLITE``), the trainer side Keras files through TensorFlow
(``trainer.evaluate.KERAS``). `evaluate` asks a ``Runners`` registry for the runner of
a file; the CLI, the one place that knows both worlds, fills it. So the edge side
scores any registered kind without importing the trainer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from edge_signs.errors import EdgeSignsError


@dataclass
class Runner:
    """A model behind one interface: batch probabilities, and one timed single-image call."""

    path: Path
    format: str
    backend: str
    predict: Callable[[np.ndarray], np.ndarray]  # uint8 RGB (N,64,64,3) -> probs (N,6)
    prepare_one: Callable[[np.ndarray], None]  # load one uint8 RGB image as the next input
    run_one: Callable[[], None]  # one inference on it


@dataclass(frozen=True)
class ModelKind:
    """One kind of model file: its suffixes, what a user should give, a cheap check, and how to run it."""

    suffixes: tuple[str, ...]  # ".tflite"
    expected: str  # ".tflite from 'edge-signs quantize'": said when a file is of no registered kind
    check: Callable[[Path], Any]  # raises EdgeSignsError; reads no model into memory
    open: Callable[[Path, int, Any], Runner]  # (path, threads, interpreter backend or None)


KERAS_EXPECTED = "model.keras from 'edge-signs train'"  # what a Keras kind asks for, said where a file is of no kind

# For each int8 file that loses accuracy (its report, the drop), with the SIGNS it was scored on: which layers lose it.
Int8Diagnosis = Callable[[list, Any, Callable[[str], None]], list[dict]]


@dataclass
class Runners:
    """The model kinds `evaluate` can run here, by suffix, and the int8 layer diagnosis where one is available."""

    kinds: list[ModelKind] = field(default_factory=list)
    diagnose_int8: Optional[Int8Diagnosis] = None

    def register(self, kind: ModelKind) -> None:
        """Add a kind; a later kind for the same suffix wins."""
        self.kinds.insert(0, kind)

    def kind_of(self, path: str | os.PathLike) -> ModelKind:
        path = Path(path)
        for kind in self.kinds:
            if path.suffix in kind.suffixes:
                return kind
        expected = " or ".join(kind.expected for kind in reversed(self.kinds)) or "no model kind is available here"
        raise EdgeSignsError(f"{path}: not a model file (expected {expected})")

    def check(self, path: str | os.PathLike) -> Path:
        """Fail fast, before any data is loaded: a file of no registered kind, a missing one, one whose metadata is another's."""
        path = Path(path)
        self.kind_of(path).check(path)
        return path

    def open(self, path: str | os.PathLike, threads: int, backend: Any = None) -> Runner:
        path = self.check(path)
        return self.kind_of(path).open(path, threads, backend)
