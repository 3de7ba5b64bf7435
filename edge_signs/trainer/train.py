"""`edge-signs train`: the seed ResNet50 on SIGNS, on whatever devices TensorFlow sees.

A run folder holds, each written atomically:

    model.keras         the trained classifier (no optimizer state)
    history.json        per-epoch loss/accuracy (train and validation) and learning rate
    training_curves.png accuracy and loss by epoch
    metrics.json        final train/val/test accuracy and loss, timing, device, options
    checkpoint/         the last finished epoch (model with optimizer state + state.json);
                        `--resume` continues from it after Ctrl-C or a killed process.
                        Kept after the run ends (it is the only copy of the optimizer state).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_signs import config, metrics
from edge_signs.artifacts import atomic_path, write_json
from edge_signs.config import RECIPES, Recipe
from edge_signs.data import Signs, resolve_data, train_val_split
from edge_signs.edge.preprocess import to_model_input
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.plots import training_curves_png
from edge_signs.trainer import keras, tf
from edge_signs.trainer.augment import augmenter
from edge_signs.trainer.model import build_resnet50


@dataclass
class TrainOptions:
    recipe: str = "default"
    seed: int = config.SEED
    batch_size: int = config.BATCH_SIZE
    val_fraction: float = config.VAL_FRACTION
    mixed_precision: bool = False
    devices: list[str] | None = None  # e.g. ["/cpu:0", "/cpu:1"]; None: what TF sees
    limit: int | None = None  # train on a stratified subset of N images (smoke runs)
    overrides: dict = field(default_factory=dict)  # Recipe fields set by the user

    def resolved_recipe(self) -> Recipe:
        if self.recipe not in RECIPES:
            raise EdgeSignsError(f"recipe '{self.recipe}': unknown (expected one of {', '.join(RECIPES)})")
        known = {f.name for f in dataclasses.fields(Recipe)}
        unknown = set(self.overrides) - known
        if unknown:
            raise EdgeSignsError(f"recipe option(s) {', '.join(sorted(unknown))}: unknown (expected {', '.join(sorted(known))})")
        values = {k: v for k, v in self.overrides.items() if v is not None}
        return dataclasses.replace(RECIPES[self.recipe], **values)


# -- data pipeline ------------------------------------------------------------------------


def make_dataset(x_uint8: np.ndarray, y: np.ndarray, *, batch_size: int, training: bool, augment: bool, seed: int):
    """uint8 RGB + int labels -> tf.data of (model input, one-hot labels)."""
    x = to_model_input(x_uint8)  # the single preprocessing definition
    onehot = np.eye(config.NUM_CLASSES, dtype=np.float32)[y]
    ds = tf.data.Dataset.from_tensor_slices((x, onehot))
    if training:
        ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        ds = ds.map(augmenter(seed), num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


# -- devices ---------------------------------------------------------------------------------


def choose_strategy(devices: list[str] | None = None):
    """tf.distribute strategy for what is available: several machines (TF_CONFIG), several
    GPUs (MirroredStrategy), explicit devices, or the default (one GPU if any, else CPU)."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if devices:
        if len(devices) > 1:
            return tf.distribute.MirroredStrategy(devices=list(devices))
        return tf.distribute.OneDeviceStrategy(devices[0])
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def describe_device(strategy) -> str:
    gpus = tf.config.list_physical_devices("GPU")
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:  # details are best-effort
            names.append(gpu.name)
    where = f"GPU x{len(gpus)} ({', '.join(names)})" if gpus else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    return f"{where}; {type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)"


# -- model and optimizer ------------------------------------------------------------------------


def compile_model(model, recipe: Recipe, steps_per_epoch: int):
    lr = recipe.learning_rate
    if recipe.schedule == "cosine":
        total = max(1, recipe.epochs * steps_per_epoch)
        warmup = min(total - 1, recipe.warmup_epochs * steps_per_epoch)
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / 10 if warmup else lr,
            decay_steps=total - warmup,
            alpha=0.01,
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    elif recipe.schedule != "constant":
        raise EdgeSignsError(f"schedule '{recipe.schedule}': unknown (expected constant or cosine)")
    if recipe.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=recipe.weight_decay)
    elif recipe.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=lr)
    else:
        raise EdgeSignsError(f"optimizer '{recipe.optimizer}': unknown (expected adam or adamw)")
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=["accuracy"],
    )
    return model


# -- checkpoints ----------------------------------------------------------------------------------


def _make_checkpoint_callback(run_dir: Path, history: dict, timing: list):
    ckpt_dir = run_dir / "checkpoint"

    class EpochCheckpoint(keras.callbacks.Callback):
        """After each epoch: model + optimizer state, then state.json naming it, then history.

        state.json is written last, so it always names a complete checkpoint; a kill at any
        moment loses at most the epoch in progress.
        """

        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            timing.append(time.perf_counter() - self._t0)
            logs = dict(logs or {})
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            for key, value in logs.items():
                history.setdefault(key, []).append(float(value))
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            name = f"epoch-{epoch + 1:04d}.keras"
            with atomic_path(ckpt_dir / name, suffix=".keras") as tmp:
                self.model.save(tmp)
            write_json(ckpt_dir / "state.json", {"epoch": epoch + 1, "model": name, "history": history, "epoch_seconds": timing})
            for old in ckpt_dir.glob("epoch-*.keras"):
                if old.name != name:
                    old.unlink()
            write_json(run_dir / "history.json", history)
            training_curves_png(history, run_dir / "training_curves.png", title=f"{run_dir.name}: ResNet50 on SIGNS")

    return EpochCheckpoint()


def read_checkpoint(run_dir: Path) -> dict | None:
    state_path = run_dir / "checkpoint" / "state.json"
    if not state_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text())
        state["path"] = run_dir / "checkpoint" / state["model"]
    except (ValueError, KeyError) as exc:
        raise EdgeSignsError(f"{state_path}: corrupt checkpoint state ({exc}); delete {run_dir / 'checkpoint'} to start over") from None
    if not state["path"].is_file():
        raise EdgeSignsError(f"{state['path']}: checkpoint named by {state_path} is missing; delete {run_dir / 'checkpoint'} to start over")
    return state


# -- the run ---------------------------------------------------------------------------------------


def _predict(model, x_uint8: np.ndarray) -> np.ndarray:
    return model.predict(to_model_input(x_uint8), batch_size=config.PREDICT_BATCH, verbose=0)


def train(
    options: TrainOptions,
    out_dir: str | os.PathLike,
    *,
    data: str | os.PathLike | Signs | None = None,
    resume: bool = False,
    verbose: int | None = None,
    log: Log = log_stderr,
) -> dict:
    """Train the classifier into ``out_dir`` and return the metrics (also in metrics.json)."""
    run_dir = Path(out_dir)
    state = read_checkpoint(run_dir) if run_dir.exists() else None
    saved_options_path = run_dir / "options.json"
    if resume:
        if state is None:
            raise EdgeSignsError(f"{run_dir}: nothing to resume (no checkpoint/state.json); start it without --resume")
        if (run_dir / "model.keras").exists():
            raise EdgeSignsError(f"{run_dir}: the run already finished (model.keras exists); nothing to resume")
        try:
            options = TrainOptions(**json.loads(saved_options_path.read_text()))  # a resumed run keeps its options
        except (OSError, ValueError, TypeError) as exc:
            raise EdgeSignsError(f"{saved_options_path}: missing or unreadable run options ({exc}); cannot resume") from None
        log(f"resuming {run_dir} after epoch {state['epoch']}")
    elif (run_dir / "model.keras").exists():
        raise EdgeSignsError(f"{run_dir}: already holds a trained model; choose another --out")
    elif state is not None:
        raise EdgeSignsError(f"{run_dir}: holds an unfinished run (epoch {state['epoch']}); pass --resume to continue it, or choose another --out")

    recipe = options.resolved_recipe()
    signs = data if isinstance(data, Signs) else resolve_data(data, log=log)

    keras.utils.set_random_seed(options.seed)
    strategy = choose_strategy(options.devices)
    device = describe_device(strategy)
    if options.mixed_precision and not tf.config.list_physical_devices("GPU"):
        log("--mixed-precision without a GPU: float16 is emulated on CPUs and slow; it is still applied")

    # Splits: validation is carved from training data; the test set is only reported.
    train_idx, val_idx = train_val_split(signs.train.y, options.val_fraction, options.seed, options.limit)
    x_tr, y_tr = signs.train.x[train_idx], signs.train.y[train_idx]
    x_val, y_val = signs.train.x[val_idx], signs.train.y[val_idx]
    train_ds = make_dataset(x_tr, y_tr, batch_size=options.batch_size, training=True, augment=recipe.augment, seed=options.seed)
    val_ds = make_dataset(x_val, y_val, batch_size=options.batch_size, training=False, augment=False, seed=options.seed) if len(y_val) else None
    steps_per_epoch = int(np.ceil(len(y_tr) / options.batch_size))

    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(saved_options_path, dataclasses.asdict(options))
    # The global RNG was seeded once above; the builder draws each layer's weights from it.
    model_kwargs = {"dropout": recipe.dropout, "l2": recipe.l2, "bn_momentum": recipe.bn_momentum}
    history: dict[str, list[float]] = {}
    timing: list[float] = []
    initial_epoch = 0
    if options.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            if state is not None:
                model = keras.models.load_model(state["path"])
                history, timing, initial_epoch = state["history"], state.get("epoch_seconds", []), state["epoch"]
            else:
                model = compile_model(build_resnet50(**model_kwargs), recipe, steps_per_epoch)
        log(
            f"training ResNet50 ({model.count_params():,} parameters) on {len(y_tr)} images, validating on {len(y_val)}; "
            f"recipe '{options.recipe}', {recipe.epochs} epochs, batch {options.batch_size}; {device}"
        )
        callback = _make_checkpoint_callback(run_dir, history, timing)
        wall_start = time.perf_counter()
        if initial_epoch < recipe.epochs:
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=recipe.epochs,
                initial_epoch=initial_epoch,
                shuffle=False,  # tf.data shuffles (seeded) before batching and augmenting
                callbacks=[callback],
                verbose=verbose if verbose is not None else (1 if sys.stderr.isatty() else 2),
            )
        wall_seconds = time.perf_counter() - wall_start
    finally:
        keras.mixed_precision.set_global_policy("float32")

    # The deployable model: float32, no optimizer state, built outside any strategy.
    final = build_resnet50(**model_kwargs)
    final.set_weights(model.get_weights())
    with atomic_path(run_dir / "model.keras", suffix=".keras") as tmp:
        final.save(tmp)

    result: dict = {}
    for name, x, y in (("train", x_tr, y_tr), ("val", x_val, y_val), ("test", signs.test.x, signs.test.y)):
        if len(y):
            scores = metrics.summarize(_predict(final, x), y)
            result[f"{name}_accuracy"], result[f"{name}_loss"] = scores["accuracy"], scores["loss"]
    result.update(
        {
            "params": int(final.count_params()),
            "epochs": recipe.epochs,
            "seconds_per_epoch": float(np.median(timing)) if timing else None,
            "train_seconds": float(np.sum(timing)),
            # Wall clock of this invocation's epochs, checkpoint writing included.
            "wall_seconds": float(wall_seconds),
            "device": device,
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "dataset": {"source": signs.source, "layout": signs.layout, "sha256": signs.checksum(), "train": len(y_tr), "val": len(y_val), "test": len(signs.test)},
            "recipe_name": options.recipe,
            "recipe": dataclasses.asdict(recipe),
            "options": dataclasses.asdict(options),
            "seed": options.seed,
        }
    )
    write_json(run_dir / "metrics.json", result)
    write_json(run_dir / "history.json", history)
    training_curves_png(history, run_dir / "training_curves.png", title=f"{run_dir.name}: ResNet50 on SIGNS ({options.recipe} recipe)")
    return result
