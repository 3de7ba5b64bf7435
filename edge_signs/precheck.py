"""What `train`, `finetune` and `quantize` can check before TensorFlow is imported.

Importing TensorFlow takes seconds; a missing file or an unwritable folder is said
in one line at once instead. No TensorFlow here: the trainer calls the same checks,
so the CLI's early answer and the trainer's agree.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

from edge_signs import config
from edge_signs.artifacts import check_output_dir, check_output_file, check_outside_inputs
from edge_signs.data import check_signs_folder
from edge_signs.edge.runtime import find_backend, sidecar_path
from edge_signs.errors import EdgeSignsError
from edge_signs.own_data import labelled_root


def check_keras_file(path: str | os.PathLike, option: str = "") -> Path:
    """A .keras archive that exists (its content is Keras's to judge)."""
    path = Path(path)
    name = f"{option} {path}" if option else str(path)
    if not path.is_file():
        raise EdgeSignsError(f"{name}: model file not found (expected model.keras from 'edge-signs train')")
    if not zipfile.is_zipfile(path):
        raise EdgeSignsError(f"{name}: not a Keras model (expected a .keras zip archive from 'edge-signs train')")
    return path


def check_signs_given(data: Optional[str | os.PathLike]) -> None:
    """A SIGNS folder named by --data or $EDGE_SIGNS_DATA holds SIGNS (unnamed, it is looked for or fetched later)."""
    named = data if data is not None else os.environ.get(config.DATA_ENV_VAR) or None
    if named is not None:
        check_signs_folder(named)


def quantize_targets(model_path: Path, formats: Sequence[str], out_dir: Optional[str | os.PathLike]) -> dict[str, Path]:
    """Format -> the .tflite file it is written to, each (and its metadata) writable and not the input."""
    unknown = [f for f in formats if f not in config.FORMATS]
    if unknown or not formats:
        raise EdgeSignsError(f"format(s) {', '.join(unknown) or 'none'}: expected one or more of {', '.join(config.FORMATS)}")
    out = check_output_dir(Path(out_dir) if out_dir is not None else model_path.parent, "--out")
    targets = {fmt: out / f"{model_path.stem}_{fmt}.tflite" for fmt in formats}
    for path in targets.values():
        check_output_file(path, "--out", inputs=[model_path])
        check_output_file(sidecar_path(path), "--out", inputs=[model_path])
    return targets


def check_quantize(model: str | os.PathLike, formats: Sequence[str], out_dir, calibration_dir, manifest, data) -> None:
    """Every input and output of `quantize`, and an interpreter to read the files back."""
    model = Path(model)
    if not model.is_file():
        check_keras_file(model)  # says it is missing
    quantize_targets(model, list(dict.fromkeys(formats)), out_dir)  # outputs before the archive is opened
    check_keras_file(model)
    if calibration_dir is not None and not Path(calibration_dir).is_dir():
        raise EdgeSignsError(f"{calibration_dir}: calibration folder not found")
    if "int8" in formats and calibration_dir is None:
        if manifest is not None and not Path(manifest).is_file():
            raise EdgeSignsError(f"--manifest {manifest}: calibration manifest not found")
        check_signs_given(data)
    find_backend()


def check_run_folder(run_dir: str | os.PathLike, resume: bool) -> Path:
    """--out of train / finetune: a folder (new, or one to --resume) that can be written."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise EdgeSignsError(f"--out {run_dir}: is a file, expected a run folder (new, or one to --resume)")
    check_output_dir(run_dir, "--out")
    if not resume and (run_dir / "model.keras").exists():
        raise EdgeSignsError(f"{run_dir}: already holds a trained model; choose another --out")
    return run_dir


def check_training(out: Optional[str | os.PathLike], resume: bool, data, init: Optional[str | os.PathLike] = None,
                   own: Iterable[str | os.PathLike] = (), *, own_option: str = "--own") -> None:
    """The inputs and the run folder (None: a new one, made later) of `train` or `finetune`.

    ``own``: the labelled folders the run reads, named ``own_option`` in messages."""
    own = list(own)
    if out is not None:
        check_run_folder(out, resume)
        check_outside_inputs(out, "--out", [*((own_option, folder) for folder in own), ("--signs", data)])
    check_signs_given(data)
    if init is not None and not Path(init).is_file():  # what else a file can be wrong in, the trainer says
        raise EdgeSignsError(f"--init {init}: model file not found (expected model.keras from 'edge-signs train')")
    for folder in own:
        labelled_root(folder)
