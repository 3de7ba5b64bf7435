"""`edge-signs train`: the seed ResNet50 on SIGNS, on whatever devices TensorFlow sees.

A run folder holds, each written atomically:

    model.keras         the trained classifier (no optimizer state)
    history.json        per-epoch loss/accuracy (train and validation), learning rate, the augmentation's strength
    training_curves.png accuracy and loss by epoch
    metrics.json        final train/val/test accuracy and loss, timing, device, options
    checkpoint/         the last checkpointed epoch (model with optimizer state + state.json; the running weight
                        average, where the recipe asks for one); `--resume` continues from it after Ctrl-C or a
                        killed process. Kept after the run ends (it is the only copy of the optimizer state).

``TrainingRun`` goes through a run phase by phase: resolve the options (or the run to resume), load the data, choose
the devices, make the datasets, build or restore the model, fit, export model.keras, score it and write the results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from edge_signs import config, metrics
from edge_signs.artifacts import atomic_path, check_outside_inputs, folder_lock, write_json
from edge_signs.config import Recipe
from edge_signs.data import Signs, resolve_data, train_val_split
from edge_signs.edge.cpu import cpu_info
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.own_data import Labelled, load_labelled
from edge_signs.plots import training_curves_png
from edge_signs.precheck import check_run_folder
from edge_signs.preprocess import to_model_input
from edge_signs.segment import hand_masks
from edge_signs.trainer import keras, tf
from edge_signs.trainer.average import weight_average
from edge_signs.trainer.batchnorm import recalibrate_batchnorm
from edge_signs.trainer.callbacks import Diverged, ProgressLine, StopOnDivergence, make_checkpoint_callback, read_checkpoint
from edge_signs.trainer.datasets import augmentation_ramp, make_dataset, mixed_dataset
from edge_signs.trainer.devices import choose_strategy, describe_device
from edge_signs.trainer.extra import ChooseBestEpoch, Extra, best_weights, describe_choice, first_selection_epoch, load_extra, read_best, with_extra
from edge_signs.trainer.model import build_resnet50, compile_model, freeze_stages, load_init, nonfinite_layers
from edge_signs.trainer.options import RESUME_FIXED, TrainOptions, differences, saved_options
from edge_signs.trainer.precision import Precision, choose_precision, resumed_precision, visible_gpus
from edge_signs.trainer.splits import OwnSplits, own_splits

# The command line and the tools reach the run's options and checks through this module.
__all__ = ["RESUME_FIXED", "Diverged", "TrainOptions", "TrainingInterrupted", "TrainingRun", "compile_model", "differences",
           "resume_command", "saved_options", "train"]


class TrainingInterrupted(EdgeSignsError):
    """Ctrl-C: the run resumes from its last checkpoint (at most about two minutes old); the message is the command that resumes."""

    exit_code = 130


def resume_command(run_dir: Path, data_source: str, options: TrainOptions | None = None) -> str:
    if options is not None and options.init:  # a fine-tuning run keeps --init and its --own folders in options.json
        return f"edge-signs finetune --out {shlex.quote(str(run_dir))} --resume --signs {shlex.quote(data_source)}"
    return f"edge-signs train --out {shlex.quote(str(run_dir))} --resume --signs {shlex.quote(data_source)}"


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

    ``resume``: continue the unfinished run in ``out_dir`` from its last checkpointed epoch.
    ``options`` None means the run's saved options; options that change what the run
    computes (``RESUME_FIXED``), or other data, are refused with what differs.
    One run per folder at a time; a diverged run raises ``Diverged`` and saves nothing
    as a result (the last good checkpoint stays).
    """
    run_dir = check_run_folder(out_dir, resume)
    given = options if options is not None else (saved_options(run_dir) if run_dir.is_dir() else None)
    own = [("--own", d) for d in given.own_data] if given else []
    others = [*(("--extra", d) for d in given.extra), *([("--select-on", given.select_on)] if given.select_on else [])] if given else []
    check_outside_inputs(run_dir, "--out", [*own, ("--signs", data), *others])
    with folder_lock(run_dir, f"train into {run_dir}"):
        return TrainingRun(run_dir, data=data, verbose=verbose, log=log).run(options, resume)


class TrainingRun:
    """One run into ``run_dir``. Each phase sets the attributes the later ones read; ``run`` calls them in order."""

    options: TrainOptions
    recipe: Recipe
    state: dict | None  # the checkpoint a resumed run continues from
    signs: Signs
    own: OwnSplits | None  # fine-tuning: your own folders, split
    extra: Extra
    chooser: Labelled | None  # the --select-on folder
    data_sha256: str
    strategy: tf.distribute.Strategy
    device: str
    precision: Precision
    train_split: tuple[np.ndarray, np.ndarray]  # SIGNS training images and labels (validation carved out)
    val_split: tuple[np.ndarray, np.ndarray]
    train_ds: tf.data.Dataset
    val_ds: tf.data.Dataset | None
    steps_per_epoch: int  # fit's epoch (both training datasets are endless) and the learning-rate schedule
    what: str  # the data trained on, for the first log line
    model: keras.Model  # the one that trains, in the strategy's scope
    guard: StopOnDivergence
    wall_seconds: float
    chosen: dict  # the epoch whose weights model.keras holds, and why

    def __init__(self, run_dir: Path, *, data, verbose: int | None, log: Log):
        self.run_dir, self.data, self.verbose, self.log = run_dir, data, verbose, log
        self.history: dict[str, list[float]] = {}
        self.timing: list[float] = []  # seconds per finished epoch, a resumed run's earlier ones included
        self.initial_epoch = 0

    def run(self, options: TrainOptions | None, resume: bool) -> dict:
        self.resolve(options, resume)
        self.load_data()
        # Seeded once for the whole run: the datasets, and the builder drawing each layer's weights.
        keras.utils.set_random_seed(self.options.seed)
        self.choose_devices()
        self.make_datasets()
        write_json(self.run_dir / "options.json", dataclasses.asdict(self.options))
        keras.mixed_precision.set_global_policy(self.precision.policy)
        try:
            self.build_or_restore()
            self.fit()
        finally:
            keras.mixed_precision.set_global_policy("float32")
        self.check_finite()
        final = self.export()
        result = self.score(final)
        self.write(result)
        return result

    # -- resolve ----------------------------------------------------------------------------------

    def resolve(self, options: TrainOptions | None, resume: bool) -> None:
        """The run's options: the given ones for a new run, or the resumed run's own (which given ones must agree with)."""
        self.state = read_checkpoint(self.run_dir)
        if resume:
            options = self._resumed_options(options)
        elif (self.run_dir / "model.keras").exists():
            raise EdgeSignsError(f"{self.run_dir}: already holds a trained model; choose another --out")
        elif self.state is not None:
            raise EdgeSignsError(f"{self.run_dir}: holds an unfinished run (epoch {self.state['epoch']}); pass --resume to continue it, "
                                 f"or choose another --out")
        self.options = (options or TrainOptions()).validate()
        self.recipe = self.options.resolved_recipe()

    def _resumed_options(self, given: TrainOptions | None) -> TrainOptions:
        run_dir = self.run_dir
        if self.state is None:
            raise EdgeSignsError(f"{run_dir}: nothing to resume (no checkpoint/state.json); start it without --resume")
        if (run_dir / "model.keras").exists():
            raise EdgeSignsError(f"{run_dir}: the run already finished (model.keras exists); nothing to resume")
        saved = saved_options(run_dir)
        if saved is None:
            raise EdgeSignsError(f"{run_dir / 'options.json'}: missing; cannot resume")
        if given is not None:
            changed = differences(dataclasses.asdict(saved), given)
            if changed:
                raise EdgeSignsError(f"{run_dir}: --resume continues the same run, but these options differ from the ones it was started with: "
                                     f"{'; '.join(changed)}; drop them, or start a new run in another --out")
            saved = dataclasses.replace(saved, devices=given.devices, precision=given.precision)
        self.log(f"resuming {run_dir} after epoch {self.state['epoch']}")
        return saved

    # -- data and devices ---------------------------------------------------------------------------

    def load_data(self) -> None:
        """SIGNS, your own folders, the --extra and --select-on folders; a resumed run must find the data it started on."""
        options, log = self.options, self.log
        self.signs = self.data if isinstance(self.data, Signs) else resolve_data(self.data, log=log)
        self.own = own_splits(options.own_data, options.val_fraction, options.seed, log) if options.own_data else None
        self.extra = load_extra(options.extra, log)
        self.chooser = load_labelled(options.select_on, log=log) if options.select_on else None
        others = [*self.extra.train, *self.extra.heldout.values(), *([self.chooser] if self.chooser else [])]
        self.data_sha256 = _combined_checksum(self.signs, self.own, others)
        started_on = self.state.get("data_sha256") if self.state is not None else None
        if started_on not in (None, self.data_sha256):
            raise EdgeSignsError(f"{self.signs.source}: not the data this run was started on (sha256 {self.data_sha256[:12]}..., the run's "
                                 f"{started_on[:12]}...); resume with the same --data, or start a new run")

    def choose_devices(self) -> None:
        self.strategy = choose_strategy(self.options.devices)
        self.device = describe_device(self.strategy)
        self.precision = choose_precision(self.options.precision, gpus=visible_gpus(tf), cpu=cpu_info())

    def make_datasets(self) -> None:
        """Validation is carved from the training data; the test set is only reported."""
        options, signs = self.options, self.signs
        train_idx, val_idx = train_val_split(signs.train.y, options.val_fraction, options.seed, options.limit)
        self.train_split = signs.train.x[train_idx], signs.train.y[train_idx]
        self.val_split = signs.train.x[val_idx], signs.train.y[val_idx]
        augment, self.ramp = (self.recipe if self.recipe.augment else None), augmentation_ramp(self.recipe)
        if self.own is None:
            self._signs_datasets(augment)
        else:
            self._own_datasets(augment)

    def _signs_datasets(self, augment: Recipe | None) -> None:
        options, extra = self.options, self.extra
        (x_tr, y_tr), (x_val, y_val) = self.train_split, self.val_split
        masks = hand_masks(x_tr, self.log) if augment and self.recipe.needs_masks else None
        x_fit, y_fit, masks = with_extra(x_tr, y_tr, masks, extra)
        # Endless, with fit told the steps: Keras otherwise makes a new iterator each epoch, and on a 2-core CPU
        # every second epoch or so then waited about 9 s for its first batch (12 s epochs took 20; docs/training.md).
        self.train_ds = make_dataset(x_fit, y_fit, batch_size=options.batch_size, training=True, augment=augment, seed=options.seed,
                                     masks=masks, ramp=self.ramp).repeat()
        self.val_ds = make_dataset(x_val, y_val, batch_size=options.batch_size, training=False, augment=None, seed=options.seed) if len(y_val) else None
        self.steps_per_epoch = int(np.ceil(len(y_fit) / options.batch_size))
        self.what = (f"{len(y_tr)} images" + (f" and {extra.images} from {', '.join(options.extra)}" if extra.train else "")
                     + f", validating on {len(y_val)}")

    def _own_datasets(self, augment: Recipe | None) -> None:
        """Your images once per epoch, SIGNS training images mixed into every batch; validation on your own."""
        options, own = self.options, self.own
        x_tr, y_tr = self.train_split
        self.train_ds, self.steps_per_epoch = mixed_dataset(own.train.x, own.train.y, x_tr, y_tr, signs_mix=self.recipe.signs_mix,
                                                            batch_size=options.batch_size, augment=augment, seed=options.seed, ramp=self.ramp)
        self.val_ds = (make_dataset(own.val.x, own.val.y, batch_size=options.batch_size, training=False, augment=None, seed=options.seed)
                       if len(own.val) else None)
        self.what = f"{own.describe()}; SIGNS makes {self.recipe.signs_mix:.0%} of each batch"

    # -- the model ----------------------------------------------------------------------------------

    @property
    def model_kwargs(self) -> dict:
        return {"dropout": self.recipe.dropout, "l2": self.recipe.l2, "bn_momentum": self.recipe.bn_momentum}

    def build_or_restore(self) -> None:
        """In the strategy's scope: the checkpoint's model (optimizer state and precision included), or a new one."""
        with self.strategy.scope():
            if self.state is not None:
                self._restore()
                return
            init = self.options.init
            # Trained with fused batch norms; export() saves the same weights in Keras' own layers.
            model = load_init(init, **self.model_kwargs, fused_bn=True) if init else build_resnet50(**self.model_kwargs, fused_bn=True)
            freeze_stages(model, self.recipe.freeze_stages)
            self.model = compile_model(model, self.recipe, self.steps_per_epoch)

    def _restore(self) -> None:
        state = self.state
        try:
            self.model = keras.models.load_model(state["path"])
        except Exception as exc:  # Keras raises many types for a damaged archive
            raise EdgeSignsError(f"{state['path']}: unreadable checkpoint ({str(exc).splitlines()[0][:160]}); "
                                 f"delete {self.run_dir / 'checkpoint'} to start the run over") from None
        self.history, self.timing, self.initial_epoch = state["history"], state.get("epoch_seconds", []), state["epoch"]
        self.precision = resumed_precision(self.model, self.precision)

    # -- fit ------------------------------------------------------------------------------------------

    def fit(self) -> None:
        """The epochs still to run, a checkpoint after each; Ctrl-C ends in the command that resumes."""
        self._log_start()
        recipe, run_dir = self.recipe, self.run_dir
        self.guard = StopOnDivergence()
        chooser = [ChooseBestEpoch(self.chooser, first_selection_epoch(recipe.epochs), run_dir / "checkpoint", self.log)] if self.chooser else []
        self.averager = weight_average(recipe, run_dir / "checkpoint", self.initial_epoch)
        checkpoint = make_checkpoint_callback(run_dir, self.history, self.timing, self.data_sha256, self.guard, list(filter(None, [self.averager])))
        wall_start = time.perf_counter()
        if self.initial_epoch < recipe.epochs:
            try:
                self.model.fit(
                    self.train_ds,
                    validation_data=self.val_ds,
                    epochs=recipe.epochs,
                    initial_epoch=self.initial_epoch,
                    steps_per_epoch=self.steps_per_epoch,  # both training datasets are endless
                    shuffle=False,  # tf.data shuffles (seeded) before batching and augmenting
                    callbacks=[self.guard, *chooser, *filter(None, [self.averager, self.ramp]), checkpoint, ProgressLine(self.log, recipe.epochs, self.timing)],
                    # Keras' bar shows progress within an epoch on a terminal; ProgressLine says epoch k/N and the time left.
                    verbose=self.verbose if self.verbose is not None else (1 if sys.stderr.isatty() else 0),
                )
            except KeyboardInterrupt:
                finished, kept = len(self.history.get("loss", [])), (read_checkpoint(run_dir) or {"epoch": 0})["epoch"]
                since = f" (it goes on from the checkpoint of epoch {kept})" if kept < finished else ""
                raise TrainingInterrupted(f"interrupted after epoch {finished} of {recipe.epochs}{since}; "
                                          f"continue with: {resume_command(run_dir, self.signs.source, self.options)}") from None
        self.wall_seconds = time.perf_counter() - wall_start

    def _log_start(self) -> None:
        options, recipe, precision = self.options, self.recipe, self.precision
        start = f"fine-tuning {options.init}" if options.init else "training ResNet50"
        frozen = f", first {recipe.freeze_stages} stage(s) frozen" if recipe.freeze_stages else ""
        self.log(f"{start} ({self.model.count_params():,} parameters) on {self.what}; "
                 f"recipe '{options.recipe}', {recipe.epochs} epochs, batch {options.batch_size}{frozen}; {self.device}")
        self.log(f"precision: {precision.policy} ({precision.reason})" + ("" if precision.native else "; warning: slower than float32 here"))

    def check_finite(self) -> None:
        """A diverged run is never a success: nothing is written as its result."""
        if self.guard.where is None and not nonfinite_layers(self.model):
            return
        done = read_checkpoint(self.run_dir)
        kept = f"the last good checkpoint (epoch {done['epoch']}) stays in {self.run_dir / 'checkpoint'}" if done else "no epoch finished cleanly"
        raise Diverged(f"{self.run_dir}: training diverged at {self.guard.where or 'the end (non-finite weights)'}; no model or metrics were written, "
                       f"{kept}; start again with a lower --learning-rate (this run: {self.recipe.learning_rate:g}) in another --out")

    # -- export, score, write -------------------------------------------------------------------------

    def export(self) -> keras.Model:
        """model.keras: float32, no optimizer state, built outside any strategy; weights of the --select-on epoch, else averaged, else the last."""
        final = build_resnet50(**self.model_kwargs)
        for layer in self.model.layers:  # frozen stages thaw in the saved model: a later fine-tune chooses its own
            layer.trainable = True
        epochs, ckpt_dir = self.recipe.epochs, self.run_dir / "checkpoint"
        self.chosen = {"by": "the last epoch", "epoch": epochs}
        best = read_best(ckpt_dir) if self.chooser is not None else None
        if best is not None:  # into the model that saved them: a weights file names its groups by layer class (fused or Keras' batch norm)
            self.model.load_weights(best_weights(ckpt_dir))
            by, line = describe_choice(best, epochs)
            self.chosen = {"by": by, **best}
            self.log(line)
        elif self.averager is not None and (averaged := self.averager.apply(self.model)):
            self.chosen = {**averaged, "epoch": epochs}
        final.set_weights(self.model.get_weights())
        self.batchnorm = (recalibrate_batchnorm(final, self.train_ds, self.steps_per_epoch * config.BN_RECALIBRATION_EPOCHS, log=self.log)
                          if self.recipe.recalibrate_bn or self.averager else None)  # what metrics.json records of it
        with atomic_path(self.run_dir / "model.keras", suffix=".keras") as tmp:
            final.save(tmp)
        return final

    def score(self, final) -> dict:
        """metrics.json: the saved model's scores on every split, then what made the run."""
        return {**self._scores(final), "checkpoint": self.chosen, "batchnorm_recalibrated": self.batchnorm, **self._record(final)}

    def _scores(self, final) -> dict:
        result: dict = {}
        for name, (x, y) in (("train", self.train_split), ("val", self.val_split), ("test", (self.signs.test.x, self.signs.test.y))):
            if len(y):
                scores = metrics.summarize(_predict(final, x), y)
                result[f"{name}_accuracy"], result[f"{name}_loss"] = scores["accuracy"], scores["loss"]
        if self.own is not None:
            own = self.own
            parts = [("train", own.train), ("val", own.val)] + [(f"heldout {name}", h) for name, h in own.heldout.items()]
            result["own"] = {name: _part_scores(final, part) for name, part in parts if len(part)}
            result["init"] = self.options.init
        for name, part in self.extra.heldout.items():
            result.setdefault("extra_heldout", {})[name] = _part_scores(final, part)
        return result

    def _record(self, final) -> dict:
        options, signs, timing = self.options, self.signs, self.timing
        return {
            "params": int(final.count_params()),
            "epochs": self.recipe.epochs,
            "seconds_per_epoch": float(np.median(timing)) if timing else None,
            "train_seconds": float(np.sum(timing)),
            # Wall clock of this invocation's epochs, checkpoint writing included.
            "wall_seconds": float(self.wall_seconds),
            "device": self.device,
            "precision": self.precision.as_dict(),
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "dataset": {"source": signs.source, "layout": signs.layout, "sha256": self.data_sha256, "train": len(self.train_split[1]),
                        "val": len(self.val_split[1]), "test": len(signs.test), "own": options.own_data},
            "recipe_name": options.recipe,
            "recipe": dataclasses.asdict(self.recipe),
            "options": dataclasses.asdict(options),
            "seed": options.seed,
        }

    def write(self, result: dict) -> None:
        write_json(self.run_dir / "metrics.json", result)
        write_json(self.run_dir / "history.json", self.history)
        validated = " (validation: your images)" if self.own is not None else " on SIGNS"
        training_curves_png(self.history, self.run_dir / "training_curves.png", title=f"{self.run_dir.name}: ResNet50, {self.options.recipe} recipe{validated}")


def _predict(model, x_uint8: np.ndarray) -> np.ndarray:
    return model.predict(to_model_input(x_uint8), batch_size=config.PREDICT_BATCH, verbose=0)


def _part_scores(model, part: Labelled) -> dict:
    return {"source": part.source, "images": len(part), **metrics.summarize(_predict(model, part.x), part.y)}


def _combined_checksum(signs: Signs, own: OwnSplits | None, others: list[Labelled]) -> str:
    """SIGNS' own checksum when it trains alone; else one over every part the run reads."""
    parts = ([own.train, own.val, *own.heldout.values()] if own is not None else []) + others
    if not parts:
        return signs.checksum()
    digest = hashlib.sha256(signs.checksum().encode())
    for part in parts:
        digest.update(part.checksum().encode())
    return digest.hexdigest()
