"""TensorFlow comes in only after a command's inputs are checked, and without its start-up chatter unless -v."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import REPO
from tests.edge.test_no_tensorflow import cli_without_tensorflow

IMPORT = "import sys; from edge_signs import tfquiet; tfquiet.set_verbose(sys.argv[1] == '-v'); tfquiet.import_trainer('quantize'); print('imported')"


def _import(flag: str) -> subprocess.CompletedProcess:
    env_free = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", IMPORT, flag], capture_output=True, text=True, cwd=REPO, env=env_free, timeout=600)


def test_importing_the_trainer_prints_nothing_unless_verbose():
    quiet = _import("")
    assert quiet.returncode == 0 and quiet.stdout == "imported\n", quiet.stderr
    assert quiet.stderr == "", quiet.stderr
    loud = _import("-v")
    assert loud.returncode == 0 and loud.stdout == "imported\n", loud.stderr


def test_bad_inputs_are_said_before_tensorflow_is_imported(tmp_path):
    """With TensorFlow made unimportable, each mistake is still its own line, not 'this needs TensorFlow'."""
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as z:
        z.writestr("config.json", "{}")
    cases = [
        (("quantize", tmp_path / "missing.keras"), "missing.keras: model file not found"),
        (("quantize", model, "--own", tmp_path / "nowhere"), "nowhere: calibration folder not found"),
        (("quantize", model, "--out", a_file / "sub"), "not writable"),
        (("quantize", model, "--int8", "--signs", tmp_path / "nodata"), "nodata: data folder not found"),
        (("train", "--out", a_file, "--epochs", "1"), "is a file, expected a run folder"),
        (("train", "--out", tmp_path / "run", "--signs", tmp_path / "nodata"), "nodata: data folder not found"),
        (("finetune", "--init", tmp_path / "missing.keras", "--own", tmp_path / "own", "--out", tmp_path / "ft"), "--init"),
        (("finetune", "--init", model, "--own", tmp_path / "mine", "--out", tmp_path / "ft"), "mine: folder not found"),
    ]
    for args, words in cases:
        proc = cli_without_tensorflow(*args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("TF-MODULES-LOADED")]
        assert proc.returncode == 1 and len(lines) == 1 and words in lines[0], (args, proc.stderr)
        assert "needs TensorFlow" not in proc.stderr and "TF-MODULES-LOADED: []" in proc.stderr
