"""The options of a training run: their ranges, and which of them a resumed run must keep."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from edge_signs import config
from edge_signs.config import RECIPES, Recipe
from edge_signs.errors import EdgeSignsError


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
        _check_fraction("bn_momentum", recipe.bn_momentum, upper_open=True)
        _check_fraction("average_last", recipe.average_last, upper_open=False)
        _check_fraction("augment_ramp", recipe.augment_ramp, upper_open=False)
        _check_fraction("augment_cooldown", recipe.augment_cooldown, upper_open=False)
        _check_fraction("cooldown_strength", recipe.cooldown_strength, upper_open=False)
        if recipe.augment_ramp + recipe.augment_cooldown > 1:
            raise EdgeSignsError(f"augment_ramp + augment_cooldown must be at most 1 (shares of the epochs), "
                                 f"got {recipe.augment_ramp} + {recipe.augment_cooldown}")
        if not isinstance(recipe.warmup_epochs, int) or recipe.warmup_epochs < 0:
            raise EdgeSignsError(f"warmup_epochs must be an integer >= 0, got {recipe.warmup_epochs}")
        for name, value, known in (("schedule", recipe.schedule, config.SCHEDULES), ("optimizer", recipe.optimizer, config.OPTIMIZERS)):
            if value not in known:
                raise EdgeSignsError(f"{name} '{value}': unknown (expected {' or '.join(known)})")
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
                             ("grayscale", recipe.grayscale, 1.0), ("erase", recipe.erase, 1.0), ("upright", recipe.upright, 1.0),
                             ("close_up", recipe.close_up, 1.0), ("hand_size", recipe.hand_size, 1.0), ("vignette", recipe.vignette, 1.0),
                             ("hand_tone", recipe.hand_tone, 1.0), ("hand_surface", recipe.hand_surface, 1.0)):
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


def saved_options(out_dir: str | os.PathLike) -> TrainOptions | None:
    """The options an unfinished run in ``out_dir`` was started with (None when there is none)."""
    path = Path(out_dir) / "options.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if "mixed_precision" in saved:  # options.json of an older toolkit: a mixed_precision switch instead of --precision
            saved["precision"] = "mixed_float16" if saved.pop("mixed_precision") else "float32"
        return TrainOptions(**saved)
    except (OSError, ValueError, TypeError) as exc:
        raise EdgeSignsError(f"{path}: missing or unreadable run options ({exc}); cannot resume") from None
