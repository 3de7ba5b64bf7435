#!/usr/bin/env python3
"""Seconds per training step and per epoch of the default recipe, for each precision and switch.

    python tools/bench_train.py [--configs float32,mixed_bfloat16] [--onednn on,off] [--xla off] [--adam fused,keras]
                                [--bn fused,keras] [--augment on,off]
                                [--steps 10] [--rounds 2] [--data DIR]

Each configuration runs in a fresh process (oneDNN and XLA are chosen when TensorFlow
starts), on the real input pipeline of `edge-signs train` (SIGNS, the default recipe's
augmentation, AdamW with its schedule, batch 32), with --steps timed steps after
three untimed ones that build the graph (--augment off: the same images, not augmented,
which says what the augmentation costs; its ops share the cores with the step).
Configurations alternate round by round, so a machine whose speed drifts drifts for
all of them; compare rows of one run only.
Prints the CPU's flags, then per configuration the median seconds per step, the
epoch that makes (steps per epoch x step), the speed against the first row, and how
busy the cores were (process CPU time / wall time / cores). Asserts nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_signs import config  # noqa: E402
from edge_signs.edge.cpu import cpu_info  # noqa: E402

WARMUP_STEPS = 3


def child(precision: str, xla: bool, fused_adam: bool, fused_bn: bool, augment: bool, steps: int, data: str | None) -> dict:
    """One configuration, in this process: the median step and the cores' busy share."""
    import numpy as np

    from edge_signs.data import resolve_data, train_val_split
    from edge_signs.log import quiet
    from edge_signs.segment import hand_masks
    from edge_signs.trainer import keras, tf
    from edge_signs.trainer.datasets import make_dataset
    from edge_signs.trainer.model import build_resnet50
    from edge_signs.trainer.train import compile_model

    signs = resolve_data(data, log=quiet)
    recipe = config.RECIPES[config.DEFAULT_RECIPE]
    train_idx, _ = train_val_split(signs.train.y, config.VAL_FRACTION, config.SEED, None)
    x, y = signs.train.x[train_idx], signs.train.y[train_idx]
    steps_per_epoch = int(np.ceil(len(y) / config.BATCH_SIZE))
    augmenting = augment and recipe.augment
    masks = hand_masks(x, quiet) if augmenting and recipe.needs_masks else None
    ds = make_dataset(x, y, batch_size=config.BATCH_SIZE, training=True, augment=recipe if augmenting else None, seed=0, masks=masks).repeat()
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    model = build_resnet50(dropout=recipe.dropout, bn_momentum=recipe.bn_momentum, fused_bn=fused_bn)
    compile_model(model, recipe, steps_per_epoch, jit_compile=xla, fused=fused_adam)
    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.t0)

    model.fit(ds, epochs=1, steps_per_epoch=WARMUP_STEPS, verbose=0)
    cpu0, wall0 = os.times(), time.perf_counter()
    model.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Timer()])
    cpu1, wall1 = os.times(), time.perf_counter()
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"step_s": statistics.median(times), "steps_per_epoch": steps_per_epoch,
            "busy": cpu_s / (wall1 - wall0) / cores, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "tf": tf.__version__}


def run_child(precision: str, onednn: str, xla: bool, fused_adam: bool, fused_bn: bool, augment: bool, steps: int, data: str | None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1" if onednn == "on" else "0"}
    cmd = [sys.executable, __file__, "--child", precision, "--steps", str(steps), "--xla", "on" if xla else "off",
           "--adam", "fused" if fused_adam else "keras", "--bn", "fused" if fused_bn else "keras", "--augment", "on" if augment else "off"]
    if data:
        cmd += ["--data", data]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{label((precision, onednn, xla, fused_adam, fused_bn, augment))}: child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def label(config: tuple) -> str:
    precision, onednn, xla, fused_adam, fused_bn, augment = config
    return (f"{precision} / {onednn} / {'on' if xla else 'off'} / {'fused' if fused_adam else 'keras'} / {'fused' if fused_bn else 'keras'}"
            f" / {'on' if augment else 'off'}")


@click.command()
@click.option("--configs", default="float32,mixed_bfloat16", show_default=True, help="Precisions (Keras policies), comma-separated.")
@click.option("--onednn", default="on", show_default=True, help="oneDNN switch values to try: on, off or on,off.")
@click.option("--xla", default="off", show_default=True, help="XLA jit_compile values to try: off, on or off,on.")
@click.option("--adam", default="fused", show_default=True,
              help="Adam's update: fused (TensorFlow's one-pass kernel, what train uses), keras (Keras' own operations) or fused,keras.")
@click.option("--bn", default="fused", show_default=True,
              help="Batch norm in training: fused (TensorFlow's FusedBatchNormV3, what train uses), keras or fused,keras.")
@click.option("--augment", default="on", show_default=True, help="The default recipe's augmentation: on, off or on,off.")
@click.option("--steps", type=click.IntRange(min=2), default=10, show_default=True, help="Timed steps per configuration and round.")
@click.option("--rounds", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--data", default=None, help="SIGNS folder (default: as `edge-signs train`).")
@click.option("--child", "child_precision", default=None, hidden=True)
def main(configs, onednn, xla, adam, bn, augment, steps, rounds, data, child_precision):
    if child_precision:
        print(json.dumps(child(child_precision, xla == "on", adam == "fused", bn == "fused", augment == "on", steps, data)), flush=True)
        return
    cpu = cpu_info()
    print(f"CPU: {cpu.describe()}")
    print(f"flags: {' '.join(sorted(f for f in cpu.flags if f.startswith(('avx', 'amx', 'fma', 'f16c', 'asimd', 'bf16', 'sve'))))}")
    print(f"cores: {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; {steps} steps x {rounds} rounds, alternated")
    grid = list(itertools.product(configs.split(","), onednn.split(","), [x == "on" for x in xla.split(",")],
                                  [a == "fused" for a in adam.split(",")], [b == "fused" for b in bn.split(",")],
                                  [a == "on" for a in augment.split(",")]))
    results: dict[tuple, list[dict]] = {g: [] for g in grid}
    for r in range(rounds):
        for g in grid:
            results[g].append(run_child(*g, steps, data))
            print(f"  round {r + 1}/{rounds}: {label(g)}: {results[g][-1]['step_s']:.3f} s/step", flush=True)
    base = None
    print("\n| precision | oneDNN | XLA | Adam | batch norm | augmentation | s/step (median of rounds) | s/epoch | vs first row | cores busy |")
    print("|---|---|---|---|---|---|---:|---:|---:|---:|")
    for g in grid:
        step = statistics.median(r["step_s"] for r in results[g])
        epoch = step * results[g][0]["steps_per_epoch"]
        base = base or step
        busy = statistics.median(r["busy"] for r in results[g])
        print(f"| {' | '.join(label(g).split(' / '))} | {step:.3f} | {epoch:.1f} | {base / step:.2f}x | {busy:.0%} |")


if __name__ == "__main__":
    main()
