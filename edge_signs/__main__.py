"""`python -m edge_signs` and the `edge-signs` command.

The CLI imports numpy, OpenCV and the rest at start-up; when one of them cannot be
imported (OpenCV without libGL on Raspberry Pi OS Lite, a package built for another
numpy), the user gets one line with the fix instead of a traceback.
"""

from __future__ import annotations

import sys


def explain_import_error(exc: BaseException) -> str:
    text = str(exc)
    if "libGL.so" in text or "libgthread" in text or "libSM.so" in text or "libICE.so" in text:
        return (f"OpenCV cannot load a system library ({text}): on a Pi without a desktop use the headless wheel, "
                f"pip uninstall -y opencv-python && pip install opencv-python-headless, or sudo apt install libgl1 libsm6 libice6")
    if getattr(exc, "name", None) == "cv2" or "No module named 'cv2'" in text:
        return "OpenCV is not installed: pip install 'edge-signs[pi]' (it brings opencv-python-headless; opencv-python instead for a window)"
    if getattr(exc, "name", None) == "numpy" or "No module named 'numpy'" in text:
        return "numpy is not installed: pip install 'edge-signs[pi]'"
    if "numpy" in text.lower() or "_ARRAY_API" in text or "dtype size changed" in text:
        return (f"a compiled package does not match this numpy ({text}): pip install 'numpy<2' 'opencv-python-headless<4.12' "
                f"where packages were built for numpy 1 (tflite-runtime, Debian's picamera2), else pip install -U opencv-python-headless")
    return f"cannot start: {type(exc).__name__}: {text}"


def main() -> None:
    try:
        from edge_signs.cli import main as cli
    except (ImportError, ValueError) as exc:  # ValueError: "numpy.dtype size changed" from an ABI mismatch
        print(f"edge-signs: error: {explain_import_error(exc)}", file=sys.stderr)
        sys.exit(1)
    cli()


if __name__ == "__main__":
    main()
