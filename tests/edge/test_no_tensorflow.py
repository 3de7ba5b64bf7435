"""The Pi side never imports TensorFlow: every module, and the commands a Pi runs, with TensorFlow made unimportable.

Each test runs a fresh interpreter whose import system refuses tensorflow and keras
(a meta-path blocker, checked to really block), so the result does not depend on
whether TensorFlow happens to be installed here. In the CI's ``[pi]`` venv it is not.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap
import zipfile

import edge_signs
import edge_signs.edge
from tests.conftest import REPO

BLOCKED = ("tensorflow", "keras", "tf_keras")

BLOCKER = textwrap.dedent(f"""
    import sys

    class NoTensorFlow:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {BLOCKED!r}:
                raise ImportError(f"blocked: {{name}}")
            return None

    sys.meta_path.insert(0, NoTensorFlow())
    for name in list(sys.modules):  # nothing may come in already loaded
        if name.split(".")[0] in {BLOCKED!r}:
            del sys.modules[name]
    try:
        import tensorflow  # noqa: F401 -- the blocker must really block, or these tests prove nothing
        raise SystemExit("BLOCKER-FAILED")
    except ImportError:
        pass

    def loaded_tensorflow():
        return sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r})
""")


def run_without_tensorflow(body: str, timeout: int = 300) -> subprocess.CompletedProcess:
    script = BLOCKER + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=timeout)


def cli_without_tensorflow(*args) -> subprocess.CompletedProcess:
    """`edge-signs ARGS` with TensorFlow blocked; prints TF-MODULES-LOADED: [...] to stderr at exit."""
    return run_without_tensorflow(f"""
        from edge_signs.cli import main
        try:
            main({[str(a) for a in args]!r})
        finally:
            print("TF-MODULES-LOADED:", loaded_tensorflow(), file=sys.stderr)
    """)


def modules_of(package) -> list[str]:
    return sorted(f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__))


def test_every_edge_module_imports_without_tensorflow():
    """Every module of edge_signs.edge and every top-level one (the shared core and the commands), found here: a new module is covered by itself."""
    modules = ["edge_signs", "edge_signs.edge", *modules_of(edge_signs.edge), *[m for m in modules_of(edge_signs) if m != "edge_signs.trainer"]]
    assert {"edge_signs.preprocess", "edge_signs.runners", "edge_signs.own_data", "edge_signs.cli", "edge_signs.cli_train",
            "edge_signs.edge.runtime", "edge_signs.edge.evaluate", "edge_signs.edge.live"} <= set(modules)
    proc = run_without_tensorflow(f"""
        import importlib
        for name in {modules!r}:
            importlib.import_module(name)
        from edge_signs.edge.runtime import find_backend
        print("BACKEND", find_backend().name)  # an interpreter is found, and it is not TensorFlow's
        print("IMPORTED", len({modules!r}), "TF", loaded_tensorflow())
    """)
    assert proc.returncode == 0, proc.stderr
    assert f"IMPORTED {len(modules)} TF []" in proc.stdout
    assert "BACKEND ai-edge-litert" in proc.stdout or "BACKEND tflite-runtime" in proc.stdout


def test_trainer_without_tensorflow_is_a_one_line_install_hint():
    proc = run_without_tensorflow("""
        from edge_signs.errors import EdgeSignsError
        try:
            import edge_signs.trainer  # noqa: F401
        except EdgeSignsError as exc:
            print("HINT", repr(str(exc)))
        else:
            print("NO-ERROR")
    """)
    assert proc.returncode == 0, proc.stderr
    hint = eval(proc.stdout.split("HINT ", 1)[1])  # the repr of one str
    assert "this needs TensorFlow" in hint and "pip install 'edge-signs[train]'" in hint and "edge-signs[pi]" in hint
    assert "\n" not in hint


def test_quantize_command_without_tensorflow_says_what_to_install(tmp_path):
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as z:  # a .keras archive: the inputs are checked before TensorFlow is imported
        z.writestr("config.json", "{}")
    proc = cli_without_tensorflow("quantize", model, "--fp32")
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("TF-MODULES-LOADED")]
    assert len(lines) == 1 and lines[0].startswith("edge-signs: error: this needs TensorFlow"), proc.stderr
    assert "pip install 'edge-signs[train]'" in lines[0] and "Traceback" not in proc.stderr


def test_evaluate_tflite_without_tensorflow(tiny_models, signs_dir, tmp_path):
    proc = cli_without_tensorflow("evaluate", tiny_models["int8"], tiny_models["float32"], "--signs", signs_dir, "--runs", 3, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "| tiny_int8.tflite | int8 |" in proc.stdout and "| tiny_float32.tflite | float32 |" in proc.stdout
    assert "TF-MODULES-LOADED: []" in proc.stderr


def test_keras_model_without_tensorflow_is_a_clear_error(signs_dir, tmp_path):
    model = tmp_path / "model.keras"
    with zipfile.ZipFile(model, "w") as z:
        z.writestr("config.json", "{}")
    proc = cli_without_tensorflow("evaluate", model, "--signs", signs_dir)
    assert proc.returncode == 1
    assert "needs TensorFlow" in proc.stderr and "'edge-signs[train]'" in proc.stderr and "Traceback" not in proc.stderr
    assert "TF-MODULES-LOADED: []" in proc.stderr


def test_live_runs_without_tensorflow(tiny_models, signs_dir):
    proc = cli_without_tensorflow("live", tiny_models["int8"], "--testset", "--headless", "--signs", signs_dir, "--status-every", "0")
    assert proc.returncode == 0, proc.stderr
    assert "accuracy " in proc.stdout and "TF-MODULES-LOADED: []" in proc.stderr
