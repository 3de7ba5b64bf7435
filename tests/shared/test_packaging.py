"""What pyproject.toml promises a Pi user, and the arm64 check's own fast parts (no qemu here).

The arm64 check itself (tools/check_arm64.py) installs these extras on an emulated
Raspberry Pi OS and takes tens of minutes: it is not part of pytest.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
pytest.importorskip("packaging.requirements")
from packaging.requirements import Requirement  # noqa: E402
from packaging.specifiers import SpecifierSet  # noqa: E402


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def reqs(lines) -> dict[str, Requirement]:
    out = {}
    for line in lines:
        r = Requirement(line)
        out[re.sub(r"[-_.]+", "-", r.name).lower()] = r
    return out


def test_python_versions(project):
    """3.10 to 3.13: Raspberry Pi OS Bookworm has 3.11, Trixie 3.13."""
    spec = SpecifierSet(project["requires-python"])
    assert all(v in spec for v in ("3.10", "3.11.2", "3.12", "3.13.5"))
    assert "3.9" not in spec and "3.14" not in spec


def test_core_opencv_is_the_headless_wheel(project):
    """No Qt, X or libGL on a Pi without a desktop; and never both OpenCV wheels (they share cv2/)."""
    core = reqs(project["dependencies"])
    assert "opencv-python-headless" in core and "opencv-python" not in core
    assert {"numpy", "h5py", "click"} <= set(core) and "tensorflow" not in core
    for extra, lines in project["optional-dependencies"].items():
        assert "opencv-python" not in reqs(lines), f"[{extra}] would install opencv-python beside opencv-python-headless"


def test_mqtt_extra_takes_debians_paho(project):
    """[mqtt] is paho-mqtt alone, and Debian Bookworm's python3-paho-mqtt (1.6.1) satisfies it: the Camera Module venv uses that."""
    mqtt = reqs(project["optional-dependencies"]["mqtt"])
    assert set(mqtt) == {"paho-mqtt"}
    assert all(v in mqtt["paho-mqtt"].specifier for v in ("1.6.1", "2.1.0")) and "1.5.1" not in mqtt["paho-mqtt"].specifier


@pytest.mark.parametrize("extra", ["pi", "pi-camera", "pi-tflite"])
def test_pi_extras_never_bring_tensorflow(project, extra):
    assert "tensorflow" not in reqs(project["optional-dependencies"][extra])


def test_numpy1_extras_pin_what_they_say(project):
    extras = project["optional-dependencies"]
    assert "ai-edge-litert" in reqs(extras["pi"])
    for extra in ("pi-camera", "pi-tflite"):
        r = reqs(extras[extra])
        assert "1.24.2" in r["numpy"].specifier and "2.0" not in r["numpy"].specifier, extra  # Debian Bookworm's numpy 1.24
        assert "4.11.0.86" in r["opencv-python-headless"].specifier and "4.12.0.88" not in r["opencv-python-headless"].specifier, extra
    assert "ai-edge-litert" in reqs(extras["pi-camera"])
    # The Camera Module's pins follow Debian's numpy: 1.24 on Bookworm (3.11), 2.2 on Trixie (3.13, no numpy 1 wheels).
    camera = reqs(extras["pi-camera"])
    for name in ("numpy", "opencv-python-headless"):
        marker = camera[name].marker
        assert marker is not None and marker.evaluate({"python_version": "3.11"}) and not marker.evaluate({"python_version": "3.13"}), name
    tflite = reqs(extras["pi-tflite"])
    assert str(tflite["tflite-runtime"].specifier) == "==2.14.0" and "ai-edge-litert" not in tflite  # else LiteRT would be used first


def test_training_allows_a_tensorflow_with_python_313_wheels(project):
    """TensorFlow 2.20 is the first with cp313 wheels: the train range must include it."""
    for extra in ("train", "gpu"):
        tf = reqs(project["optional-dependencies"][extra])["tensorflow"]
        assert "2.20.0" in tf.specifier and "2.21.0" in tf.specifier


# -- tools/check_arm64.py: argument parsing and the host check, without running anything ---------------


@pytest.fixture(scope="module")
def check_arm64():
    path = REPO / "tools" / "check_arm64.py"
    if not path.is_file():
        pytest.skip("tools/check_arm64.py is not beside these tests")
    spec = importlib.util.spec_from_file_location("check_arm64", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("check_arm64", module)
    spec.loader.exec_module(module)
    return module


def test_check_arm64_arguments(check_arm64):
    args = check_arm64.parse_args(["m.tflite", "--setups", "pi,pi-tflite", "--no-tests"])
    assert args.model == Path("m.tflite") and args.setups == ["pi", "pi-tflite"] and args.no_tests
    assert check_arm64.parse_args([]).setups == list(check_arm64.SETUPS)
    with pytest.raises(SystemExit):
        check_arm64.parse_args(["--setups", "pi,desktop"])
    with pytest.raises(SystemExit):  # tflite-runtime 2.14 has aarch64 wheels for Python 3.11 only
        check_arm64.parse_args(["--suite", "trixie"])
    assert check_arm64.parse_args(["--suite", "trixie", "--setups", "pi,pi-camera"]).suite == "trixie"


def test_check_arm64_prerequisites_are_one_line_each(check_arm64, tmp_path):
    problems = check_arm64.prerequisite_problems(binfmt=tmp_path, which=lambda tool: None, euid=1000)
    assert len(problems) == 3 and all("\n" not in p for p in problems)
    assert "root" in problems[0]
    assert "qemu-aarch64-static" in problems[1] and "apt install debootstrap qemu-user-static binfmt-support" in problems[1]
    assert "binfmt_misc" in problems[2]
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\n")
    assert check_arm64.prerequisite_problems(binfmt=tmp_path, which=lambda tool: f"/usr/bin/{tool}", euid=0) == []
    assert check_arm64.binfmt_interpreter(tmp_path) == ("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")
    (tmp_path / "qemu-aarch64").write_text("disabled\n")
    assert "update-binfmts --enable" in check_arm64.prerequisite_problems(binfmt=tmp_path, which=lambda tool: "/x", euid=0)[0]


def test_check_arm64_compares_the_same_commands(check_arm64):
    evaluate, live = check_arm64.edge_runs(["edge-signs"], "m.tflite", "signs", "/tmp/o")
    assert evaluate[:3] == ["edge-signs", "evaluate", "m.tflite"] and "--json" in evaluate
    assert live[:3] == ["edge-signs", "live", "m.tflite"] and {"--testset", "--headless", "--json"} <= set(live)


def test_the_workstation_extras_bring_the_pi_runtime(project):
    """evaluate on a workstation scores .tflite files with the interpreter a Pi runs, not tf.lite's deprecated one."""
    for extra in ("train", "gpu"):
        assert "ai-edge-litert" in reqs(project["optional-dependencies"][extra]), extra
