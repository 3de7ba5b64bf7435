"""`edge-signs doctor`: each check passes where the machine is ready and fails (or warns) on purpose where it is not.

Real parts throughout: the committed tiny models, the shared SIGNS copy, /proc/cpuinfo
stand-ins (as test_cpu.py), and a picamera2 stand-in package on PYTHONPATH that fails
its import the way Debian's does under a pip numpy of the other major version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from edge_signs.edge.doctor import FAIL, PASS, WARN, check_cameras, check_cpu, check_model, check_signs, check_window
from tests.conftest import REPO
from tests.edge.test_cpu import PI4, PI5, X86
from tests.edge.test_no_tensorflow import cli_without_tensorflow

GTK = "  GUI:                           GTK3\n"
NO_GUI = "  GUI:                           NONE\n"


def _doctor(*args, block=(), pythonpath=None, env=None) -> subprocess.CompletedProcess:
    """`edge-signs doctor ARGS` in a fresh interpreter, the packages in ``block`` made unimportable."""
    script = textwrap.dedent(f"""
        import sys

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {tuple(block)!r}:
                    raise ImportError(f"blocked: {{name}}")
                return None

        sys.meta_path.insert(0, Blocker())
        from edge_signs.cli import main
        main(["doctor", *{[str(a) for a in args]!r}])
    """)
    full_env = {**os.environ, **(env or {})}
    if pythonpath is not None:
        full_env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), str(REPO)])
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, env=full_env, timeout=300)


def _line(proc: subprocess.CompletedProcess, name: str) -> str:
    return next(ln for ln in proc.stdout.splitlines() if ln.split()[1:2] == [f"{name}:"])


def test_a_ready_machine_passes_without_tensorflow(tiny_models, signs_dir):
    proc = cli_without_tensorflow("doctor", tiny_models["int8"], "--signs", signs_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln.split()[1] for ln in lines] == ["edge-signs:", "runtime:", "picamera2:", "window:", "cameras:", "SIGNS:", "model:", "cpu:"]
    assert all(ln.split()[0] in (PASS, WARN) for ln in lines)
    assert _line(proc, "model").startswith("PASS  model: tiny_int8.tflite: int8")
    assert "TF-MODULES-LOADED: []" in proc.stderr


def test_no_interpreter_fails_and_the_exit_status_says_so(tiny_models):
    proc = _doctor(tiny_models["int8"], block=("ai_edge_litert", "tflite_runtime", "tensorflow"))
    assert proc.returncode == 1
    assert _line(proc, "runtime").startswith("FAIL  runtime: no TFLite interpreter is installed; fix: pip install 'edge-signs[pi]'")
    assert _line(proc, "model").startswith("FAIL  model:")
    assert proc.stderr.strip().splitlines()[-1] == "edge-signs: error: 2 check(s) failed"


def test_picamera2_built_for_another_numpy_fails_with_the_fix(tmp_path):
    broken = tmp_path / "broken" / "picamera2"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text('raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. '
                                        'Expected 96 from C header, got 88 from PyObject")\n')
    proc = _doctor(pythonpath=broken.parent)
    line = _line(proc, "picamera2")
    assert proc.returncode == 1 and line.startswith("FAIL  picamera2: does not import with numpy ") and "numpy<2" in line, proc.stdout
    fine = tmp_path / "fine" / "picamera2"
    fine.mkdir(parents=True)
    (fine / "__init__.py").write_text("class Picamera2:\n    @staticmethod\n    def global_camera_info():\n        return [{'Model': 'imx708'}]\n")
    proc = _doctor(pythonpath=fine.parent)
    assert _line(proc, "picamera2").startswith("PASS  picamera2: imports with numpy")
    assert "1 Camera Module(s)" in _line(proc, "cameras")


def test_window_warns_without_a_gui_or_a_display():
    assert check_window({"DISPLAY": ":0"}, GTK).status == PASS
    for env, build, words in (({}, GTK, "DISPLAY is not set"), ({"DISPLAY": ":0"}, NO_GUI, "no GUI")):
        check = check_window(env, build)
        assert check.status == WARN and words in check.detail and "--serve" in check.fix


def test_cameras_are_video_devices(tmp_path):
    assert check_cameras(tmp_path).status == WARN and "rpicam-hello" in check_cameras(tmp_path).fix
    (tmp_path / "video0").write_text("")
    assert check_cameras(tmp_path).status == PASS and "video0" in check_cameras(tmp_path).detail


def test_signs_named_but_missing_fails_and_unnamed_missing_warns(signs_dir, tmp_path, monkeypatch):
    assert check_signs(signs_dir).status == PASS
    assert check_signs(tmp_path / "nowhere").status == FAIL
    monkeypatch.setenv("EDGE_SIGNS_DATA", str(tmp_path / "nowhere"))
    assert check_signs().status == FAIL and "nowhere: data folder not found" in check_signs().detail
    monkeypatch.delenv("EDGE_SIGNS_DATA")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras"))
    assert check_signs().status == WARN and "edge-signs data fetch" in check_signs().fix


def test_a_broken_model_or_one_with_another_models_metadata_fails(tiny_models, tmp_path):
    assert check_model(tiny_models["int8"]).status == PASS
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"\0" * 64)
    assert check_model(garbage).status == FAIL and "not a TFLite model" in check_model(garbage).detail
    swapped = tmp_path / "swapped.tflite"
    shutil.copy(tiny_models["int8"], swapped)
    shutil.copy(tiny_models["float32"].with_suffix(".json"), swapped.with_suffix(".json"))
    check = check_model(swapped)
    assert check.status == FAIL and "quantize" in check.fix, check
    assert check_model(tmp_path / "missing.tflite").status == FAIL


@pytest.mark.parametrize("cpuinfo, status, words", [
    (X86, PASS, "int8 dot product: avx512_vnni, avx_vnni, amx_int8"),
    (PI5, PASS, "int8 dot product: asimddp"),
    (PI4, WARN, "int8 dot product: none; bf16: none"),
])
def test_cpu_warns_without_int8_instructions(tmp_path, cpuinfo, status, words):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    check = check_cpu(path)
    assert check.status == status and words in check.detail
    assert check_cpu(tmp_path / "none").status == WARN
