"""Where a run trains: the tf.distribute strategy for the devices asked for or seen, and its one-line description."""

from __future__ import annotations

import os
import platform

from edge_signs.config import available_cores
from edge_signs.errors import EdgeSignsError
from edge_signs.trainer import tf


def choose_strategy(devices: list[str] | None = None):
    """tf.distribute strategy for what is available: several machines (TF_CONFIG), several
    GPUs (MirroredStrategy), explicit devices, or the default (one GPU if any, else CPU)."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices:
        known = {_device_key(d.name) for d in tf.config.list_logical_devices()}
        missing = [d for d in devices if _device_key(d) not in known]
        if missing:
            raise EdgeSignsError(f"--devices {','.join(missing)}: no such device here (TensorFlow sees {', '.join('/' + k for k in sorted(known))})")
        if len(devices) > 1:
            return tf.distribute.MirroredStrategy(devices=list(devices))
        return tf.distribute.OneDeviceStrategy(devices[0])
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _device_key(name: str) -> str:
    """'/job:localhost/replica:0/task:0/device:CPU:0', '/device:CPU:0' and '/cpu:0' all name 'cpu:0'."""
    return name.strip().lower().split("device:")[-1].lstrip("/")


def describe_device(strategy) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:  # details are best-effort
            names.append(gpu.name)
    where = f"GPU x{len(gpus)} ({', '.join(names)})" if gpus else f"CPU ({_cores()}, {platform.processor() or platform.machine()})"
    return f"{where}; {type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)"


def _cores() -> str:
    """'2 cores', or '2 of 64 cores' where an affinity mask or a CPU quota leaves this process fewer than the host has."""
    usable, host = available_cores(), os.cpu_count() or 0
    return f"{usable} of {host} cores" if host > usable else f"{usable} cores"
