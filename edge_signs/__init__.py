"""edge-signs: train a SIGNS hand-sign classifier and run it on a Raspberry Pi.

Importing the package never imports TensorFlow: the edge runtime (``runtime``,
``preprocess``, ``evaluate`` of ``.tflite`` files, ``live``) runs on a Pi with
numpy, OpenCV and a LiteRT interpreter only. TensorFlow is imported inside the
trainer's code paths (``model``, ``train``, ``quantize``).
"""

__version__ = "0.1.0"
