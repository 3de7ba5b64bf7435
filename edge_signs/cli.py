"""The `edge-signs` command. Each command is a thin shell over a typed function.

Defaults come from ``edge_signs.config``; user mistakes (``EdgeSignsError``)
become one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from pathlib import Path

import click
import numpy as np

from edge_signs import __version__, config
from edge_signs.artifacts import dumps, finite_or_none
from edge_signs.data import fetch_signs, resolve_data
from edge_signs.edge import evaluate as ev
from edge_signs.edge.events import EventOptions
from edge_signs.edge.live import LiveOptions, parse_roi, run_live
from edge_signs.edge.preprocess import Roi
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
            _fail(str(exc), exc.exit_code)
        except OSError as exc:  # an unwritable folder, a full disk: name the file, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper


def _log(msg: str) -> None:
    click.echo(msg, err=True)


class FiniteFloat(click.ParamType):
    """A float in a range, where NaN and infinity are refused (click's FloatRange lets NaN through)."""

    name = "float"

    def __init__(self, low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False):
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.low is not None and (x < self.low or (self.low_open and x == self.low)):
            self.fail(f"{value} must be {'>' if self.low_open else '>='} {self.low:g}", param, ctx)
        if self.high is not None and (x > self.high or (self.high_open and x == self.high)):
            self.fail(f"{value} must be {'<' if self.high_open else '<='} {self.high:g}", param, ctx)
        return x


def _precision(ctx: click.Context, precision: str, mixed_precision: bool) -> str:
    """--precision, with the deprecated --mixed-precision flag as its alias for mixed_float16."""
    if not mixed_precision:
        return precision
    if _given(ctx, "precision") and precision != "mixed_float16":
        raise EdgeSignsError(f"--mixed-precision means --precision mixed_float16; it contradicts --precision {precision}")
    _log("warning: --mixed-precision is deprecated; use --precision mixed_float16")
    return "mixed_float16"


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user typed this option (rather than getting its default)."""
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


data_option = click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help=f"SIGNS folder (HDF5 pair or train/ test/ image folders). Default: ${config.DATA_ENV_VAR}, then the Keras cache, else fetched.",
)


def event_options(fn):
    """--hold, --events, --exec, --mqtt, --ha-discovery (docs/events.md): one EventOptions, passed to ``fn`` as ``events``."""

    @functools.wraps(fn)
    def wrapper(*args, hold, events_path, exec_command, mqtt, ha_discovery, **kwargs):
        return fn(*args, events=EventOptions(hold, events_path, exec_command, mqtt, ha_discovery), **kwargs)

    options = [
        click.option("--hold", type=FiniteFloat(0), default=config.EVENT_HOLD_S, show_default=True,
                     help="Seconds a sign must stay the smoothed prediction to become an event (shorter ones, such as a hand moving between signs, make none)."),
        click.option("--events", "events_path", type=click.Path(path_type=Path), default=None,
                     help="Write one JSON object per event (held, released) as JSON lines; a FIFO or /dev/stdout is written as events come."),
        click.option("--exec", "exec_command", default=None, metavar="COMMAND",
                     help=f"Run COMMAND (sh -c) for every held sign, with EDGE_SIGNS_SIGN, EDGE_SIGNS_CONFIDENCE, ... in its environment; never waits for it (killed after {config.EXEC_TIMEOUT_S:g} s)."),
        click.option("--mqtt", default=None, metavar="mqtt[s]://[USER:PASS@]HOST[:PORT]/TOPIC",
                     help=f"Publish events to TOPIC/event, the held sign to TOPIC/state (retained) and TOPIC/availability; needs the [mqtt] extra. Password also from ${config.MQTT_PASSWORD_ENV}."),
        click.option("--ha-discovery", is_flag=True, help="With --mqtt: announce the sign as a Home Assistant sensor (MQTT discovery)."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-signs")
def main():
    """Train a SIGNS hand-sign classifier, quantize it, and run it on a Raspberry Pi."""


# -- train -----------------------------------------------------------------------------


@main.command()
@data_option
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder for the model, history, curves and metrics.")
@click.option("--recipe", type=click.Choice(tuple(config.RECIPES)), default=config.DEFAULT_RECIPE, show_default=True, help="'seed': the original 20-epoch Adam run; 'default': augmented and regularized.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override the recipe's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), default=config.BATCH_SIZE, show_default=True, help="Global batch size (split across replicas).")
@click.option("--learning-rate", type=FiniteFloat(0, low_open=True), default=None, help="Override the recipe's peak learning rate.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=config.SEED, show_default=True)
@click.option("--dropout", type=FiniteFloat(0, 1, high_open=True), default=None, help="Dropout before the classifier (override).")
@click.option("--l2", type=FiniteFloat(0), default=None, help="L2 penalty on kernels (override).")
@click.option("--label-smoothing", type=FiniteFloat(0, 1, high_open=True), default=None, help="Override.")
@click.option("--augment/--no-augment", default=None, help="Override the recipe's augmentation.")
@click.option("--val-fraction", type=FiniteFloat(0, 1, high_open=True), default=config.VAL_FRACTION, show_default=True, help="Stratified validation split of the training set.")
@click.option("--precision", type=click.Choice(config.PRECISIONS), default=config.DEFAULT_PRECISION, show_default=True,
              help="Compute precision. auto: mixed_float16 on an NVIDIA GPU with tensor cores, mixed_bfloat16 on a CPU with "
                   "AMX-BF16/AVX512-BF16 (arm64: BF16), else float32. The saved model is float32 either way.")
@click.option("--mixed-precision", is_flag=True, help="Deprecated: the same as --precision mixed_float16.")
@click.option("--devices", default=None, help="Comma-separated devices to mirror across, e.g. /gpu:0,/gpu:1 (default: all GPUs TensorFlow sees).")
@click.option("--limit", type=click.IntRange(min=12), default=None, help="Train on a stratified subset of N images (smoke runs).")
@click.option("--extra", multiple=True, type=click.Path(path_type=Path), help="A labelled folder (<label>/*.jpg) added to the training images; repeatable. Its held-out fifth is reported, never trained on.")
@click.option("--select-on", type=click.Path(path_type=Path), default=None, help="A labelled folder (e.g. other people's hands) whose accuracy chooses the epoch kept; never trained on.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out from its last finished epoch, with its own options.")
@click.pass_context
@friendly_errors
def train(ctx, data, out, recipe, epochs, batch_size, learning_rate, seed, dropout, l2, label_smoothing, augment, val_fraction, precision, mixed_precision, devices, limit, extra, select_on, resume):
    """Train the ResNet50 on SIGNS and report train/test accuracy and loss."""
    overrides = {"epochs": epochs, "learning_rate": learning_rate, "dropout": dropout, "l2": l2, "label_smoothing": label_smoothing, "augment": augment}
    fields = {
        "recipe": recipe,
        "seed": seed,
        "batch_size": batch_size,
        "val_fraction": val_fraction,
        "precision": _precision(ctx, precision, mixed_precision),
        "devices": [d.strip() for d in devices.split(",") if d.strip()] if devices else None,
        "limit": limit,
        "extra": [str(folder) for folder in extra],
        "select_on": str(select_on) if select_on else None,
    }
    # The trainer imports TensorFlow: only here, after the options are checked, and its guard turns a missing one into an install hint.
    from edge_signs.trainer.train import TrainOptions, saved_options
    from edge_signs.trainer.train import train as run_training

    if resume:
        # A resumed run keeps its own options; what the user typed must agree with them (train() says what differs).
        base = saved_options(out) if out.is_dir() else None
        if base is not None:
            given = {k: v for k, v in fields.items() if _given(ctx, k)}
            given_overrides = {k: v for k, v in overrides.items() if _given(ctx, k)}
            options = dataclasses.replace(base, **given, overrides={**base.overrides, **given_overrides})
        else:
            options = None
    else:
        options = TrainOptions(**fields, overrides={k: v for k, v in overrides.items() if v is not None})
    result = run_training(options, out, data=data, resume=resume, log=_log)
    click.echo(
        f"train accuracy {result['train_accuracy']:.3f} / loss {result['train_loss']:.2f}   "
        f"val accuracy {result.get('val_accuracy', float('nan')):.3f} / loss {result.get('val_loss', float('nan')):.2f}   "
        f"test accuracy {result['test_accuracy']:.3f} / loss {result['test_loss']:.2f}"
    )
    click.echo(f"{result['params']:,} parameters, {result['seconds_per_epoch']:.1f} s/epoch on {result['device']}; wrote {out}/model.keras, metrics.json, history.json, training_curves.png")


@main.command()
@click.option("--init", "init", type=click.Path(path_type=Path), default=None, help="The trained model.keras to start from (required unless --resume).")
@click.option("--data", "own", type=click.Path(path_type=Path), multiple=True, help="A folder of your own labelled images (<label>/*.jpg, e.g. from 'edge-signs collect'); repeat to combine folders.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run folder for the fine-tuned model, history, curves and metrics.")
@click.option("--signs", "signs_dir", type=click.Path(path_type=Path), default=None, help=f"SIGNS folder mixed into every batch. Default: ${config.DATA_ENV_VAR}, then the Keras cache, else fetched.")
@click.option("--signs-mix", type=FiniteFloat(0, 1, high_open=True), default=None, help=f"Fraction of each batch drawn from SIGNS, so its signs are not forgotten [recipe: {config.RECIPES[config.FINETUNE_RECIPE].signs_mix}].")
@click.option("--freeze-stages", type=click.IntRange(0, config.STAGE_COUNT), default=None, help=f"Leading stages kept as they are (1: stem ... 5: every conv layer) [recipe: {config.RECIPES[config.FINETUNE_RECIPE].freeze_stages}].")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"[recipe: {config.RECIPES[config.FINETUNE_RECIPE].epochs}]")
@click.option("--learning-rate", type=FiniteFloat(0, low_open=True), default=None, help=f"Peak learning rate [recipe: {config.RECIPES[config.FINETUNE_RECIPE].learning_rate:g}].")
@click.option("--batch-size", type=click.IntRange(min=1), default=config.BATCH_SIZE, show_default=True)
@click.option("--val-fraction", type=FiniteFloat(0, 1, high_open=True), default=config.VAL_FRACTION, show_default=True, help="Of your images' sessions/photos (after the held-out ones), this fraction validates.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=config.SEED, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted fine-tuning run in --out with its own options.")
@click.pass_context
@friendly_errors
def finetune(ctx, init, own, out, signs_dir, signs_mix, freeze_stages, epochs, learning_rate, batch_size, val_fraction, seed, resume):
    """Fine-tune a trained model on your own images (with SIGNS mixed in), in minutes on a CPU.

    A fixed fifth of each folder's sessions/photos is held out and never trained on:
    score it with 'edge-signs evaluate MODEL --data FOLDER --split heldout'.
    """
    from edge_signs.trainer.train import TrainOptions, saved_options
    from edge_signs.trainer.train import train as run_training

    overrides = {"epochs": epochs, "learning_rate": learning_rate, "signs_mix": signs_mix, "freeze_stages": freeze_stages}
    fields = {"seed": seed, "batch_size": batch_size, "val_fraction": val_fraction, "init": str(init) if init else None, "own_data": [str(d) for d in own]}
    if resume:
        base = saved_options(out) if out.is_dir() else None
        options = None
        if base is not None:
            given = {k: v for k, v in fields.items() if _given(ctx, "own" if k == "own_data" else k)}
            options = dataclasses.replace(base, **given, overrides={**base.overrides, **{k: v for k, v in overrides.items() if _given(ctx, k)}})
    else:
        if init is None:
            raise click.UsageError("--init MODEL.keras is required (the trained model to start from)")
        if not own:
            raise click.UsageError("--data FOLDER is required (your own labelled images; repeat for several)")
        options = TrainOptions(recipe=config.FINETUNE_RECIPE, **fields, overrides={k: v for k, v in overrides.items() if v is not None})
    result = run_training(options, out, data=signs_dir, resume=resume, log=_log)
    for name, scores in result.get("own", {}).items():
        click.echo(f"your images, {name}: accuracy {scores['accuracy']:.3f} / loss {scores['loss']:.2f} ({scores['images']} images)")
    click.echo(f"SIGNS test accuracy {result['test_accuracy']:.3f} / loss {result['test_loss']:.2f}")
    click.echo(f"{result['train_seconds'] / 60:.1f} min of training ({result['seconds_per_epoch']:.1f} s/epoch) on {result['device']}; "
               f"wrote {out}/model.keras, metrics.json, history.json, training_curves.png")


# -- quantize ---------------------------------------------------------------------------------


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--fp16", "formats", flag_value="float16", multiple=True, help="float16 weights.")
@click.option("--int8", "formats", flag_value="int8", multiple=True, help="Full-integer int8 (uint8 camera pixels in), calibrated.")
@click.option("--fp32", "formats", flag_value="float32", multiple=True, help="float32 TFLite baseline.")
@click.option("--all", "all_formats", is_flag=True, help="float32, float16 and int8 (the default when no format is named).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder (default: next to MODEL).")
@click.option("--calibration", type=click.Path(path_type=Path), default=None, help="A folder of your own images (e.g. Pi camera frames) to calibrate int8 instead of the committed manifest.")
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="Calibration manifest of SIGNS training images (default: calibration/manifest.csv).")
@data_option
@friendly_errors
def quantize(model, formats, all_formats, out, calibration, manifest, data):
    """Convert a trained .keras model to float32, float16 and int8 TFLite."""
    from edge_signs.trainer.quantize import (
        quantize as run_quantize,  # TensorFlow, behind the trainer's guard
    )

    chosen = list(config.FORMATS) if all_formats or not formats else [f for f in config.FORMATS if f in formats]
    for path in run_quantize(model, chosen, out_dir=out, calibration_dir=calibration, manifest=manifest, data=data, log=_log):
        click.echo(str(path))


# -- evaluate ---------------------------------------------------------------------------------


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--data", "data", type=click.Path(path_type=Path), multiple=True,
              help=f"A SIGNS folder (its test set is scored) or a folder of your own labelled images (<label>/*.jpg); repeat to score "
                   f"datasets side by side. Default: SIGNS from ${config.DATA_ENV_VAR}, the Keras cache, else fetched.")
@click.option("--split", type=click.Choice(config.OWN_SPLITS), default="all", show_default=True,
              help="Of your own folders: all images, the held-out sessions/photos that 'finetune' never trains on, or the rest.")
@click.option("--threads", type=click.IntRange(min=1), default=config.THREADS, show_default=True, help="Interpreter threads.")
@click.option("--runs", type=click.IntRange(min=1), default=config.LATENCY_RUNS, show_default=True, help="Timed single-image invocations per model.")
@click.option("--warmup", type=click.IntRange(min=0), default=config.LATENCY_WARMUP, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Folder for evaluation.json/.md and confusion PNGs (default: the first model's folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.option("--robustness", is_flag=True, help="Also evaluate under camera-like perturbations (light, colour, noise, blur, JPEG, mirror, shift, rotation, scale).")
@friendly_errors
def evaluate(models, data, split, threads, runs, warmup, out, as_json, robustness):
    """Compare models (.tflite, .keras) on the SIGNS test set or your own images: accuracy, loss, agreement, size, latency."""
    for model in models:
        ev.check_model_path(model)
    out = out or Path(models[0]).parent
    ev.check_report_outputs(list(models), out)
    sets = ev.load_eval_sets(data, split, log=_log)
    ev.warn_trained_on(list(models), data, split, _log)
    result = ev.run_evaluation(list(models), sets, threads=threads, runs=runs, warmup=warmup, with_robustness=robustness, log=_log)
    written = ev.write_report(result, out)
    if as_json:
        click.echo(dumps(finite_or_none(result["models"]), indent=2))
    else:
        click.echo(result["markdown"])
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
    where = fetch_signs(cache, log=_log)
    click.echo(str(where))


@data.command("info")
@data_option
@friendly_errors
def data_info(data):
    """Say where SIGNS is found and what it holds."""
    signs = resolve_data(data, fetch=False, log=_log)
    click.echo(f"{signs.source} ({signs.layout}): train {len(signs.train)} {np.bincount(signs.train.y).tolist()}, test {len(signs.test)} {np.bincount(signs.test.y).tolist()}; sha256 {signs.checksum()[:16]}")


# -- live ------------------------------------------------------------------------------------


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--camera", type=click.IntRange(min=0), default=None, help=f"OpenCV camera index, e.g. a USB webcam (the default source: {config.CAMERA_INDEX}).")
@click.option("--picamera", is_flag=True, help="Raspberry Pi Camera Module through picamera2.")
@click.option("--video", default=None, metavar="PATH|URL", help="A video file, stream URL or GStreamer pipeline (anything cv2.VideoCapture opens).")
@click.option("--testset", is_flag=True, help="Replay the SIGNS test images as frames, with their true labels.")
@click.option("--width", type=click.IntRange(min=1), default=config.CAMERA_WIDTH, show_default=True, help="Camera frame width.")
@click.option("--height", type=click.IntRange(min=1), default=config.CAMERA_HEIGHT, show_default=True, help="Camera frame height.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=config.CAMERA_FPS, show_default=True, help="Camera frame rate to ask for.")
@click.option("--roi", default=None, metavar="SIZE[,CX,CY]", help="Square region classified, as fractions: side of the shorter frame side, centre x, y (default: 1,0.5,0.5, the largest centred square).")
@click.option("--smoothing", type=click.IntRange(min=1), default=config.SMOOTHING_FRAMES, show_default=True, help="Average the probabilities of the last N frames.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=config.CONFIDENCE_THRESHOLD, show_default=True, help="Below this smoothed confidence: 'no sign'.")
@click.option("--headless", is_flag=True, help="No window; a status line every --status-every seconds.")
@click.option("--record", type=click.Path(path_type=Path), default=None, help="Write the annotated video: .avi (MJPG) or .mp4 (mp4v).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write one JSON object per frame (JSON lines).")
@click.option("--labels", "labels_csv", type=click.Path(path_type=Path), default=None, help="--video ground truth CSV: start_frame,end_frame,label (0-based, inclusive); other frames are not scored.")
@click.option("--threads", type=click.IntRange(min=1), default=config.THREADS, show_default=True, help="Interpreter threads.")
@data_option
@click.option("--loop", is_flag=True, help="Start --testset or a --video file again at its end (soak tests; stop with --max-frames or Ctrl-C).")
@click.option("--report", type=click.Path(path_type=Path), default=None, help="Folder for live_summary.json and, with known labels, confusion_matrix.png.")
@click.option("--snapshot-dir", type=click.Path(path_type=Path), default=Path("."), show_default=True, help="Where the window's 's' key saves PNG snapshots.")
@click.option("--status-every", type=click.FloatRange(min=0), default=config.STATUS_INTERVAL_S, show_default=True, help="Seconds between --headless status lines (0: none).")
@click.option("--capture-thread/--no-capture-thread", default=True, show_default=True, help="Read cameras and streams in a background thread that keeps only the newest frame.")
@click.option("--serve", default=None, metavar="[HOST:]PORT", help=f"Serve a page with the annotated video and the prediction to a browser (/, /stream.mjpg, /status). Binds {config.SERVE_HOST} unless HOST is given, e.g. 0.0.0.0:8080 for the network (then a token is required).")
@click.option("--token", default=None, envvar=config.SERVE_TOKEN_ENV, show_envvar=True, help="The token every --serve request must carry (?token= or Authorization: Bearer); default: a random one when HOST is not loopback.")
@event_options
@click.pass_context
@friendly_errors
def live(ctx, model, camera, picamera, video, testset, width, height, fps, roi, smoothing, threshold, headless, record, max_frames, json_path, labels_csv, threads, data, loop, report, snapshot_dir, status_every, capture_thread, serve, token, events):
    """Classify hand signs live from a camera, a video or the test set (q/Esc quits, s saves a snapshot).

    Ends with a summary: frames, FPS, inference and overhead times, and with known
    labels (--testset, --video --labels) accuracy and a confusion matrix.
    """
    options = LiveOptions(
        camera=camera, picamera=picamera, video=video, testset=testset, width=width, height=height, fps=fps,
        roi=parse_roi(roi) if roi is not None else Roi(), smoothing=smoothing, threshold=threshold, headless=headless,
        record=record, max_frames=max_frames, json_path=json_path, labels_csv=labels_csv, threads=threads, data=data,
        status_interval=status_every, loop=loop, report=report, snapshot_dir=snapshot_dir, capture_thread=capture_thread,
        # A token exported in the environment waits for --serve; only a typed --token without it is a mistake.
        serve=serve, token=token if serve is not None or _given(ctx, "token") else None, events=events,
    )
    summary = run_live(model, options, log=_log)
    click.echo(summary.text(), nl=False)


# -- collect ----------------------------------------------------------------------------------


@main.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help=f"Dataset folder: crops go to OUT/<label>/, a row per crop to OUT/{config.COLLECT_CSV}.")
@click.option("--camera", type=click.IntRange(min=0), default=None, help=f"OpenCV camera index, e.g. a USB webcam (the default source: {config.CAMERA_INDEX}).")
@click.option("--picamera", is_flag=True, help="Raspberry Pi Camera Module through picamera2.")
@click.option("--video", default=None, metavar="PATH|URL", help="A video file, stream URL or GStreamer pipeline (anything cv2.VideoCapture opens).")
@click.option("--labels", "labels_csv", type=click.Path(path_type=Path), default=None, help="With --video: save the frames of every labelled range (start_frame,end_frame,label CSV, as live --labels) under their labels; no window.")
@click.option("--width", type=click.IntRange(min=1), default=config.COLLECT_CAMERA_WIDTH, show_default=True, help="Camera frame width.")
@click.option("--height", type=click.IntRange(min=1), default=config.COLLECT_CAMERA_HEIGHT, show_default=True, help="Camera frame height.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=config.CAMERA_FPS, show_default=True, help="Camera frame rate to ask for.")
@click.option("--roi", default=None, metavar="SIZE[,CX,CY]", help="The square saved, as live's --roi (default: 1,0.5,0.5, the largest centred square).")
@click.option("--headless", is_flag=True, help="No window: count down, save --count crops of --label at --interval, stop.")
@click.option("--label", default=None, metavar="L", help=f"--headless: the label of every crop ({', '.join(config.LABELS)}); with a window, the first burst's label.")
@click.option("--count", type=click.IntRange(min=1), default=None, help=f"--headless: crops to save [default: {config.COLLECT_COUNT}]; with a window, crops per burst (default: until b).")
@click.option("--interval", type=FiniteFloat(0), default=None, help=f"Seconds between a burst's crops, of source time (video files: frame number / fps) [default: {config.COLLECT_INTERVAL_S:g}; --labels: every frame].")
@click.option("--countdown", type=FiniteFloat(0), default=config.COLLECT_COUNTDOWN_S, show_default=True, help="--headless: seconds counted down before the first crop.")
@click.option("--size", type=click.IntRange(min=8), default=config.COLLECT_SIZE, show_default=True, help="Side of the saved square crop, pixels.")
@click.option("--quality", type=click.IntRange(1, 100), default=config.COLLECT_JPEG_QUALITY, show_default=True, help="JPEG quality.")
@click.option("--capture-thread/--no-capture-thread", default=True, show_default=True, help="Read cameras and streams in a background thread that keeps only the newest frame.")
@event_options
@friendly_errors
def collect(out, camera, picamera, video, labels_csv, width, height, fps, roi, headless, label, count, interval, countdown, size, quality, capture_thread, events):
    """Save hand-sign crops as a labelled image folder, OUT/<label>/*.jpg (keys 0-5 save, b burst, q/Esc quits).

    Never overwrites: each run is a session, and files are named <session>_<NNNNN>.jpg.
    Ends with the crops saved per class and the totals in OUT.
    """
    from edge_signs.edge.collect import CollectOptions, run_collect

    options = CollectOptions(
        out=out, camera=camera, picamera=picamera, video=video, labels_csv=labels_csv, width=width, height=height, fps=fps,
        roi=parse_roi(roi) if roi is not None else Roi(), headless=headless, label=label, count=count, interval=interval,
        countdown=countdown, size=size, quality=quality, capture_thread=capture_thread, events=events,
    )
    summary = run_collect(options, log=_log)
    click.echo(summary.text(), nl=False)
    if summary.error is not None:
        _fail(summary.error)


# -- teach ------------------------------------------------------------------------------------


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "folder", type=click.Path(path_type=Path), default=None, help="A folder of your own labelled images (<label>/*.jpg, e.g. from 'edge-signs collect').")
@click.option("--camera", type=click.IntRange(min=0), default=None, help="Instead of --data: teach in a window from this OpenCV camera (keys 0-5 teach the frame shown, q ends).")
@click.option("--picamera", is_flag=True, help="The same from the Raspberry Pi Camera Module.")
@click.option("--video", default=None, metavar="PATH", help="The same from a video; with --labels, headless: each labelled frame is classified, then taught.")
@click.option("--labels", "labels_csv", type=click.Path(path_type=Path), default=None, help="With --video: start_frame,end_frame,label CSV (as live --labels).")
@click.option("--roi", default=None, metavar="SIZE[,CX,CY]", help="The square classified, as live's --roi.")
@click.option("--save", type=click.Path(path_type=Path), default=None, help="With a window: keep each taught frame's crop in this folder, as 'edge-signs collect' does.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The personal .tflite file to write (its .json beside it).")
@click.option("--per-sign", type=click.IntRange(min=1), default=None, help="Fit on N frames of each sign drawn from the folder's training part (default: all of it).")
@click.option("--l2", type=FiniteFloat(0), default=config.TEACH_L2, show_default=True, help="L2 penalty on the head's weights, in units of the features' mean square.")
@click.option("--prior/--no-prior", default=config.TEACH_PRIOR, show_default=True, help="Penalize the distance to the model's own head (--prior) or to zero.")
@click.option("--signs", "signs_dir", type=click.Path(path_type=Path), default=None, help=f"SIGNS folder mixed in. Default: ${config.DATA_ENV_VAR} or the Keras cache, if SIGNS is there (never fetched).")
@click.option("--signs-per-sign", type=click.IntRange(min=0), default=config.TEACH_SIGNS_PER_SIGN, show_default=True, help="SIGNS training images of each sign mixed in (0: none).")
@click.option("--signs-share", type=FiniteFloat(0, 1, high_open=True), default=config.TEACH_SIGNS_SHARE, show_default=True, help="The mixed-in SIGNS images' share of the loss.")
@click.option("--min-per-sign", type=click.IntRange(min=1), default=config.TEACH_MIN_PER_SIGN, show_default=True, help="Refuse to fit on fewer frames of any sign.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=config.TEACH_SEED, show_default=True, help="Which frames --per-sign draws and which SIGNS images are mixed in.")
@click.option("--threads", type=click.IntRange(min=1), default=config.THREADS, show_default=True, help="Interpreter threads.")
@friendly_errors
def teach(model, folder, camera, picamera, video, labels_csv, roi, save, out, per_sign, l2, prior, signs_dir, signs_per_sign, signs_share, min_per_sign, seed, threads):
    """Fit a personal head on your labelled images and write it into a copy of an int8 MODEL, on the Pi, in seconds.

    The folder's held-out sessions/photos are never fitted on and score the written
    file (as 'edge-signs evaluate FILE --data FOLDER --split heldout' does).
    """
    from edge_signs.edge.head import FitOptions
    from edge_signs.edge.teach import TeachOptions, teach_folder

    fit = FitOptions(l2=l2, prior=prior, signs_share=signs_share, min_per_sign=min_per_sign)
    options = TeachOptions(fit=fit, per_sign=per_sign, signs=signs_dir, signs_per_sign=signs_per_sign, seed=seed, threads=threads)
    roi = parse_roi(roi) if roi is not None else Roi()
    if sum(x is not None and x is not False for x in (folder, camera, picamera or None, video)) != 1:
        raise click.UsageError("name one of --data FOLDER, --camera N, --picamera or --video PATH")
    if folder is not None:
        result = teach_folder(model, folder, out, options, log=_log)
    elif video is not None and labels_csv is not None:
        from edge_signs.edge.teach_live import teach_video

        result = teach_video(model, video, labels_csv, out, options, roi=roi, log=_log)
    else:
        from edge_signs.edge.teach_window import teach_window

        live_options = LiveOptions(camera=camera, picamera=picamera, video=video, roi=roi, threads=threads)
        result = teach_window(model, live_options, out, options, save=save, log=_log)
    click.echo(result.text(), nl=False)
