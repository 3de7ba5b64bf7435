"""One line with the fix for a dependency that cannot be imported (OpenCV without libGL, a numpy clash).

Standard library only, so it works when numpy or OpenCV do not: the command's entry point
(``__main__``) and `edge-signs doctor` give the same advice from here.
"""

from __future__ import annotations


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
