"""The trainer's half of `edge-signs evaluate`: Keras models, and where int8 loses accuracy.

``register`` adds both to a ``Runners`` registry; ``edge_signs.edge.evaluate`` then runs
them without importing this module (the CLI registers them where TensorFlow is).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.edge.evaluate import ModelReport
from edge_signs.edge.runtime import read_sidecar
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.precheck import check_keras_file
from edge_signs.preprocess import to_model_input
from edge_signs.runners import KERAS_EXPECTED, ModelKind, Runner, Runners
from edge_signs.trainer import tf
from edge_signs.trainer.quantize import (
    layer_error_report,
    load_calibration,
    load_keras_classifier,
)


def keras_runner(path: Path, threads: int, backend=None) -> Runner:
    """A .keras file through TensorFlow (``backend``, a TFLite interpreter choice, does not apply)."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already ran in this process (a notebook, a test): its thread pool is fixed now
        pass
    model = load_keras_classifier(path)
    state = {}

    def predict(images):
        return model.predict(to_model_input(images), batch_size=config.PREDICT_BATCH, verbose=0)

    def prepare(rgb):
        state["x"] = tf.constant(to_model_input(rgb[np.newaxis]))

    def run_one():
        model(state["x"], training=False).numpy()

    return Runner(path, "keras float32", f"tensorflow {tf.__version__}", predict, prepare, run_one)


def diagnose_int8(losses: list[tuple[ModelReport, float]], signs, log: Log = log_stderr) -> list[dict]:
    """For each int8 file that loses accuracy against float (``edge.evaluate.int8_losses``): which layers lose it.

    Needs the file's source model (named in its sidecar) beside it.
    """
    findings = []
    for r, drop in losses:
        meta = read_sidecar(r.model)
        source = Path(r.model).parent / (meta.get("source_model") or {}).get("file", "")
        name = Path(r.model).name
        if not source.is_file():
            log(f"{name}: int8 loses {drop:.3f} accuracy against float; run 'edge-signs evaluate' where TensorFlow and {source.name or 'the source model'} are, to see which layers lose it")
            continue
        log(f"{name}: int8 loses {drop:.3f} accuracy against float; running the quantization debugger on {source.name}")
        # The calibration the file was made with, where it is still there; else the default one.
        cal_source = Path((meta.get("calibration") or {}).get("source") or "")
        try:
            if cal_source.is_dir():
                calibration = load_calibration(folder=cal_source, log=log)
            else:
                calibration = load_calibration(manifest=cal_source if cal_source.is_file() else None, data=signs, log=log)
            layers = layer_error_report(source, calibration, calibration.images[: config.DEBUG_IMAGES])
        except EdgeSignsError as exc:  # a diagnosis must not cost the user the report itself
            log(f"warning: {name}: quantization debugger not run ({exc})")
            continue
        findings.append({"model": r.model, "accuracy_drop": drop, "layers": layers})
    return findings


KERAS = ModelKind(config.KERAS_SUFFIXES, KERAS_EXPECTED, check_keras_file, keras_runner)


def register(runners: Runners) -> None:
    """Keras files and the int8 layer diagnosis, for `evaluate` to use through ``runners``."""
    runners.register(KERAS)
    runners.diagnose_int8 = diagnose_int8
