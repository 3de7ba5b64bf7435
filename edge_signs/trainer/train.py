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
import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_signs import config, metrics
from edge_signs.artifacts import atomic_path, check_outside_inputs, folder_lock, write_json
from edge_signs.config import RECIPES, Recipe
from edge_signs.data import Labelled, Signs, check_own_classes, grouped_split, load_labelled, own_split, resolve_data, train_val_split
from edge_signs.edge.cpu import cpu_info
from edge_signs.preprocess import to_model_input
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.plots import training_curves_png
from edge_signs.precheck import check_run_folder
from edge_signs.trainer import keras, tf
from edge_signs.trainer.callbacks import Diverged, ProgressLine, StopOnDivergence, make_checkpoint_callback, read_checkpoint, weights_finite
from edge_signs.trainer.datasets import make_dataset, mixed_dataset
from edge_signs.trainer.extra import ChooseBestEpoch, best_weights, first_selection_epoch, load_extra, read_best, with_extra
from edge_signs.trainer.model import build_resnet50, freeze_stages, load_init
from edge_signs.trainer.precision import Precision, choose_precision, visible_gpus
from edge_signs.trainer.segment import hand_masks


@dataclass
class TrainOptions:
    recipe: str = config.DEFAULT_RECIPE
    seed: int = config.SEED
    batch_size: int = config.BATCH_SIZE
    val_fraction: float = config.VAL_FRACTION
    precision: str = config.DEFAULT_PRECISION  # one of config.PRECISIONS; auto: what the device computes fast (precision.py)
    devices: list[str] | None = None  # e.g. ["/cpu:0", "/cpu:1"]; None: what TF sees
    limit: int | None = None  # train on a stratified subset of N images (smoke runs)
    overrides: dict = field(default_factory=dict)  # Recipe fields set by the user
    init: str | None = None  # start from this trained model.keras (fine-tuning) instead of random weights
    own_data: list[str] = field(default_factory=list)  # labelled folders of your own images, mixed with SIGNS
    extra: list[str] = field(default_factory=list)  # further labelled folders added to SIGNS' training images (trainer/extra.py)
    select_on: str | None = None  # a labelled folder whose accuracy chooses the epoch kept (trainer/extra.py)

    def validate(self) -> "TrainOptions":
        """Every option in range and finite: a one-line error naming the option otherwise."""
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise EdgeSignsError(f"--seed must be an integer in 0..{2**32 - 1}, got {self.seed}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise EdgeSignsError(f"--batch-size must be a positive integer, got {self.batch_size}")
        _check_fraction("--val-fraction", self.val_fraction, upper_open=True)
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < config.NUM_CLASSES * 2):
            raise EdgeSignsError(f"--limit must be at least {config.NUM_CLASSES * 2} images (two of each class), got {self.limit}")
        if self.precision not in config.PRECISIONS:
            raise EdgeSignsError(f"--precision must be one of {', '.join(config.PRECISIONS)}, got {self.precision!r}")
        if self.devices is not None and (not self.devices or not all(isinstance(d, str) and d.strip() for d in self.devices)):
            raise EdgeSignsError(f"--devices must name devices, e.g. /gpu:0,/gpu:1; got {self.devices!r}")
        recipe = self.resolved_recipe()
        if not isinstance(recipe.epochs, int) or recipe.epochs < 1:
            raise EdgeSignsError(f"--epochs must be a positive integer, got {recipe.epochs}")
        if not _finite(recipe.learning_rate) or recipe.learning_rate <= 0:
            raise EdgeSignsError(f"--learning-rate must be a positive finite number, got {recipe.learning_rate}")
        _check_fraction("--dropout", recipe.dropout, upper_open=True)
        _check_fraction("--label-smoothing", recipe.label_smoothing, upper_open=True)
        for name, value in (("--l2", recipe.l2), ("weight decay", recipe.weight_decay)):
            if not _finite(value) or value < 0:
                raise EdgeSignsError(f"{name} must be a finite number >= 0, got {value}")
        if not isinstance(recipe.freeze_stages, int) or not 0 <= recipe.freeze_stages <= config.STAGE_COUNT:
            raise EdgeSignsError(f"--freeze-stages must be an integer in 0..{config.STAGE_COUNT}, got {recipe.freeze_stages}")
        _check_fraction("--signs-mix", recipe.signs_mix, upper_open=True)
        if self.init is not None and (not isinstance(self.init, str) or not Path(self.init).is_file()):
            raise EdgeSignsError(f"--init {self.init}: model file not found (expected model.keras from 'edge-signs train')")
        for folder in [*self.extra, *([self.select_on] if self.select_on else [])]:
            if not isinstance(folder, str) or not Path(folder).is_dir():
                raise EdgeSignsError(f"{folder}: not a folder (--extra and --select-on take labelled folders: <label>/*.jpg)")
        _check_augmentation(recipe)
        if self.own_data and self.limit is not None:
            raise EdgeSignsError("--limit subsets SIGNS for smoke runs; it cannot be combined with your own --own folders")
        if self.own_data and self.extra:
            raise EdgeSignsError("--extra adds folders to SIGNS training; fine-tuning takes all its folders as --own")
        return self

    def resolved_recipe(self) -> Recipe:
        if self.recipe not in RECIPES:
            raise EdgeSignsError(f"recipe '{self.recipe}': unknown (expected one of {', '.join(RECIPES)})")
        known = {f.name for f in dataclasses.fields(Recipe)}
        unknown = set(self.overrides) - known
        if unknown:
            raise EdgeSignsError(f"recipe option(s) {', '.join(sorted(unknown))}: unknown (expected {', '.join(sorted(known))})")
        values = {k: v for k, v in self.overrides.items() if v is not None}
        return dataclasses.replace(RECIPES[self.recipe], **values)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_augmentation(recipe: Recipe) -> None:
    for name, value, top in (("rotation", recipe.rotation, 180.0), ("shift", recipe.shift, 0.5), ("zoom_in", recipe.zoom_in, 0.9),
                             ("zoom_out", recipe.zoom_out, 1.0), ("background_swap", recipe.background_swap, 1.0), ("hue", recipe.hue, 0.5),
                             ("grayscale", recipe.grayscale, 1.0), ("erase", recipe.erase, 1.0)):
        if not _finite(value) or not 0 <= value <= top:
            raise EdgeSignsError(f"recipe {name} must be a number in [0, {top:g}], got {value}")


def _check_fraction(name: str, value, *, upper_open: bool) -> None:
    if not _finite(value) or value < 0 or value > 1 or (upper_open and value == 1):
        raise EdgeSignsError(f"{name} must be a number in [0, 1{')' if upper_open else ']'}, got {value}")


# Options that decide what a run computes: a resumed run must keep them (the device
# list and the precision only decide where and how fast, and may change).
RESUME_FIXED = ("recipe", "seed", "batch_size", "val_fraction", "limit", "overrides", "init", "own_data", "extra", "select_on")


def differences(saved: dict, given: "TrainOptions") -> list[str]:
    """'name: saved -> given' for each option of RESUME_FIXED that differs."""
    now = dataclasses.asdict(given)
    return [f"{key.replace('_', '-')}: {saved.get(key)!r} -> {now[key]!r}" for key in RESUME_FIXED if saved.get(key) != now[key]]


# -- devices ---------------------------------------------------------------------------------


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
    where = f"GPU x{len(gpus)} ({', '.join(names)})" if gpus else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    return f"{where}; {type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)"


# -- model and optimizer ------------------------------------------------------------------------


def compile_model(model, recipe: Recipe, steps_per_epoch: int, *, jit_compile: bool | str = "auto"):
    """Optimizer, schedule and loss of the recipe. ``jit_compile``: Keras' XLA switch ("auto": on a GPU only)."""
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
        jit_compile=jit_compile,
    )
    return model


def resumed_precision(model, chosen: Precision) -> Precision:
    """A checkpoint keeps the dtype policy it was trained in: a resumed run goes on in it."""
    policy = model.dtype_policy.name
    if policy == chosen.policy:
        return chosen
    return Precision(policy, f"the checkpoint's ({chosen.policy} would be chosen now; a resumed run keeps the precision it started in)")


# -- the run ---------------------------------------------------------------------------------------


def _predict(model, x_uint8: np.ndarray) -> np.ndarray:
    return model.predict(to_model_input(x_uint8), batch_size=config.PREDICT_BATCH, verbose=0)


class TrainingInterrupted(EdgeSignsError):
    """Ctrl-C: the last finished epoch is checkpointed; the message is the command that resumes."""

    exit_code = 130


def saved_options(out_dir: str | os.PathLike) -> TrainOptions | None:
    """The options an unfinished run in ``out_dir`` was started with (None when there is none)."""
    path = Path(out_dir) / "options.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if "mixed_precision" in saved:  # options.json of a run started before --precision existed
            saved["precision"] = "mixed_float16" if saved.pop("mixed_precision") else "float32"
        return TrainOptions(**saved)
    except (OSError, ValueError, TypeError) as exc:
        raise EdgeSignsError(f"{path}: missing or unreadable run options ({exc}); cannot resume") from None


def resume_command(run_dir: Path, data_source: str, options: TrainOptions | None = None) -> str:
    if options is not None and options.init:  # a fine-tuning run keeps --init and its --own folders in options.json
        return f"edge-signs finetune --out {shlex.quote(str(run_dir))} --resume --signs {shlex.quote(data_source)}"
    return f"edge-signs train --out {shlex.quote(str(run_dir))} --resume --signs {shlex.quote(data_source)}"


# -- your own images -------------------------------------------------------------------------------


@dataclass
class OwnSplits:
    """Your own folders, split by group (session or photo): never one group on two sides."""

    train: Labelled
    val: Labelled
    heldout: dict[str, Labelled]  # folder name -> its held-out part: what `evaluate --own FOLDER --split heldout` scores

    def describe(self) -> str:
        return (f"{len(self.train)} of your images ({len(set(self.train.groups))} sessions/photos) for training, "
                f"{len(self.val)} ({len(set(self.val.groups))}) for validation, "
                f"{sum(len(h) for h in self.heldout.values())} ({sum(len(set(h.groups)) for h in self.heldout.values())}) held out")


def _concat(parts: list[Labelled], source: str) -> Labelled:
    """One set from several folders (each already split on its own); file names keep their folder for reports."""
    files = [f"{Path(p.source).name}/{f}" if len(parts) > 1 else f for p in parts for f in p.files]
    x = np.concatenate([p.x for p in parts]) if parts else np.zeros((0, config.IMAGE_SIZE, config.IMAGE_SIZE, 3), np.uint8)
    y = np.concatenate([p.y for p in parts]) if parts else np.zeros(0, np.int64)
    return Labelled(x, y, files, source)


def own_splits(folders: list[str], val_fraction: float, seed: int, log: Log) -> OwnSplits:
    """Each folder's held-out groups (fixed by hash, see data.own_split) are never trained on;
    of the rest, ``val_fraction`` of the groups validate (chosen by a seeded hash)."""
    trains, vals, helds = [], [], {}
    for folder in folders:
        own = load_labelled(folder, log=log)
        held = own_split(own, "heldout") if len(grouped_split(own.groups, config.HOLDOUT_FRACTION, config.HOLDOUT_SALT)[1]) else None
        if held is None:
            log(f"warning: {own.source}: too few sessions/photos for a held-out split; check the model on frames it never saw")
        rest = own_split(own, "train")
        keep, val = grouped_split(rest.groups, val_fraction, f"val-{seed}")
        trains.append(rest.subset(keep))
        vals.append(rest.subset(val))
        if held is not None:
            name = Path(folder).resolve().name
            helds[name if name not in helds else f"{name} ({len(helds) + 1})"] = held
    result = OwnSplits(_concat(trains, ", ".join(folders)), _concat(vals, ", ".join(folders)), helds)
    check_own_classes(result.train, "fine-tuning (after the held-out and validation splits)")
    return result


def _combined_checksum(signs: Signs, own: OwnSplits | None, others: list[Labelled]) -> str:
    parts = ([own.train, own.val, *own.heldout.values()] if own is not None else []) + others
    if not parts:
        return signs.checksum()
    digest = hashlib.sha256(signs.checksum().encode())
    for part in parts:
        digest.update(part.checksum().encode())
    return digest.hexdigest()


def train(
    options: TrainOptions | None,
    out_dir: str | os.PathLike,
    *,
    data: str | os.PathLike | Signs | None = None,
    resume: bool = False,
    verbose: int | None = None,
    log: Log = log_stderr,
) -> dict:
    """Train the classifier into ``out_dir`` and return the metrics (also in metrics.json).

    ``resume``: continue the unfinished run in ``out_dir`` from its last finished epoch.
    ``options`` None means the run's saved options; options that change what the run
    computes (``RESUME_FIXED``), or other data, are refused with what differs.
    One run per folder at a time; a diverged run raises ``Diverged`` and saves nothing
    as a result (the last good checkpoint stays).
    """
    run_dir = check_run_folder(out_dir, resume)
    given = options if options is not None else (saved_options(run_dir) if run_dir.is_dir() else None)
    own_data = given.own_data if given is not None else []
    others = [*(("--extra", d) for d in given.extra), *([("--select-on", given.select_on)] if given.select_on else [])] if given else []
    check_outside_inputs(run_dir, "--out", [*(("--own", d) for d in own_data), ("--signs", data), *others])
    with folder_lock(run_dir, f"train into {run_dir}"):
        return _train_locked(options, run_dir, data=data, resume=resume, verbose=verbose, log=log)


def _train_locked(options: TrainOptions | None, run_dir: Path, *, data, resume: bool, verbose, log: Log) -> dict:
    state = read_checkpoint(run_dir)
    if resume:
        if state is None:
            raise EdgeSignsError(f"{run_dir}: nothing to resume (no checkpoint/state.json); start it without --resume")
        if (run_dir / "model.keras").exists():
            raise EdgeSignsError(f"{run_dir}: the run already finished (model.keras exists); nothing to resume")
        saved = saved_options(run_dir)
        if saved is None:
            raise EdgeSignsError(f"{run_dir / 'options.json'}: missing; cannot resume")
        if options is not None:
            changed = differences(dataclasses.asdict(saved), options)
            if changed:
                raise EdgeSignsError(f"{run_dir}: --resume continues the same run, but these options differ from the ones it was started with: "
                                     f"{'; '.join(changed)}; drop them, or start a new run in another --out")
            saved = dataclasses.replace(saved, devices=options.devices, precision=options.precision)
        options = saved
        log(f"resuming {run_dir} after epoch {state['epoch']}")
    elif (run_dir / "model.keras").exists():
        raise EdgeSignsError(f"{run_dir}: already holds a trained model; choose another --out")
    elif state is not None:
        raise EdgeSignsError(f"{run_dir}: holds an unfinished run (epoch {state['epoch']}); pass --resume to continue it, or choose another --out")
    options = (options or TrainOptions()).validate()

    recipe = options.resolved_recipe()
    signs = data if isinstance(data, Signs) else resolve_data(data, log=log)
    own = own_splits(options.own_data, options.val_fraction, options.seed, log) if options.own_data else None
    extra = load_extra(options.extra, log)
    chooser = load_labelled(options.select_on, log=log) if options.select_on else None
    data_sha256 = _combined_checksum(signs, own, [*extra.train, *extra.heldout.values(), *([chooser] if chooser else [])])
    if state is not None and state.get("data_sha256") not in (None, data_sha256):
        raise EdgeSignsError(f"{signs.source}: not the data this run was started on (sha256 {data_sha256[:12]}..., the run's "
                             f"{state['data_sha256'][:12]}...); resume with the same --data, or start a new run")

    keras.utils.set_random_seed(options.seed)
    strategy = choose_strategy(options.devices)
    device = describe_device(strategy)
    precision = choose_precision(options.precision, gpus=visible_gpus(tf), cpu=cpu_info())

    # Splits: validation is carved from training data; the test set is only reported.
    train_idx, val_idx = train_val_split(signs.train.y, options.val_fraction, options.seed, options.limit)
    x_tr, y_tr = signs.train.x[train_idx], signs.train.y[train_idx]
    x_val, y_val = signs.train.x[val_idx], signs.train.y[val_idx]
    augment = recipe if recipe.augment else None
    if own is None:
        masks = hand_masks(x_tr, log) if augment and recipe.background_swap > 0 else None
        x_fit, y_fit, masks = with_extra(x_tr, y_tr, masks, extra)
        train_ds = make_dataset(x_fit, y_fit, batch_size=options.batch_size, training=True, augment=augment, seed=options.seed, masks=masks)
        val_ds = make_dataset(x_val, y_val, batch_size=options.batch_size, training=False, augment=None, seed=options.seed) if len(y_val) else None
        steps_per_epoch = int(np.ceil(len(y_fit) / options.batch_size))
        fit_steps = None
        what = f"{len(y_tr)} images" + (f" and {extra.images} from {', '.join(options.extra)}" if extra.train else "") + f", validating on {len(y_val)}"
    else:
        # Your images once per epoch, SIGNS training images mixed into every batch; validation on your own.
        train_ds, steps_per_epoch = mixed_dataset(own.train.x, own.train.y, x_tr, y_tr, signs_mix=recipe.signs_mix,
                                                  batch_size=options.batch_size, augment=augment, seed=options.seed)
        val_ds = make_dataset(own.val.x, own.val.y, batch_size=options.batch_size, training=False, augment=None, seed=options.seed) if len(own.val) else None
        fit_steps = steps_per_epoch
        what = f"{own.describe()}; SIGNS makes {recipe.signs_mix:.0%} of each batch"

    write_json(run_dir / "options.json", dataclasses.asdict(options))
    # The global RNG was seeded once above; the builder draws each layer's weights from it.
    model_kwargs = {"dropout": recipe.dropout, "l2": recipe.l2, "bn_momentum": recipe.bn_momentum}
    history: dict[str, list[float]] = {}
    timing: list[float] = []
    initial_epoch = 0
    keras.mixed_precision.set_global_policy(precision.policy)
    try:
        with strategy.scope():
            if state is not None:
                try:
                    model = keras.models.load_model(state["path"])
                except Exception as exc:  # Keras raises many types for a damaged archive
                    raise EdgeSignsError(f"{state['path']}: unreadable checkpoint ({str(exc).splitlines()[0][:160]}); "
                                         f"delete {run_dir / 'checkpoint'} to start the run over") from None
                history, timing, initial_epoch = state["history"], state.get("epoch_seconds", []), state["epoch"]
                precision = resumed_precision(model, precision)
            else:
                model = load_init(options.init, **model_kwargs) if options.init else build_resnet50(**model_kwargs)
                freeze_stages(model, recipe.freeze_stages)
                model = compile_model(model, recipe, steps_per_epoch)
        start = f"fine-tuning {options.init}" if options.init else "training ResNet50"
        frozen = f", first {recipe.freeze_stages} stage(s) frozen" if recipe.freeze_stages else ""
        log(
            f"{start} ({model.count_params():,} parameters) on {what}; "
            f"recipe '{options.recipe}', {recipe.epochs} epochs, batch {options.batch_size}{frozen}; {device}"
        )
        log(f"precision: {precision.policy} ({precision.reason})" + ("" if precision.native else "; warning: emulated here, slower than float32"))
        guard = StopOnDivergence()
        chooser_callback = [ChooseBestEpoch(chooser, first_selection_epoch(recipe.epochs), run_dir / "checkpoint", log)] if chooser else []
        callback = make_checkpoint_callback(run_dir, history, timing, data_sha256, guard)
        wall_start = time.perf_counter()
        if initial_epoch < recipe.epochs:
            try:
                model.fit(
                    train_ds,
                    validation_data=val_ds,
                    epochs=recipe.epochs,
                    initial_epoch=initial_epoch,
                    steps_per_epoch=fit_steps,
                    shuffle=False,  # tf.data shuffles (seeded) before batching and augmenting
                    callbacks=[guard, *chooser_callback, callback, ProgressLine(log, recipe.epochs, timing)],
                    # Keras' bar shows progress within an epoch on a terminal; ProgressLine says epoch k/N and the time left.
                    verbose=verbose if verbose is not None else (1 if sys.stderr.isatty() else 0),
                )
            except KeyboardInterrupt:
                done = read_checkpoint(run_dir)
                raise TrainingInterrupted(f"interrupted after epoch {done['epoch'] if done else 0} of {recipe.epochs}; "
                                          f"continue with: {resume_command(run_dir, signs.source, options)}") from None
        wall_seconds = time.perf_counter() - wall_start
    finally:
        keras.mixed_precision.set_global_policy("float32")

    if guard.where is not None or not weights_finite(model):
        done = read_checkpoint(run_dir)
        kept = f"the last good checkpoint (epoch {done['epoch']}) stays in {run_dir / 'checkpoint'}" if done else "no epoch finished cleanly"
        raise Diverged(f"{run_dir}: training diverged at {guard.where or 'the end (non-finite weights)'}; no model or metrics were written, "
                       f"{kept}; start again with a lower --learning-rate (this run: {recipe.learning_rate:g}) in another --out")

    # The deployable model: float32, no optimizer state, built outside any strategy.
    final = build_resnet50(**model_kwargs)
    for layer in model.layers:  # frozen stages thaw in the saved model: a later fine-tune chooses its own
        layer.trainable = True
    final.set_weights(model.get_weights())
    chosen = {"by": "the last epoch", "epoch": recipe.epochs}
    best = read_best(run_dir / "checkpoint") if chooser is not None else None
    if best is not None:
        final.load_weights(best_weights(run_dir / "checkpoint"))
        chosen = {"by": f"accuracy on {best['folder']} (--select-on), from epoch {first_selection_epoch(recipe.epochs)} on", **best}
        log(f"kept epoch {best['epoch']} of {recipe.epochs}: the best on {best['folder']} ({best['accuracy']:.3f})")
    with atomic_path(run_dir / "model.keras", suffix=".keras") as tmp:
        final.save(tmp)

    result: dict = {}
    for name, x, y in (("train", x_tr, y_tr), ("val", x_val, y_val), ("test", signs.test.x, signs.test.y)):
        if len(y):
            scores = metrics.summarize(_predict(final, x), y)
            result[f"{name}_accuracy"], result[f"{name}_loss"] = scores["accuracy"], scores["loss"]
    if own is not None:
        parts = [("train", own.train), ("val", own.val)] + [(f"heldout {name}", h) for name, h in own.heldout.items()]
        result["own"] = {name: {"source": part.source, "images": len(part), **metrics.summarize(_predict(final, part.x), part.y)}
                         for name, part in parts if len(part)}
        result["init"] = options.init
    for name, part in extra.heldout.items():
        result.setdefault("extra_heldout", {})[name] = {"source": part.source, "images": len(part), **metrics.summarize(_predict(final, part.x), part.y)}
    result["checkpoint"] = chosen
    result.update(
        {
            "params": int(final.count_params()),
            "epochs": recipe.epochs,
            "seconds_per_epoch": float(np.median(timing)) if timing else None,
            "train_seconds": float(np.sum(timing)),
            # Wall clock of this invocation's epochs, checkpoint writing included.
            "wall_seconds": float(wall_seconds),
            "device": device,
            "precision": precision.as_dict(),
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "dataset": {"source": signs.source, "layout": signs.layout, "sha256": data_sha256, "train": len(y_tr), "val": len(y_val), "test": len(signs.test),
                        "own": options.own_data},
            "recipe_name": options.recipe,
            "recipe": dataclasses.asdict(recipe),
            "options": dataclasses.asdict(options),
            "seed": options.seed,
        }
    )
    write_json(run_dir / "metrics.json", result)
    write_json(run_dir / "history.json", history)
    training_curves_png(history, run_dir / "training_curves.png", title=f"{run_dir.name}: ResNet50, {options.recipe} recipe" + (" (validation: your images)" if own else " on SIGNS"))
    return result
