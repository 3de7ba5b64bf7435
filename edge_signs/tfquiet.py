"""TensorFlow's start-up chatter kept out of sight unless -v.

Importing TensorFlow prints a dozen lines (CUDA probing, CPU feature notes, absl's
"log messages before InitializeLog") that say nothing about the user's run. Some come
from C++ logging that no environment variable silences, so the import runs with the
process's stderr (file descriptor 2) held in a temporary file: shown after a failed
import, dropped after a good one. Later TensorFlow lines below ERROR are turned off
through TF_CPP_MIN_LOG_LEVEL (a value the user exported wins) and absl's verbosity.
No TensorFlow import here: the CLI calls this before it imports the trainer.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from types import ModuleType

_verbose = False


def set_verbose(verbose: bool) -> None:
    """-v: TensorFlow's own log lines are shown, from the import on."""
    global _verbose
    _verbose = bool(verbose)


@contextlib.contextmanager
def _stderr_held():
    """File descriptor 2 into a temporary file for the block; written out only when the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_trainer(module: str) -> ModuleType:
    """``edge_signs.trainer.<module>`` imported (TensorFlow with it), quietly unless -v."""
    name = f"edge_signs.trainer.{module}"
    if _verbose or name in sys.modules:
        return importlib.import_module(name)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _stderr_held():
        loaded = importlib.import_module(name)
    with contextlib.suppress(ImportError):  # absl comes with TensorFlow; its Python logger is TensorFlow's
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    return loaded
