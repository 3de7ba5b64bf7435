"""The workstation's commands: train, finetune, quantize, evaluate (TensorFlow, imported only once the inputs are checked)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from edge_signs import config, precheck
from edge_signs import runs as run_folders  # evaluate has a --runs option
from edge_signs.artifacts import check_output_file, dumps, finite_or_none, write_json
from edge_signs.cli_base import (
    OWN_HELP,
    SIGNS_HELP,
    FiniteFloat,
    RecipeSetting,
    data_option,
    friendly_errors,
    given,
    log,
    main,
    renamed,
    threads_option,
    verbose_option,
)
from edge_signs.edge import evaluate as ev
from edge_signs.edge.eval_sets import load_eval_sets, warn_trained_on
from edge_signs.edge.runtime import is_installed
from edge_signs.errors import EdgeSignsError
from edge_signs.runners import KERAS_EXPECTED, ModelKind, Runners
from edge_signs.tfquiet import import_trainer

name_option = click.option("--name", default=config.RUN_NAME, show_default=True, help="Without --out: the run folder's name, before its counter.")


def new_run(command: str, name: str, resume: bool) -> Path:
    """--out's default: a new runs/<command>/<name><N>, said at the start."""
    if resume:
        raise click.UsageError("--resume needs --out RUN_FOLDER (the run to continue)")
    out = run_folders.next_run_dir(command, name)
    log(f"run folder: {out}")
    return out


def _precision(ctx: click.Context, precision: str, mixed_precision: bool) -> str:
    """--precision, with the deprecated --mixed-precision flag as its alias for mixed_float16."""
    if not mixed_precision:
        return precision
    if given(ctx, "precision") and precision != "mixed_float16":
        raise EdgeSignsError(f"--mixed-precision means --precision mixed_float16; it contradicts --precision {precision}")
    log("warning: --mixed-precision is deprecated; use --precision mixed_float16")
    return "mixed_float16"


# -- train -----------------------------------------------------------------------------


def _merge_settings(settings: tuple[tuple[str, object], ...], flags: dict) -> dict:
    """--set FIELD=VALUE pairs and the dedicated flags (--epochs ...) as one dict of recipe overrides."""
    merged = dict(settings)
    for key, value in flags.items():
        if value is None:
            continue
        if key in merged and merged[key] != value:
            raise EdgeSignsError(f"--set {key}={merged[key]} contradicts --{key.replace('_', '-')} {value}")
        merged[key] = value
    return merged


@main.command()
@data_option
@click.option("--out", type=click.Path(path_type=Path), default=None, help=f"Run folder for the model, history, curves and metrics [default: {config.RUNS_DIR}/train/NAME<N>, a new one].")
@name_option
@click.option("--recipe", type=click.Choice(tuple(config.RECIPES)), default=config.DEFAULT_RECIPE, show_default=True, help="'seed': the original 20-epoch Adam run; 'default': wide augmentation for other people's hands, grown over the first quarter of the epochs, weights averaged over the last third; 'camera': camera-like augmentation only, more regularized (the best on SIGNS); 'varied': the default's augmentation with camera's regularization; 'finetune': what the finetune command uses.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=config.BATCH_SIZE, show_default=True, help="Global batch size (split across replicas).")
@click.option("--learning-rate", type=FiniteFloat(0, low_open=True), default=None, help="Override the recipe's peak learning rate.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=config.SEED, show_default=True)
@click.option("--dropout", type=FiniteFloat(0, 1, high_open=True), default=None, help="Dropout before the classifier (override).")
@click.option("--l2", type=FiniteFloat(0), default=None, help="L2 penalty on kernels (override).")
@click.option("--label-smoothing", type=FiniteFloat(0, 1, high_open=True), default=None, help="Override.")
@click.option("--augment/--no-augment", default=None, help="Override the recipe's augmentation.")
@click.option("--set", "settings", multiple=True, type=RecipeSetting(),
              help="Override any recipe field (config.Recipe), e.g. --set rotation=45 --set background_swap=0; repeatable. "
                   "Recorded in options.json; recipe_report groups runs by it.")
@click.option("--val-fraction", type=FiniteFloat(0, 1, high_open=True), default=config.VAL_FRACTION, show_default=True, help="Stratified validation split of the training set.")
@click.option("--precision", type=click.Choice(config.PRECISIONS), default=config.DEFAULT_PRECISION, show_default=True,
              help="Compute precision. auto: mixed_float16 on an NVIDIA GPU with tensor cores, mixed_bfloat16 on a CPU with "
                   "AMX-BF16/AVX512-BF16 (arm64: BF16), else float32. The saved model is float32 either way.")
@click.option("--mixed-precision", is_flag=True, help="Deprecated: the same as --precision mixed_float16.")
@click.option("--devices", default=None, help="Comma-separated devices to mirror across, e.g. /gpu:0,/gpu:1 (default: all GPUs TensorFlow sees).")
@click.option("--limit", type=click.IntRange(min=12), default=None, help="Train on a stratified subset of N images (smoke runs).")
@click.option("--extra", multiple=True, type=click.Path(path_type=Path), help="A labelled folder (<label>/*.jpg) added to the training images; repeatable. Its held-out fifth is reported, never trained on.")
@click.option("--select-on", type=click.Path(path_type=Path), default=None, help="A labelled folder (e.g. other people's hands) whose accuracy chooses the epoch kept; never trained on.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last checkpoint (at most about two minutes old), with its own options.")
@click.pass_context
@verbose_option
@friendly_errors
def train(ctx, data, out, name, recipe, epochs, batch_size, learning_rate, seed, dropout, l2, label_smoothing, augment, settings, val_fraction, precision, mixed_precision, devices,
          limit, extra, select_on, resume):
    """Train the ResNet50 on SIGNS and report train/test accuracy and loss."""
    precheck.check_training(out, resume, data, own=[*extra, *([select_on] if select_on else [])], own_option="--extra/--select-on")
    precision = _precision(ctx, precision, mixed_precision)
    flags = {"epochs": epochs, "learning_rate": learning_rate, "dropout": dropout, "l2": l2, "label_smoothing": label_smoothing, "augment": augment}
    overrides = _merge_settings(settings, flags)
    out = out or new_run("train", name, resume)
    # The trainer imports TensorFlow: only now, and its guard turns a missing one into an install hint.
    trainer = import_trainer("train")
    TrainOptions, saved_options, run_training = trainer.TrainOptions, trainer.saved_options, trainer.train

    fields = {
        "recipe": recipe,
        "seed": seed,
        "batch_size": batch_size,
        "val_fraction": val_fraction,
        "precision": precision,
        "devices": [d.strip() for d in devices.split(",") if d.strip()] if devices else None,
        "limit": limit,
        "extra": [str(folder) for folder in extra],
        "select_on": str(select_on) if select_on else None,
    }
    if resume:
        # A resumed run keeps its own options; what the user typed must agree with them (train() says what differs).
        base = saved_options(out) if out.is_dir() else None
        if base is not None:
            typed = {k: v for k, v in fields.items() if given(ctx, k)}
            typed_overrides = {k: v for k, v in overrides.items() if given(ctx, k) or k in dict(settings)}
            options = dataclasses.replace(base, **typed, overrides={**base.overrides, **typed_overrides})
        else:
            options = None
    else:
        options = TrainOptions(**fields, overrides={k: v for k, v in overrides.items() if v is not None})
    result = run_training(options, out, data=data, resume=resume, log=log)
    click.echo(
        f"train accuracy {result['train_accuracy']:.3f} / loss {result['train_loss']:.2f}   "
        f"val accuracy {result.get('val_accuracy', float('nan')):.3f} / loss {result.get('val_loss', float('nan')):.2f}   "
        f"test accuracy {result['test_accuracy']:.3f} / loss {result['test_loss']:.2f}"
    )
    click.echo(f"{result['params']:,} parameters, {result['seconds_per_epoch']:.1f} s/epoch on {result['device']}; wrote {out}/model.keras, metrics.json, history.json, training_curves.png")


@main.command()
@click.option("--init", "init", type=click.Path(path_type=Path), default=None, help="The trained model.keras to start from (required unless --resume).")
@click.option("--own", "own", type=click.Path(path_type=Path), multiple=True, help=OWN_HELP)
@click.option("--out", type=click.Path(path_type=Path), default=None, help=f"Run folder for the fine-tuned model, history, curves and metrics [default: {config.RUNS_DIR}/finetune/NAME<N>].")
@name_option
@click.option("--signs", "signs_dir", type=click.Path(path_type=Path), default=None, help=f"{SIGNS_HELP} Mixed into every batch.")
@click.option("--signs-mix", type=FiniteFloat(0, 1, high_open=True), default=None, help=f"Fraction of each batch drawn from SIGNS, so its signs are not forgotten [recipe: {config.RECIPES[config.FINETUNE_RECIPE].signs_mix}].")
@click.option("--freeze-stages", type=click.IntRange(0, config.STAGE_COUNT), default=None, help=f"Leading stages kept as they are (1: stem ... 5: every conv layer) [recipe: {config.RECIPES[config.FINETUNE_RECIPE].freeze_stages}].")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"[recipe: {config.RECIPES[config.FINETUNE_RECIPE].epochs}]")
@click.option("--learning-rate", type=FiniteFloat(0, low_open=True), default=None, help=f"Peak learning rate [recipe: {config.RECIPES[config.FINETUNE_RECIPE].learning_rate:g}].")
@click.option("--batch-size", type=click.IntRange(min=1), default=config.BATCH_SIZE, show_default=True)
@click.option("--val-fraction", type=FiniteFloat(0, 1, high_open=True), default=config.VAL_FRACTION, show_default=True, help="Of your images' sessions/photos (after the held-out ones), this fraction validates.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=config.SEED, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted fine-tuning run in --out with its own options.")
@click.pass_context
@verbose_option
@renamed("own", "--data", "--own", multiple=True)
@friendly_errors
def finetune(ctx, init, own, out, name, signs_dir, signs_mix, freeze_stages, epochs, learning_rate, batch_size, val_fraction, seed, resume):
    """Fine-tune a trained model on your own images (with SIGNS mixed in), in minutes on a CPU.

    A fixed fifth of each folder's sessions/photos is held out and never trained on:
    score it with 'edge-signs evaluate MODEL --own FOLDER --split heldout'.
    """
    if not resume and init is None:
        raise click.UsageError("--init MODEL.keras is required (the trained model to start from)")
    if not resume and not own:
        raise click.UsageError("--own FOLDER is required (your own labelled images; repeat for several)")
    precheck.check_training(out, resume, signs_dir, init, own)
    out = out or new_run("finetune", name, resume)
    trainer = import_trainer("train")
    TrainOptions, saved_options, run_training = trainer.TrainOptions, trainer.saved_options, trainer.train

    overrides = {"epochs": epochs, "learning_rate": learning_rate, "signs_mix": signs_mix, "freeze_stages": freeze_stages}
    fields = {"seed": seed, "batch_size": batch_size, "val_fraction": val_fraction, "init": str(init) if init else None, "own_data": [str(d) for d in own]}
    if resume:
        base = saved_options(out) if out.is_dir() else None
        options = None
        if base is not None:
            typed = {k: v for k, v in fields.items() if given(ctx, "own" if k == "own_data" else k)}
            options = dataclasses.replace(base, **typed, overrides={**base.overrides, **{k: v for k, v in overrides.items() if given(ctx, k)}})
    else:
        options = TrainOptions(recipe=config.FINETUNE_RECIPE, **fields, overrides={k: v for k, v in overrides.items() if v is not None})
    result = run_training(options, out, data=signs_dir, resume=resume, log=log)
    for name, scores in result.get("own", {}).items():
        click.echo(f"your images, {name}: accuracy {scores['accuracy']:.3f} / loss {scores['loss']:.2f} ({scores['images']} images)")
    click.echo(f"SIGNS test accuracy {result['test_accuracy']:.3f} / loss {result['test_loss']:.2f}")
    click.echo(f"{result['train_seconds'] / 60:.1f} min of training ({result['seconds_per_epoch']:.1f} s/epoch) on {result['device']}; "
               f"wrote {out}/model.keras, metrics.json, history.json, training_curves.png")


# -- quantize ---------------------------------------------------------------------------------


@main.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--fp16", "formats", flag_value="float16", multiple=True, help="float16 weights.")
@click.option("--int8", "formats", flag_value="int8", multiple=True, help="Full-integer int8 (uint8 camera pixels in), calibrated.")
@click.option("--fp32", "formats", flag_value="float32", multiple=True, help="float32 TFLite baseline.")
@click.option("--all", "all_formats", is_flag=True, help="float32, float16 and int8 (the default when no format is named).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default: next to MODEL).")
@click.option("--own", "calibration", type=click.Path(path_type=Path), default=None, help="A folder of your own images (e.g. Pi camera frames) to calibrate int8 on instead of the committed manifest.")
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="Calibration manifest of SIGNS training images (default: calibration/manifest.csv).")
@data_option
@verbose_option
@renamed("calibration", "--calibration", "--own")
@friendly_errors
def quantize(model, formats, all_formats, out, calibration, manifest, data):
    """Convert a trained .keras model (default: the newest run's) to float32, float16 and int8 TFLite."""
    if model is None:
        model = run_folders.newest_keras_model()
        log(f"model: {model} (the newest run)")
    chosen = list(config.FORMATS) if all_formats or not formats else [f for f in config.FORMATS if f in formats]
    precheck.check_quantize(model, chosen, out, calibration, manifest, data)
    run_quantize = import_trainer("quantize").quantize  # TensorFlow, behind the trainer's guard
    for path in run_quantize(model, chosen, out_dir=out, calibration_dir=calibration, manifest=manifest, data=data, log=log):
        click.echo(str(path))


# -- evaluate ---------------------------------------------------------------------------------


@main.command()
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--signs", "signs", type=click.Path(path_type=Path), multiple=True, help=f"{SIGNS_HELP} Its test set is scored.")
@click.option("--own", "own", type=click.Path(path_type=Path), multiple=True,
              help=f"{OWN_HELP} Scored beside SIGNS, one table row per dataset (with --signs too, SIGNS comes first).")
@click.option("--split", type=click.Choice(config.OWN_SPLITS), default="all", show_default=True,
              help="Of your own folders: all images, the held-out sessions/photos that 'finetune' never trains on, or the rest.")
@threads_option
@click.option("--runs", type=click.IntRange(min=1), default=config.LATENCY_RUNS, show_default=True, help="Timed single-image invocations per model.")
@click.option("--warmup", type=click.IntRange(min=0), default=config.LATENCY_WARMUP, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Folder for evaluation.json/.md and confusion PNGs (default: the first model's folder).")
@click.option("--json", "json_path", is_flag=False, flag_value="-", default=None, metavar="[FILE]",
              help="Write the results as JSON to FILE; '--json' alone (or '-') prints them instead of the table.")
@click.option("--robustness", is_flag=True, help="Also evaluate under camera-like perturbations (light, colour, noise, blur, JPEG, mirror, shift, rotation, scale).")
@verbose_option
@renamed("own", "--data", "--signs or --own", multiple=True)
@friendly_errors
def evaluate(models, signs, own, split, threads, runs, warmup, out, json_path, robustness):
    """Compare models (.tflite, .keras; default: the newest run's .tflite files) on the SIGNS test set or your own images: accuracy, loss, agreement, size, latency."""
    if not models:
        models = run_folders.newest_tflite_models()
        log(f"models: {', '.join(map(str, models))} (the newest run)")
    runners = evaluate_runners(models)
    for model in models:
        runners.check(model)
    out = out or Path(models[0]).parent
    ev.check_report_outputs(list(models), out)
    if json_path not in (None, "-"):
        check_output_file(json_path, "--json", inputs=list(models))
    data = [*signs, *own]  # each folder's layout says which it is: SIGNS gives its test set, your own folders --split
    sets = load_eval_sets(data, split, log=log)
    warn_trained_on(list(models), data, split, log)
    result = ev.run_evaluation(list(models), sets, threads=threads, runs=runs, warmup=warmup, with_robustness=robustness, runners=runners, log=log)
    written = ev.write_report(result, out)
    if json_path == "-":
        click.echo(dumps(finite_or_none(result["models"]), indent=2))
    else:
        click.echo(result["markdown"])
    if json_path not in (None, "-"):
        write_json(json_path, finite_or_none(result["models"]))
        written.append(json_path)
    log("wrote " + ", ".join(str(p) for p in written))


def evaluate_runners(models) -> Runners:
    """.tflite files, and Keras files where TensorFlow is installed or one is named.

    A Keras file's cheap check needs no TensorFlow (precheck.check_keras_file), so every file
    is checked first; the trainer (TensorFlow, or its install hint) is imported only when a
    Keras file is opened or an int8 file loses accuracy.
    """
    runners = ev.edge_runners()
    if is_installed("tensorflow") or any(Path(m).suffix in config.KERAS_SUFFIXES for m in models):
        runners.register(ModelKind(config.KERAS_SUFFIXES, KERAS_EXPECTED, precheck.check_keras_file,
                                   lambda path, threads, backend: import_trainer("evaluate").keras_runner(path, threads, backend)))
        runners.diagnose_int8 = lambda losses, signs, log: import_trainer("evaluate").diagnose_int8(losses, signs, log)
    return runners
