#!/usr/bin/env python3
"""The arm64 check: install edge-signs on an emulated 64-bit Raspberry Pi OS and compare it with this host.

Builds (once, then reuses) a Debian arm64 root with debootstrap -- Bookworm, what
Raspberry Pi OS Bookworm 64-bit is built from: Python 3.11, Debian's numpy 1.24,
no libGL, like Raspberry Pi OS Lite (or, with --suite trixie, Trixie: Python 3.13,
Debian's numpy 2.2) -- runs it through qemu-user, and in it, the way README tells a
Pi user:

  pi         python3 -m venv V; pip install 'edge_signs-*.whl[pi]'        (ai-edge-litert, numpy 2)
  pi-camera  python3 -m venv --system-site-packages V over Debian's python3-numpy;
             pip install './edge-signs[pi-camera]' from a checkout        (Debian's numpy: 1.24 / 2.2)
  pi-tflite  python3 -m venv V; pip install 'edge_signs-*.whl[pi-tflite]' (tflite-runtime 2.14, numpy 1; Bookworm only)

In each: `edge-signs evaluate MODEL --json` and `edge-signs live MODEL --testset
--headless --json`, whose accuracy and per-image predictions must equal this host's
for the same file; the one-line errors a Pi user meets (--window with no GUI in the headless
OpenCV, picamera2 built for numpy 1 under numpy 2, tflite-runtime 2.14 under numpy 2);
and, last, pytest tests/edge tests/shared against the wheel installed in `pi`
(--no-tests skips it; under qemu it is the longest step). One PASS/FAIL line per check;
the exit status is 1 if any check fails.

The Raspberry Pi archive (python3-picamera2) is not a Debian mirror, so picamera2 is
a stand-in that imports simplejpeg built for the suite's numpy, as Debian's
python3-simplejpeg is (Bookworm: 1.7.2 for numpy 1, the compiled piece of picamera2
that breaks under numpy 2; Trixie: 1.9.0 for numpy 2).

Needs root (debootstrap, chroot, mount) and, on Debian/Ubuntu:
  apt install debootstrap qemu-user-static binfmt-support
Every mount is made in a private mount namespace (unshare) that ends with each
command, and anything still mounted under the root is unmounted at the end.
The root and pip's cache in it are kept under --cache (default ~/.cache/edge-signs)
for the next run. Not part of pytest: tens of minutes under qemu.

  nice -n 19 .venv/bin/python tools/check_arm64.py runs/default-s0/model_int8.tflite

Under qemu, ai-edge-litert 2.3 segfaults reading the host's x86 /proc/cpuinfo; the
check mounts an ARM (Raspberry Pi 4) cpuinfo over it and sets QEMU_CPU=cortex-a72.
A real Pi needs neither.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITES = {"bookworm": "3.11", "trixie": "3.13"}  # Debian suite -> its python3
ROOT_PACKAGES = ("python3", "python3-venv", "python3-pip", "python3-numpy", "ca-certificates")
MIRROR = "http://deb.debian.org/debian"
SETUPS = ("pi", "pi-camera", "pi-tflite")
INSIDE = "/opt/edge-signs-check"  # the work folder inside the root
MARKER = ".edge-signs-arm64-root"
APT_HINT = "apt install debootstrap qemu-user-static binfmt-support"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
# The picamera2 stand-in's compiled piece, built for the suite's own numpy as Debian's python3-simplejpeg is:
# Bookworm's numpy 1.24 (1.7.2, Sept 2023, built for numpy 1), Trixie's numpy 2.2 (1.9.0 has cp313 wheels, numpy 2).
SIMPLEJPEG = {"bookworm": "simplejpeg==1.7.2", "trixie": "simplejpeg==1.9.0"}
NUMPY1_SUITES = ("bookworm",)  # where Debian's numpy is 1 and a numpy 2 venv breaks picamera2
CMD_TIMEOUT_S = 3600
ENV_DATA = "EDGE_SIGNS_DATA"

# /proc/cpuinfo of a Raspberry Pi 4 (Cortex-A72), one block per core.
ARM_CPUINFO = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
    f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n" for i in range(4)
) + "Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"

PICAMERA2_STANDIN = '''"""Stand-in for Debian's python3-picamera2 (tools/check_arm64.py): imports simplejpeg, built for the suite's numpy, as picamera2 does."""
import simplejpeg  # noqa: F401


class Picamera2:
    def __init__(self, index=0):
        raise RuntimeError("no cameras available (stand-in picamera2)")
'''


class Checks:
    """One PASS/FAIL line per check, printed as it is known."""

    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'}  {name:<26} {detail}", flush=True)
        return ok

    @property
    def failed(self) -> list[str]:
        return [name for name, ok, _ in self.results if not ok]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- host prerequisites -------------------------------------------------------------------------------


def prerequisite_problems(binfmt: Path = BINFMT, which=shutil.which, euid: int | None = None) -> list[str]:
    """What this host lacks, each as one line with the fix; [] when the check can run."""
    problems = []
    if (os.geteuid() if euid is None else euid) != 0:
        problems.append("needs root (debootstrap, chroot and mount): run it with sudo")
    missing = [tool for tool in ("debootstrap", "unshare", "chroot", "mount") if which(tool) is None]
    if which("qemu-aarch64-static") is None and which("qemu-aarch64") is None:
        missing.append("qemu-aarch64-static")
    if missing:
        problems.append(f"missing {', '.join(missing)}: {APT_HINT}")
    entry = binfmt / "qemu-aarch64"
    if not (binfmt / "status").exists():
        problems.append(f"binfmt_misc is not mounted: mount -t binfmt_misc binfmt_misc {binfmt}, then update-binfmts --enable qemu-aarch64 ({APT_HINT})")
    elif not entry.is_file():
        problems.append(f"no binfmt handler for aarch64 programs: {APT_HINT}, then update-binfmts --enable qemu-aarch64")
    elif entry.read_text().splitlines()[0].strip() != "enabled":
        problems.append("the aarch64 binfmt handler is disabled: update-binfmts --enable qemu-aarch64")
    return problems


def binfmt_interpreter(binfmt: Path = BINFMT) -> tuple[str, str]:
    """(interpreter path, flags) of the aarch64 handler."""
    fields = dict(line.split(" ", 1) for line in (binfmt / "qemu-aarch64").read_text().splitlines() if " " in line)
    return fields.get("interpreter", ""), fields.get("flags:", fields.get("flags", ""))


# -- mounts: only ever in a private namespace; this is the safety net ----------------------------------


def mounts_under(path: Path) -> list[str]:
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target == path or target.startswith(path + "/"):
                found.append(target)
    return found


def unmount_all(path: Path) -> None:
    for target in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


def safe_rmtree(path: Path) -> None:
    """rmtree that refuses a tree with anything mounted in it (a bound /dev would be emptied)."""
    if not path.exists():
        return
    unmount_all(path)
    left = mounts_under(path)
    if left:
        raise SystemExit(f"check_arm64: refusing to delete {path}: still mounted: {', '.join(left)}")
    shutil.rmtree(path)


# -- the arm64 root -------------------------------------------------------------------------------------


def ensure_root(cache: Path, suite: str, mirror: str, rebuild: bool) -> Path:
    root = cache / f"arm64-{suite}"
    want = f"{suite} {mirror} {' '.join(ROOT_PACKAGES)}"
    marker = root / MARKER
    if not rebuild and marker.is_file() and marker.read_text().strip() == want:
        say(f"reusing the arm64 {suite} root in {root}")
        return root
    partial = root.with_name(root.name + ".partial")
    safe_rmtree(partial)
    say(f"building an arm64 {suite} root in {root} with debootstrap (downloads a few hundred MB; 10-30 minutes under qemu)")
    cmd = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}", suite, str(partial), mirror]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-15:])
        raise SystemExit(f"{tail}\ncheck_arm64: debootstrap failed (exit {proc.returncode}); see {partial}/debootstrap/debootstrap.log")
    safe_rmtree(root)
    partial.rename(root)
    (root / MARKER).write_text(want + "\n")
    return root


def run_in_root(root: Path, script: str, log: Path, *, timeout: float = CMD_TIMEOUT_S, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a shell script inside the root through qemu, with /proc (ARM cpuinfo), /sys (read-only: LiteRT's
    cpuinfo reads /sys/devices/system/cpu, and prints three lines to stderr without it), /dev and /dev/shm mounted
    in a private mount namespace that ends with it. Output goes to ``log`` as well."""
    r = shlex.quote(str(root))
    inner_env = {
        "HOME": "/root", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
        "QEMU_CPU": "cortex-a72", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore",
        "PIP_CACHE_DIR": "/root/.cache/pip", "PIP_NO_INPUT": "1", "PIP_PROGRESS_BAR": "off", "TF_CPP_MIN_LOG_LEVEL": "2",
        ENV_DATA: f"{INSIDE}/signs", "PYTHONUNBUFFERED": "1", **(env or {}),
    }
    if (root / INSIDE.lstrip("/") / "ca.crt").is_file():  # a TLS-inspecting proxy's CA, from --ca-bundle
        inner_env["PIP_CERT"] = f"{INSIDE}/ca.crt"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in inner_env.items())
    setup = (f"set -e; mount -t proc proc {r}/proc; mount --bind {r}{INSIDE}/cpuinfo {r}/proc/cpuinfo; "
             f"mount -t sysfs -o ro sysfs {r}/sys; mount --bind /dev {r}/dev; mount -t tmpfs -o mode=1777 shm {r}/dev/shm; "
             f"exec chroot {r} /usr/bin/env -i {exports} /bin/sh -c {shlex.quote(script)}")
    # A pid namespace too: when unshare is killed (timeout, Ctrl-C), everything started in the root dies with it.
    cmd = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "/bin/sh", "-c", setup]
    with open(log, "a") as f:
        f.write(f"\n$ {script}\n")
        f.flush()
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout,
                                  env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "QEMU_CPU": "cortex-a72"})
        except subprocess.TimeoutExpired as exc:
            f.write(f"timed out after {timeout:.0f} s\n")
            return subprocess.CompletedProcess(cmd, 124, str(exc.stdout or ""), f"timed out after {timeout:.0f} s")
        f.write(proc.stdout)
        f.write(proc.stderr)
        f.write(f"[exit {proc.returncode}]\n")
    return proc


# -- what goes into the root ---------------------------------------------------------------------------


def build_wheel(python: str, out: Path) -> Path:
    """The wheel of this working tree, built from a clean copy (no stale build/ folder)."""
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, src / name)
    for name in ("edge_signs", "calibration"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    proc = subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out / "wheel"), str(src)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wheels = sorted((out / "wheel").glob("edge_signs-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise SystemExit(f"{proc.stdout}\ncheck_arm64: building the wheel failed")
    return wheels[0]


def stage(root: Path, wheel: Path, src: Path, model: Path, data: Path, ca_bundle: Path | None) -> None:
    """Copy the wheel, a checkout, the model with its sidecar, SIGNS and the edge tests into the root."""
    work = root / INSIDE.lstrip("/")
    safe_rmtree(work)
    (work / "wheel").mkdir(parents=True)
    shutil.copy2(wheel, work / "wheel" / wheel.name)
    shutil.copytree(src, work / "checkout" / "edge-signs")
    (work / "model").mkdir()
    shutil.copy2(model, work / "model" / model.name)
    shutil.copy2(model.with_suffix(".json"), work / "model" / model.with_suffix(".json").name)
    shutil.copytree(data, work / "signs", ignore=shutil.ignore_patterns("*.partial*"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    (work / "tests").mkdir()
    for name in ("__init__.py", "conftest.py", "faults.py"):
        if (REPO / "tests" / name).is_file():
            shutil.copy2(REPO / "tests" / name, work / "tests" / name)
    for name in ("edge", "shared", "fixtures"):
        shutil.copytree(REPO / "tests" / name, work / "tests" / name, ignore=ignore)
    shutil.copytree(REPO / "tools", work / "tools", ignore=ignore)  # tests/edge loads tools/bench_live.py
    shutil.copy2(REPO / "pyproject.toml", work / "pyproject.toml")  # pytest's settings; no edge_signs/ beside it
    (work / "cpuinfo").write_text(ARM_CPUINFO)
    (work / "fakepicam" / "picamera2").mkdir(parents=True)
    (work / "fakepicam" / "picamera2" / "__init__.py").write_text(PICAMERA2_STANDIN)
    shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")  # pip needs DNS inside
    if ca_bundle is not None:
        shutil.copy2(ca_bundle, work / "ca.crt")


# -- comparing with the host ---------------------------------------------------------------------------


def edge_runs(prefix: list[str], model: str, data: str, out: str) -> tuple[list[str], list[str]]:
    """The evaluate and live --testset commands, identical on the host and in the root."""
    evaluate = [*prefix, "evaluate", model, "--signs", data, "--json", "--runs", "3", "--warmup", "1", "--out", f"{out}/evaluate"]
    live = [*prefix, "live", model, "--testset", "--headless", "--signs", data, "--status-every", "0",
            "--json", f"{out}/live.jsonl", "--report", f"{out}/report"]
    return evaluate, live


def parse_evaluate(stdout: str) -> dict | None:
    try:
        start = stdout.index("[")
        return json.loads(stdout[start:])[0]
    except (ValueError, IndexError, KeyError, TypeError):
        return None


def read_live(path: Path) -> tuple[list, float | None]:
    """Per-frame raw predictions of a live --json file, and the accuracy from live_summary.json beside it."""
    frames = []
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                frames.append(json.loads(line).get("raw_label"))
    summary = path.parent / "report" / "live_summary.json"
    acc = json.loads(summary.read_text()).get("accuracy") if summary.is_file() else None
    return frames, acc


def host_tflite_python(cache: Path, python: str, wheel: Path) -> str:
    """A host venv with tflite-runtime 2.14 (numpy 1), as the pi-tflite set-up has: its baseline.

    int8 kernels differ between runtimes (tflite-runtime 2.14 and ai-edge-litert 2.3 can
    round one image apart), so arm64 is compared with the same runtime on this host.
    """
    venv = cache / "host-tflite-2.14"
    py = venv / "bin" / "python"
    if not py.is_file():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "tflite-runtime==2.14.0", "numpy<2", "opencv-python-headless<4.12",
                           f"{wheel}[pi-tflite]"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{proc.stdout}\ncheck_arm64: a host venv with tflite-runtime 2.14 (Python 3.11 or older) is needed for the "
                         f"pi-tflite baseline; leave pi-tflite out of --setups")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel)], check=True)
    return str(py)


def host_baseline(python: str, model: Path, data: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    evaluate, live = edge_runs([python, "-m", "edge_signs"], str(model), str(data), str(out))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    ev = subprocess.run(evaluate, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    result = parse_evaluate(ev.stdout)
    if ev.returncode != 0 or result is None:
        raise SystemExit(f"{ev.stderr}\ncheck_arm64: edge-signs evaluate failed on the host ({python})")
    lv = subprocess.run(live, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    frames, acc = read_live(out / "live.jsonl")
    if lv.returncode != 0 or not frames:
        raise SystemExit(f"{lv.stderr}\ncheck_arm64: edge-signs live --testset failed on the host ({python})")
    return {"evaluate": result, "frames": frames, "live_accuracy": acc}


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> tuple[bool, str]:
    """A failed command whose stderr ends in one 'edge-signs: error:' line naming every needle, and no traceback."""
    err = [line for line in proc.stderr.splitlines() if line.strip()]
    msg = next((line for line in reversed(err) if line.startswith("edge-signs: error:")), "")
    ok = proc.returncode != 0 and bool(msg) and "Traceback" not in proc.stderr and all(n.lower() in msg.lower() for n in needles)
    return ok, msg or (err[-1] if err else f"exit {proc.returncode}, no message")


def short(text: str, n: int = 150) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# -- the set-ups ---------------------------------------------------------------------------------------


def check_edge(checks: Checks, root: Path, setup: str, venv: str, model: str, host: dict, log: Path) -> None:
    """evaluate and live --testset in the root, against the host's numbers for the same file."""
    out = f"/tmp/out-{setup}"
    host_out = root / out.lstrip("/")
    safe_rmtree(host_out)
    evaluate, live = edge_runs([f"{venv}/bin/edge-signs"], model, f"{INSIDE}/signs", out)
    t0 = time.monotonic()
    ev = run_in_root(root, f"mkdir -p {out} && " + shlex.join(evaluate), log)
    result = parse_evaluate(ev.stdout)
    h = host["evaluate"]
    if ev.returncode != 0 or result is None:
        checks.add(f"{setup}: evaluate", False, f"exit {ev.returncode}: {short((ev.stderr.strip().splitlines() or [''])[-1])}")
    else:
        same = result["accuracy"] == h["accuracy"] and result.get("confusion") == h.get("confusion")
        checks.add(f"{setup}: evaluate", same,
                   f"accuracy {result['accuracy']:.4f} on arm64 ({result['backend']}), {h['accuracy']:.4f} on host ({h['backend']})"
                   f"{', same confusion matrix' if same else ', DIFFERENT confusion matrix' if result['accuracy'] == h['accuracy'] else ''}"
                   f" ({time.monotonic() - t0:.0f} s)")
    t0 = time.monotonic()
    lv = run_in_root(root, f"mkdir -p {out} && " + shlex.join(live), log)
    frames, acc = read_live(host_out / "live.jsonl")
    if lv.returncode != 0 or not frames:
        checks.add(f"{setup}: live --testset", False, f"exit {lv.returncode}: {short((lv.stderr.strip().splitlines() or [''])[-1])}")
    else:
        same = sum(a == b for a, b in zip(frames, host["frames"]))
        n = len(host["frames"])
        ok = len(frames) == n and same == n and acc == host["live_accuracy"]
        checks.add(f"{setup}: live --testset", ok,
                   f"accuracy {acc:.4f} on arm64, {host['live_accuracy']:.4f} on host; top-1 identical on {same}/{n} images"
                   f" ({time.monotonic() - t0:.0f} s)")


def versions(root: Path, venv: str, log: Path) -> str:
    proc = run_in_root(root, f"{venv}/bin/python -m pip list --format=json", log)
    try:
        dists = {d["name"].lower(): d["version"] for d in json.loads(proc.stdout)}
    except ValueError:
        return "pip list failed"
    names = ("numpy", "opencv-python-headless", "opencv-python", "ai-edge-litert", "tflite-runtime", "h5py")
    return ", ".join(f"{n} {dists[n]}" for n in names if n in dists)


def install(checks: Checks, root: Path, setup: str, venv: str, venv_args: str, target: str, log: Path, extra: str = "") -> bool:
    t0 = time.monotonic()
    script = (f"rm -rf {venv} && python3 -m venv {venv_args} {venv} && "
              f"{venv}/bin/pip install {shlex.quote(target)} {extra}")
    proc = run_in_root(root, script, log)
    built = sorted({line.split("Building wheel for ", 1)[1].split()[0] for line in proc.stdout.splitlines() if "Building wheel for " in line})
    built = [b for b in built if b != "edge-signs"]  # the checkout itself is built, as on a Pi
    ok = proc.returncode == 0 and not built
    if ok:
        check = run_in_root(root, f"{venv}/bin/pip check", log)
        ok = check.returncode == 0
        detail = f"{versions(root, venv, log)}; pip check {'clean' if ok else 'FAILED: ' + short(check.stdout.strip())}"
    elif built:
        detail = f"built from source: {', '.join(built)}"
    else:
        detail = f"exit {proc.returncode}: {short((proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [''])[-1])}"
    checks.add(f"{setup}: install", ok, f"pip install {target.rsplit('/', 1)[-1]} {extra}".rstrip() + f": {detail} ({time.monotonic() - t0:.0f} s)")
    return ok


PI_VENV = "/root/venv-pi"


def setup_pi(checks: Checks, root: Path, wheel: str, model: str, host: dict, log: Path, tests: bool, numpy1_debian: bool = True) -> bool:
    venv = PI_VENV
    if not install(checks, root, "pi", venv, "", f"{wheel}[pi]", log, extra="pytest" if tests else ""):
        return False
    check_edge(checks, root, "pi", venv, model, host, log)
    libgl = list(root.glob("usr/lib/aarch64-linux-gnu/libGL.so*"))
    proc = run_in_root(root, f"{venv}/bin/python -c 'import cv2; print(cv2.__version__)'", log)
    checks.add("pi: cv2 without libGL", proc.returncode == 0 and not libgl,
               f"OpenCV {proc.stdout.strip()} imports; libGL {'present' if libgl else 'absent, as on Raspberry Pi OS Lite'}"
               if proc.returncode == 0 else short(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "import failed"))
    proc = run_in_root(root, f"{venv}/bin/edge-signs live {model} --testset --signs {INSIDE}/signs --max-frames 1 --window", log, env={"DISPLAY": ":0"})
    ok, msg = one_line_error(proc, "--window", "no GUI")
    checks.add("pi: --window, headless cv2", ok, short(msg))
    proc = run_in_root(root, f"{venv}/bin/edge-signs live {model} --testset --signs {INSIDE}/signs --max-frames 1", log, env={"DISPLAY": ":0"})
    checks.add("pi: no window, headless cv2: runs headless", proc.returncode == 0 and "running headless: this OpenCV has no GUI" in proc.stderr,
               short((proc.stderr.strip().splitlines() or ["no output"])[0]))
    proc = run_in_root(root, f"{venv}/bin/edge-signs live {model} --picamera --headless", log, env={"PYTHONPATH": f"{INSIDE}/fakepicam"})
    if numpy1_debian:  # Bookworm: picamera2's pieces need numpy 1, this venv has numpy 2: one line with the fix
        ok, msg = one_line_error(proc, "numpy", "picamera2")
        checks.add("pi: picamera2 numpy-1 clash", ok, short(msg))
    else:  # Trixie: Debian's numpy is 2 as the venv's is, so picamera2 imports and only the (absent) camera fails
        ok, msg = one_line_error(proc, "could not be started")
        checks.add("pi: picamera2 under numpy 2", ok, short(msg))
    return True


def run_tests(checks: Checks, root: Path, log: Path) -> None:
    """pytest tests/edge tests/shared against the wheel installed in the `pi` venv; last, as the longest step."""
    t0 = time.monotonic()
    proc = run_in_root(root, f"cd {INSIDE} && {PI_VENV}/bin/python -m pytest -q -p no:cacheprovider tests/edge tests/shared", log)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else f"exit {proc.returncode}"
    checks.add("pi: pytest edge+shared", proc.returncode == 0, f"{summary} ({time.monotonic() - t0:.0f} s)")


def setup_camera(checks: Checks, root: Path, checkout: str, model: str, host: dict, log: Path) -> None:
    venv = "/root/venv-camera"
    if not install(checks, root, "pi-camera", venv, "--system-site-packages", f"{checkout}[pi-camera]", log):
        return
    proc = run_in_root(root, f"{venv}/bin/python -c 'import numpy; print(numpy.__version__, numpy.__file__)'", log)
    version, _, where = proc.stdout.strip().partition(" ")
    checks.add("pi-camera: Debian's numpy", proc.returncode == 0 and where.startswith("/usr/lib/python3/dist-packages"),
               f"numpy {version} from {where.rsplit('/numpy/', 1)[0]}")
    check_edge(checks, root, "pi-camera", venv, model, host, log)
    proc = run_in_root(root, f"{venv}/bin/edge-signs live {model} --picamera --headless", log, env={"PYTHONPATH": f"{INSIDE}/fakepicam"})
    ok, msg = one_line_error(proc, "could not be started")  # picamera2 imported: only the (absent) camera fails
    checks.add("pi-camera: picamera2 imports", ok, short(msg))


def setup_tflite(checks: Checks, root: Path, wheel: str, model: str, host: dict, log: Path) -> None:
    venv = "/root/venv-tflite"
    if not install(checks, root, "pi-tflite", venv, "", f"{wheel}[pi-tflite]", log):
        return
    check_edge(checks, root, "pi-tflite", venv, model, host, log)
    # The clash the fallback guards against: numpy 2 under tflite-runtime 2.14 must be one line with the fix.
    run_in_root(root, f"{venv}/bin/pip install --quiet 'numpy>=2'", log)
    proc = run_in_root(root, f"{venv}/bin/edge-signs evaluate {model} --data {INSIDE}/signs --runs 1", log)
    ok, msg = one_line_error(proc, "numpy 1")
    checks.add("pi-tflite: numpy 2 clash", ok, short(msg))


# -- main ----------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    default_data = os.environ.get(ENV_DATA) or str(REPO.parent / "shared" / "datasets" / "signs")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Example: sudo nice -n 19 .venv/bin/python tools/check_arm64.py runs/default-s0/model_int8.tflite")
    p.add_argument("model", nargs="?", type=Path, default=REPO / "tests" / "fixtures" / "tiny_int8.tflite",
                   help="a .tflite with its .json sidecar (default: the tiny test fixture)")
    p.add_argument("--data", type=Path, default=Path(default_data), help=f"the SIGNS folder (default: ${ENV_DATA} or ../shared/datasets/signs)")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edge-signs",
                   help="where the arm64 root (with pip's cache) is kept between runs (default: ~/.cache/edge-signs)")
    p.add_argument("--suite", choices=tuple(SUITES), default="bookworm", help="Debian suite: bookworm = Raspberry Pi OS Bookworm (Python 3.11), trixie (3.13)")
    p.add_argument("--mirror", default=MIRROR, help=f"Debian mirror for debootstrap (default: {MIRROR})")
    p.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, from {', '.join(SETUPS)} (default: all)")
    p.add_argument("--no-tests", action="store_true", help="skip pytest tests/edge tests/shared in the root")
    p.add_argument("--rebuild-root", action="store_true", help="debootstrap the root again")
    p.add_argument("--python", default=sys.executable, help="the host Python with edge-signs installed: builds the wheel and gives the host's numbers")
    p.add_argument("--prereqs", action="store_true", help="only check the host's prerequisites")
    ca = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE")
    p.add_argument("--ca-bundle", type=Path, default=Path(ca) if ca else None,
                   help="CA certificates for pip inside the root, behind a TLS-inspecting proxy (default: $PIP_CERT, $SSL_CERT_FILE or "
                        "$REQUESTS_CA_BUNDLE when set; else Debian's own)")
    args = p.parse_args(argv)
    args.setups = [s.strip() for s in args.setups.split(",") if s.strip()]
    unknown = [s for s in args.setups if s not in SETUPS]
    if unknown:
        p.error(f"unknown set-up {', '.join(unknown)}; choose from {', '.join(SETUPS)}")
    if args.suite != "bookworm" and "pi-tflite" in args.setups:
        p.error("pi-tflite needs Python 3.11 (tflite-runtime 2.14 has no other aarch64 wheel): use --suite bookworm or leave it out of --setups")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: unmount, kill what runs in the root
    problems = prerequisite_problems()
    for line in problems:
        print(f"check_arm64: {line}", file=sys.stderr)
    if problems or args.prereqs:
        return 1 if problems else 0
    model = args.model.resolve()
    if not model.is_file() or not model.with_suffix(".json").is_file():
        print(f"check_arm64: {model} and its .json sidecar are needed", file=sys.stderr)
        return 1
    if not (args.data / "test_signs.h5").is_file():
        print(f"check_arm64: no test_signs.h5 in {args.data}: pass --data or set {ENV_DATA}", file=sys.stderr)
        return 1
    t_start = time.monotonic()
    started = datetime.datetime.now().astimezone()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    print(f"arm64 check of {model.name} on {started:%Y-%m-%d %H:%M %Z}")
    print(f"host: {subprocess.run(['uname', '-a'], stdout=subprocess.PIPE, text=True).stdout.strip()}")
    print(f"host CPU: {cpu}, {os.cpu_count()} cores; qemu-user (QEMU_CPU=cortex-a72), Debian {args.suite} arm64")
    args.cache.mkdir(parents=True, exist_ok=True)
    log_dir = args.cache / "logs" / started.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True)
    root = ensure_root(args.cache, args.suite, args.mirror, args.rebuild_root)
    interpreter, flags = binfmt_interpreter()
    if "F" not in flags and interpreter:  # the kernel looks the interpreter up inside the chroot
        (root / interpreter.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(interpreter, root / interpreter.lstrip("/"))
    checks = Checks()
    try:
        with tempfile.TemporaryDirectory(prefix="check-arm64-") as tmp:
            tmp = Path(tmp)
            say("building the wheel on the host")
            wheel = build_wheel(args.python, tmp)
            say(f"host baseline: evaluate and live --testset with {args.python}")
            host = host_baseline(args.python, model, args.data, tmp / "host")
            say(f"host: accuracy {host['evaluate']['accuracy']:.4f} ({host['evaluate']['backend']}), live --testset {host['live_accuracy']:.4f}")
            host_tflite = host
            if "pi-tflite" in args.setups:
                say("host baseline for pi-tflite: the same with tflite-runtime 2.14 (numpy 1) in a host venv")
                host_tflite = host_baseline(host_tflite_python(args.cache, args.python, wheel), model, args.data, tmp / "host-tflite")
                say(f"host: accuracy {host_tflite['evaluate']['accuracy']:.4f} ({host_tflite['evaluate']['backend']}), "
                    f"live --testset {host_tflite['live_accuracy']:.4f}")
            stage(root, wheel, tmp / "src", model, args.data, args.ca_bundle)
        log = log_dir / "commands.log"
        proc = run_in_root(root, "python3 -c 'import platform, sys; print(platform.machine(), sys.version.split()[0])'", log)
        checks.add("root: runs arm64 Python", proc.returncode == 0 and proc.stdout.startswith("aarch64"),
                   proc.stdout.strip() or short(proc.stderr.strip()))
        if proc.returncode == 0:
            say(f"fetching {SIMPLEJPEG[args.suite]} for the picamera2 stand-in")
            fetch = run_in_root(root, f"python3 -m pip install --quiet --break-system-packages --no-deps --target {INSIDE}/fakepicam {SIMPLEJPEG[args.suite]}", log)
            if fetch.returncode != 0:
                checks.add("root: pip reaches PyPI", False, short((fetch.stderr.strip().splitlines() or [f"exit {fetch.returncode}"])[-1]))
            wheel_in = f"{INSIDE}/wheel/{wheel.name}"
            model_in = f"{INSIDE}/model/{model.name}"
            pi_ready = False
            for setup in args.setups:
                say(f"set-up {setup}")
                if setup == "pi":
                    pi_ready = setup_pi(checks, root, wheel_in, model_in, host, log, tests=not args.no_tests,
                                        numpy1_debian=args.suite in NUMPY1_SUITES)
                elif setup == "pi-camera":
                    setup_camera(checks, root, f"{INSIDE}/checkout/edge-signs", model_in, host, log)
                else:
                    setup_tflite(checks, root, wheel_in, model_in, host_tflite, log)
            if pi_ready and not args.no_tests:
                say("pytest tests/edge tests/shared in the pi venv")
                run_tests(checks, root, log)
    finally:
        unmount_all(root)
    elapsed = time.monotonic() - t_start
    failed = checks.failed
    print(f"{len(checks.results) - len(failed)}/{len(checks.results)} checks passed in {elapsed / 60:.1f} min; commands and output: {log_dir}/commands.log")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
