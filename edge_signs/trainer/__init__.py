"""The training side: what runs on a workstation or GPU box, with TensorFlow.

    model        the ResNet50 of the course
    augment      camera-like augmentation inside tf.data
    train        the training run: strategy, checkpoints, metrics
    calibration  representative images for int8
    quantize     float32 / float16 / int8 TFLite conversion
    evaluate     the Keras half of `evaluate` and the int8 layer diagnosis

TensorFlow is imported here, once, behind the one guard that turns a missing
TensorFlow into an install hint; every module of this package imports it from here.
"""

from edge_signs.errors import EdgeSignsError

INSTALL_HINT = "pip install 'edge-signs[train]' on a workstation or GPU box (a Raspberry Pi only needs 'edge-signs[pi]')"

try:
    import tensorflow as tf
    from tensorflow import keras
except ImportError as exc:  # not installed, or installed for another Python / CPU
    raise EdgeSignsError(f"this needs TensorFlow, which cannot be imported here ({exc}): {INSTALL_HINT}") from None

__all__ = ["INSTALL_HINT", "keras", "tf"]
