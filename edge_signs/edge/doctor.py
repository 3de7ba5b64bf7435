"""`edge-signs doctor`: is this machine ready? One line per check, PASS, WARN or FAIL, with the fix.

Each check reads what the commands would meet (the interpreter, numpy against
picamera2, OpenCV's GUI, cameras, SIGNS, a model and its metadata, the CPU) and
never imports TensorFlow: a Pi has none, and a workstation's is not what runs there.
A FAIL is something a command will stop on; a WARN is something that works, slower
or with less (no window, no camera, no int8 instructions).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from edge_signs import __version__, config
from edge_signs.data import candidate_folders, check_signs_folder, detect_layout
from edge_signs.edge.cpu import cpu_info
from edge_signs.edge.display import window_problem
from edge_signs.edge.runtime import INSTALL_HINT, INTERPRETERS, Backend, Classifier, check_numpy_abi, check_tflite_file, is_installed
from edge_signs.errors import EdgeSignsError
from edge_signs.import_hints import explain_import_error  # the same advice the command gives when it cannot start

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
BF16 = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX-512/AMX bfloat16; Arm's "bf16" feature (Cortex-A76 lacks it)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # PASS, WARN or FAIL
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status}  {self.name}: {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


def check_python() -> Check:
    return Check("edge-signs", PASS, f"{__version__} on Python {platform.python_version()} ({platform.machine()}), numpy {np.__version__}")


def check_runtime() -> Check:
    """The TFLite interpreter live and evaluate will load (TensorFlow's own counts only as a fallback, and is not imported)."""
    problems = []
    for module_name, dist in INTERPRETERS[:2]:
        if not is_installed(module_name.split(".")[0]):
            continue
        try:
            backend = Backend(importlib.import_module(module_name).Interpreter, dist, importlib.metadata.version(dist))
            check_numpy_abi(backend)
        except (ImportError, AttributeError, ValueError, importlib.metadata.PackageNotFoundError) as exc:
            problems.append(f"{dist} is installed but does not import ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})")
            continue
        except EdgeSignsError as exc:
            return Check("runtime", FAIL, str(exc).split(": ", 1)[0], str(exc).split(": ", 1)[-1])
        return Check("runtime", PASS, f"{backend}")
    if is_installed("tensorflow"):
        return Check("runtime", WARN, "only TensorFlow's deprecated tf.lite.Interpreter (not what a Pi runs)", "pip install ai-edge-litert")
    return Check("runtime", FAIL, "; ".join(problems) or "no TFLite interpreter is installed", INSTALL_HINT)


def check_picamera2() -> Check:
    """Debian's picamera2 (and its simplejpeg) is built for Debian's numpy: a pip numpy of another major breaks its import."""
    if not is_installed("picamera2"):
        return Check("picamera2", PASS, "not installed (only --picamera needs it: sudo apt install python3-picamera2, "
                                        "and a venv made with --system-site-packages)")
    try:
        importlib.import_module("picamera2")
    except (ImportError, ValueError) as exc:
        return Check("picamera2", FAIL, f"does not import with numpy {np.__version__} ({str(exc).splitlines()[0][:160]})",
                     explain_import_error(exc).split(": ", 1)[-1] if "numpy" in str(exc).lower() or "dtype" in str(exc)
                     else "pip install 'edge-signs[pi-camera]' in a venv made with --system-site-packages")
    return Check("picamera2", PASS, f"imports with numpy {np.__version__}")


def check_window(environ: Optional[Mapping[str, str]] = None, build_info: Optional[str] = None) -> Check:
    problem = window_problem(build_info, environ)
    if problem is None:
        return Check("window", PASS, "OpenCV has a GUI and a display is reachable: live and collect show a window")
    return Check("window", WARN, f"{problem}: live and collect run headless",
                 "live --serve PORT for a browser view, or opencv-python and a desktop for a window")


def check_cameras(dev: Path = Path("/dev")) -> Check:
    """USB/CSI cameras as video devices (Linux); the Camera Module through picamera2 where it imports."""
    found = sorted(p.name for p in dev.glob("video*")) if dev.is_dir() else []
    cams = _picamera2_cameras()
    if cams:
        found.append(f"{cams} Camera Module(s)")
    if found:
        return Check("cameras", PASS, ", ".join(found[:6]) + (" ..." if len(found) > 6 else ""))
    where = "no /dev/video* devices" if sys.platform.startswith("linux") else "cameras are not listed on this system"
    return Check("cameras", WARN, where, "plug in a USB webcam or the Camera Module (rpicam-hello --list-cameras); "
                                         "--video FILE and --testset need none")


def _picamera2_cameras() -> int:
    if not is_installed("picamera2"):
        return 0
    try:
        from picamera2 import Picamera2

        return len(Picamera2.global_camera_info())
    except Exception:  # noqa: BLE001 -- a broken picamera2 is check_picamera2's to report
        return 0


def check_signs(data: Optional[str | os.PathLike] = None) -> Check:
    """SIGNS for train, evaluate and live --testset: a named folder must hold it; otherwise it is looked for."""
    named = data if data is not None else os.environ.get(config.DATA_ENV_VAR) or None
    if named is not None:
        try:
            layout, where = check_signs_folder(named)
        except EdgeSignsError as exc:
            return Check("SIGNS", FAIL, str(exc), f"point --signs or ${config.DATA_ENV_VAR} at the folder holding {config.H5_FILES[0]}")
        return Check("SIGNS", PASS, f"{where} ({layout})")
    for label, folder in candidate_folders(None):
        found = detect_layout(folder) if folder.is_dir() else None
        if found is not None:
            return Check("SIGNS", PASS, f"{found[1]} ({found[0]}, {label})")
    return Check("SIGNS", WARN, "not found (train, evaluate and live --testset need it; a camera does not)",
                 f"edge-signs data fetch, or set ${config.DATA_ENV_VAR}")


def check_model(path: str | os.PathLike, threads: int = config.THREADS) -> Check:
    """The model loads in this runtime and its metadata belongs to it."""
    if not any(is_installed(module.split(".")[0]) for module, _ in INTERPRETERS[:2]):  # never TensorFlow's, here
        return Check("model", FAIL, f"{path}: not loaded, no LiteRT interpreter (see runtime)", INSTALL_HINT)
    try:
        check_tflite_file(path)
        clf = Classifier(path, threads=threads)
    except EdgeSignsError as exc:
        return Check("model", FAIL, str(exc), "quantize the model again (edge-signs quantize MODEL.keras) and copy the .tflite with its .json")
    return Check("model", PASS, clf.describe())


def check_cpu(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> Check:
    info = cpu_info(cpuinfo)
    bf16 = [f for f in BF16 if f in info.flags]
    cores = f"{config.available_cores()} core(s), --threads {config.THREADS} by default"
    detail = f"{info.model} ({info.machine}), {cores}; int8 dot product: {', '.join(info.int8_dot) or 'none'}; bf16: {', '.join(bf16) or 'none'}"
    if not info.flags:
        return Check("cpu", WARN, f"{info.model} ({info.machine}), {cores}; instruction sets unknown (no /proc/cpuinfo)")
    if not info.int8_dot:
        return Check("cpu", WARN, detail, "nothing to install: int8 gains less over float32 on this CPU (a Pi 4's Cortex-A72 "
                                           "has no dot product, a Pi 5's A76 has); more --threads help")
    return Check("cpu", PASS, detail)


def run_doctor(model: Optional[str | os.PathLike] = None, data: Optional[str | os.PathLike] = None) -> list[Check]:
    checks = [check_python(), check_runtime(), check_picamera2(), check_window(), check_cameras(), check_signs(data)]
    if model is not None:
        checks.append(check_model(model))
    checks.append(check_cpu())
    return checks
