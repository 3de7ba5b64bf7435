"""The training side: what runs on a workstation or GPU box, with TensorFlow.

    model        the ResNet50 of the course; compiling, freezing, loading a trained one
    augment      camera-like augmentation inside tf.data
    datasets     the tf.data pipelines (SIGNS alone, or your images with SIGNS mixed in)
    precision    float32 / mixed_float16 / mixed_bfloat16: what `--precision auto` picks, and why
    options      a run's options, their ranges, and which of them a resumed run keeps
    devices      the tf.distribute strategy for the devices asked for or seen
    splits       your own folders split for fine-tuning (held-out, validation, training)
    callbacks    divergence guard, per-epoch checkpoints, the progress line
    extra        --extra folders mixed into training; --select-on, the epoch kept
    train        the training run, phase by phase: resolve, data, datasets, model, fit, export, score
    calibration  representative images for int8
    quantize     float32 / float16 / int8 TFLite conversion
    evaluate     the Keras half of `evaluate` and the int8 layer diagnosis

TensorFlow is imported here, once, behind the one guard that turns a missing
TensorFlow into an install hint; every module of this package imports it from here.
"""

import os

from edge_signs.config import available_cores
from edge_signs.errors import EdgeSignsError

INSTALL_HINT = "pip install 'edge-signs[train]' on a workstation or GPU box (a Raspberry Pi only needs 'edge-signs[pi]')"

# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI or newer;
# on an AVX2-only CPU they train the ResNet50 2.4x faster than its default kernels
# (docs/results.md, tools/bench_train.py). It is read once, at import: a value the user
# set (0 to turn them off) is kept.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

try:
    import tensorflow as tf
    from tensorflow import keras
except ImportError as exc:  # not installed, or installed for another Python / CPU
    raise EdgeSignsError(f"this needs TensorFlow, which cannot be imported here ({exc}): {INSTALL_HINT}") from None


def _size_thread_pools() -> None:
    """One intra-op thread per core this process may use, and as many inter-op threads.

    TensorFlow counts the cores of the affinity mask, not a container's CPU quota: limited to 2
    of a host's 64 cores it would start 64 threads per pool, which the quota then throttles.
    A pool size the user set (TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS) is kept.
    """
    cores = available_cores()
    try:
        if "TF_NUM_INTRAOP_THREADS" not in os.environ:
            tf.config.threading.set_intra_op_parallelism_threads(cores)
        if "TF_NUM_INTEROP_THREADS" not in os.environ:
            tf.config.threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError:  # TensorFlow already ran in this process (a notebook): its pools are fixed now
        pass


_size_thread_pools()

__all__ = ["INSTALL_HINT", "keras", "tf"]
