"""The `edge-signs` command. Each command is a thin shell over a typed function.

Defaults come from ``edge_signs.config``; user mistakes (``EdgeSignsError``)
become one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import click

from edge_signs import __version__, config
from edge_signs.errors import EdgeSignsError


def _fail(message: str, code: int = 1):
    click.echo(f"edge-signs: error: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn):
    """Turn user mistakes into one line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeSignsError as exc:
            _fail(str(exc))
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def require_tensorflow(what: str) -> None:
    if importlib.util.find_spec("tensorflow") is None:
        raise EdgeSignsError(f"{what} needs TensorFlow, which is not installed: pip install 'edge-signs[train]' (a Pi only needs 'edge-signs[pi]')")


def _log(msg: str) -> None:
    click.echo(msg, err=True)


data_option = click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help=f"SIGNS folder (HDF5 pair or train/ test/ image folders). Default: ${config.DATA_ENV_VAR}, then the Keras cache, else fetched.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-signs")
def main():
    """Train a SIGNS hand-sign classifier, quantize it, and run it on a Raspberry Pi."""


# -- train -----------------------------------------------------------------------------


@main.command()
@data_option
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder for the model, history, curves and metrics.")
@click.option("--recipe", type=click.Choice(config.RECIPES), default=config.RECIPES[0], show_default=True, help="'seed': the original 20-epoch Adam run; 'default': augmented and regularized.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=config.BATCH_SIZE, show_default=True, help="Global batch size (split across replicas).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None, help="Override the recipe's peak learning rate.")
@click.option("--seed", type=int, default=config.SEED, show_default=True)
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=None, help="Dropout before the classifier (override).")
@click.option("--l2", type=click.FloatRange(min=0), default=None, help="L2 penalty on kernels (override).")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=None, help="Override.")
@click.option("--augment/--no-augment", default=None, help="Override the recipe's augmentation.")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=config.VAL_FRACTION, show_default=True, help="Stratified validation split of the training set.")
@click.option("--mixed-precision", is_flag=True, help="Compute in float16 on the GPU (float32 classifier output).")
@click.option("--devices", default=None, help="Comma-separated devices to mirror across, e.g. /gpu:0,/gpu:1 (default: all GPUs TensorFlow sees).")
@click.option("--limit", type=click.IntRange(min=12), default=None, help="Train on a stratified subset of N images (smoke runs).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last finished epoch.")
@friendly_errors
def train(data, out, recipe, epochs, batch_size, learning_rate, seed, dropout, l2, label_smoothing, augment, val_fraction, mixed_precision, devices, limit, resume):
    """Train the ResNet50 on SIGNS and report train/test accuracy and loss."""
    require_tensorflow("training")
    from edge_signs.train import TrainOptions
    from edge_signs.train import train as run_training

    overrides = {"epochs": epochs, "learning_rate": learning_rate, "dropout": dropout, "l2": l2, "label_smoothing": label_smoothing, "augment": augment}
    options = TrainOptions(
        recipe=recipe,
        seed=seed,
        batch_size=batch_size,
        val_fraction=val_fraction,
        mixed_precision=mixed_precision,
        devices=[d.strip() for d in devices.split(",") if d.strip()] if devices else None,
        limit=limit,
        overrides={k: v for k, v in overrides.items() if v is not None},
    )
    try:
        result = run_training(options, out, data=data, resume=resume, log=_log)
    except KeyboardInterrupt:
        _fail(f"interrupted; continue with: edge-signs train --out {out} --resume", 130)
    click.echo(
        f"train accuracy {result['train_accuracy']:.3f} / loss {result['train_loss']:.2f}   "
        f"val accuracy {result.get('val_accuracy', float('nan')):.3f} / loss {result.get('val_loss', float('nan')):.2f}   "
        f"test accuracy {result['test_accuracy']:.3f} / loss {result['test_loss']:.2f}"
    )
    click.echo(f"{result['params']:,} parameters, {result['seconds_per_epoch']:.1f} s/epoch on {result['device']}; wrote {out}/model.keras, metrics.json, history.json, training_curves.png")


# -- quantize ---------------------------------------------------------------------------------


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--fp16", "formats", flag_value="float16", multiple=True, help="float16 weights.")
@click.option("--int8", "formats", flag_value="int8", multiple=True, help="Full-integer int8 (uint8 camera pixels in), calibrated.")
@click.option("--fp32", "formats", flag_value="float32", multiple=True, help="float32 TFLite baseline.")
@click.option("--all", "all_formats", is_flag=True, help="float32, float16 and int8 (the default when no format is named).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default: next to MODEL).")
@click.option("--calibration", type=click.Path(path_type=Path), default=None, help="A folder of your own images (e.g. Pi camera frames) to calibrate int8 instead of the committed manifest.")
@click.option("--manifest", type=click.Path(path_type=Path), default=config.CALIBRATION_MANIFEST, show_default=True, help="Calibration manifest of SIGNS training images.")
@data_option
@friendly_errors
def quantize(model, formats, all_formats, out, calibration, manifest, data):
    """Convert a trained .keras model to float32, float16 and int8 TFLite."""
    require_tensorflow("quantize")
    from edge_signs.quantize import quantize as run_quantize

    chosen = list(config.FORMATS) if all_formats or not formats else [f for f in config.FORMATS if f in formats]
    for path in run_quantize(model, chosen, out_dir=out, calibration_dir=calibration, manifest=manifest, data=data, log=_log):
        click.echo(str(path))


# -- evaluate ---------------------------------------------------------------------------------


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@data_option
@click.option("--threads", type=click.IntRange(min=1), default=config.THREADS, show_default=True, help="Interpreter threads.")
@click.option("--runs", type=click.IntRange(min=1), default=config.LATENCY_RUNS, show_default=True, help="Timed single-image invocations per model.")
@click.option("--warmup", type=click.IntRange(min=0), default=config.LATENCY_WARMUP, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Folder for evaluation.json/.md and confusion PNGs (default: the first model's folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.option("--robustness", is_flag=True, help="Also evaluate under camera-like perturbations (light, colour, noise, blur, JPEG, mirror, shift, rotation, scale).")
@friendly_errors
def evaluate(models, data, threads, runs, warmup, out, as_json, robustness):
    """Compare models (.tflite, .keras) on the SIGNS test set: accuracy, loss, agreement, size, latency."""
    import json
    from dataclasses import asdict

    from edge_signs import evaluate as ev
    from edge_signs.data import resolve_data

    for model in models:
        ev.check_model_path(model)
    signs = resolve_data(data, log=_log)
    reports = ev.evaluate_models(list(models), signs.test.x, signs.test.y, threads=threads, runs=runs, warmup=warmup, log=_log)
    extra = {"data": {"source": signs.source, "sha256": signs.checksum(), "test_images": len(signs.test)}}
    table = ev.markdown_table(reports)
    if robustness:
        _log("robustness (accuracy under each perturbation):")
        results = [ev.robustness(m, signs.test.x, signs.test.y, threads=threads, log=_log) for m in models]
        extra["robustness"] = results
        table += "\n\nRobustness (test accuracy under each camera-like perturbation):\n\n" + ev.robustness_table(results)
    written = ev.write_report(reports, out or Path(models[0]).parent, extra)
    if robustness:
        with open(written[1], "a") as f:  # evaluation.md
            f.write("\n## Robustness\n\n" + ev.robustness_table(extra["robustness"]) + "\n")
    if as_json:
        click.echo(json.dumps([asdict(r) for r in reports] if not robustness else {"models": [asdict(r) for r in reports], "robustness": extra["robustness"]}, indent=2))
    else:
        click.echo(table)
        for r in reports:
            click.echo(f"\n{Path(r.model).name} ({r.format}) confusion matrix, rows true, columns predicted:")
            from edge_signs.plots import confusion_matrix_text

            click.echo(confusion_matrix_text(__import__("numpy").asarray(r.confusion), config.LABELS))
    _log("wrote " + ", ".join(str(p) for p in written))


# -- data ------------------------------------------------------------------------------------


@main.group()
def data():
    """Get the SIGNS dataset."""


@data.command("fetch")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Where to put the course files (default: the Keras dataset cache).")
@friendly_errors
def data_fetch(cache):
    """Download the course's HDF5 files once, verified by hash."""
    from edge_signs.data import fetch_signs

    where = fetch_signs(cache, log=_log)
    click.echo(str(where))


@data.command("info")
@data_option
@friendly_errors
def data_info(data):
    """Say where SIGNS is found and what it holds."""
    import numpy as np

    from edge_signs.data import resolve_data

    signs = resolve_data(data, fetch=False, log=_log)
    click.echo(f"{signs.source} ({signs.layout}): train {len(signs.train)} {np.bincount(signs.train.y).tolist()}, test {len(signs.test)} {np.bincount(signs.test.y).tolist()}; sha256 {signs.checksum()[:16]}")
