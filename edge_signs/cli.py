"""The `edge-signs` command. Each command is a thin shell over a typed function.

The group, the one-line errors and the shared options are in ``cli_base``; the
workstation's commands (train, finetune, quantize, evaluate) in ``cli_train``; the
Pi's (live, collect, doctor) and `data` here.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Callable, Optional

import click
import numpy as np

from edge_signs import (
    cli_train,  # noqa: F401 -- registers train, finetune, quantize, evaluate on the group
    config,
)
from edge_signs.cli_base import FiniteFloat, data_option, fail, friendly_errors, given, log, main, threads_option
from edge_signs.data import resolve_data
from edge_signs.edge import ranges
from edge_signs.edge.events import EventOptions
from edge_signs.edge.live import LiveOptions, parse_roi, run_live
from edge_signs.edge.outputs import OutputError
from edge_signs.edge.ranges import Range
from edge_signs.edge.sources import SourceOptions
from edge_signs.fetch import fetch_signs
from edge_signs.preprocess import Roi

__all__ = ["main"]


class FiniteRange(click.FloatRange):
    """click's FloatRange (shown in --help as its range), refusing NaN and infinity, which its bounds let through."""

    def convert(self, value, param, ctx):
        x = super().convert(value, param, ctx)
        if not math.isfinite(x):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return x


def number(r: Range) -> click.ParamType:
    """The click type of a Range (ranges.py): the options and the help state the bound from one place."""
    if r.integer:
        return click.IntRange(min=r.low, max=r.high, min_open=r.low_open)
    return FiniteRange(min=r.low, max=r.high, min_open=r.low_open)


def option_group(name: str, *options, build: Callable[..., Any] = dict):
    """``options`` given to the command as one parameter, ``name``: ``build(**their values)`` (a dict by default)."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            values = {param: kwargs.pop(param) for param in params}
            return fn(*args, **{name: build(**values)}, **kwargs)

        for option in reversed(options):
            wrapper = option(wrapper)
        params = [p.name for p in wrapper.__click_params__[-len(options):]]
        return wrapper

    return decorate


event_options = option_group(
    "events",
    click.option("--hold", type=number(ranges.SECONDS), default=config.EVENT_HOLD_S, show_default=True,
                 help="Seconds a sign must stay the smoothed prediction to become an event (shorter ones, such as a hand moving between signs, make none)."),
    click.option("--events", "path", type=click.Path(path_type=Path), default=None,
                 help="Write one JSON object per event (held, released) as JSON lines; a FIFO or /dev/stdout is written as events come."),
    click.option("--exec", "command", default=None, metavar="COMMAND",
                 help=f"Run COMMAND (sh -c) for every held sign, with EDGE_SIGNS_SIGN, EDGE_SIGNS_CONFIDENCE, ... in its environment; never waits for it (killed after {config.EXEC_TIMEOUT_S:g} s)."),
    click.option("--mqtt", default=None, metavar="mqtt[s]://[USER:PASS@]HOST[:PORT]/TOPIC",
                 help=f"Publish events to TOPIC/event, the held sign to TOPIC/state (retained) and TOPIC/availability; needs the [mqtt] extra. Password also from ${config.MQTT_PASSWORD_ENV}."),
    click.option("--ha-discovery", is_flag=True, help="With --mqtt: announce the sign as a Home Assistant sensor (MQTT discovery)."),
    build=EventOptions,
)
"""--hold, --events, --exec, --mqtt, --ha-discovery (docs/events.md): one EventOptions, given to the command as ``events``."""


# -- data ------------------------------------------------------------------------------------


@main.group()
def data():
    """Get the SIGNS dataset."""


@data.command("fetch")
@click.option("--cache", type=click.Path(path_type=Path), default=None, help="Where to put the course files (default: the Keras dataset cache).")
@friendly_errors
def data_fetch(cache):
    """Download the course's HDF5 files once, verified by hash."""
    where = fetch_signs(cache, log=log)
    click.echo(str(where))


@data.command("info")
@data_option
@friendly_errors
def data_info(data):
    """Say where SIGNS is found and what it holds."""
    signs = resolve_data(data, fetch=False, log=log)
    click.echo(f"{signs.source} ({signs.layout}): train {len(signs.train)} {np.bincount(signs.train.y).tolist()}, test {len(signs.test)} {np.bincount(signs.test.y).tolist()}; sha256 {signs.checksum()[:16]}")


# -- live and collect ------------------------------------------------------------------------------


def source_group(*, testset: bool, width: int, height: int, labels_help: str):
    """The source's options (SourceOptions) as ``source``; live's include --testset and --loop."""
    options = [
        click.option("--camera", type=number(ranges.INDEX), default=None, help=f"OpenCV camera index, e.g. a USB webcam (the default source: {config.CAMERA_INDEX})."),
        click.option("--picamera", is_flag=True, help="Raspberry Pi Camera Module through picamera2."),
        click.option("--video", default=None, metavar="PATH|URL", help="A video file, stream URL or GStreamer pipeline (anything cv2.VideoCapture opens)."),
        click.option("--labels", "labels_csv", type=click.Path(path_type=Path), default=None, help=labels_help),
        click.option("--width", type=number(ranges.COUNT), default=width, show_default=True, help="Camera frame width."),
        click.option("--height", type=number(ranges.COUNT), default=height, show_default=True, help="Camera frame height."),
        click.option("--fps", type=number(ranges.RATE), default=config.CAMERA_FPS, show_default=True, help="Camera frame rate to ask for."),
        click.option("--capture-thread/--no-capture-thread", default=True, show_default=True,
                     help="Read cameras and streams in a background thread that keeps only the newest frame, and decode video files ahead in one that keeps every frame."),
    ]
    if testset:
        options[3:3] = [
            click.option("--testset", is_flag=True, help="Replay the SIGNS test images as frames, with their true labels."),
            click.option("--loop", is_flag=True, help="Start --testset or a --video file again at its end (soak tests; stop with --max-frames or Ctrl-C)."),
        ]
    return option_group("source", *options)


def roi_of(text: Optional[str]) -> Roi:
    return parse_roi(text) if text is not None else Roi()


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@source_group(testset=True, width=config.CAMERA_WIDTH, height=config.CAMERA_HEIGHT,
              labels_help="--video ground truth CSV: start_frame,end_frame,label (0-based, inclusive); other frames are not scored.")
@data_option
@option_group(
    "use",
    click.option("--roi", default=None, metavar="SIZE[,CX,CY]", help="Square region classified, as fractions: side of the shorter frame side, centre x, y (default: 1,0.5,0.5, the largest centred square)."),
    click.option("--smoothing", type=number(ranges.COUNT), default=config.SMOOTHING_FRAMES, show_default=True, help="Average the probabilities of the last N frames."),
    click.option("--threshold", type=number(ranges.PROBABILITY), default=config.CONFIDENCE_THRESHOLD, show_default=True, help="Below this smoothed confidence: 'no sign'."),
    threads_option,
    click.option("--max-frames", type=number(ranges.COUNT), default=None, help="Stop after N frames."),
)
@option_group(
    "view",
    click.option("--headless", is_flag=True, help="No window; a status line every --status-every seconds (the default where no window can open, and with --serve)."),
    click.option("--window", is_flag=True, help="Show the window even with --serve (an error where none can open)."),
    click.option("--snapshot-dir", type=click.Path(path_type=Path), default=Path("."), show_default=True, help="Where the window's 's' key saves PNG snapshots."),
    click.option("--status-every", "status_interval", type=number(ranges.SECONDS), default=config.STATUS_INTERVAL_S, show_default=True, help="Seconds between --headless status lines (0: none)."),
)
@option_group(
    "outputs",
    click.option("--record", type=click.Path(path_type=Path), default=None, help="Write the annotated video: .avi (MJPG) or .mp4 (mp4v)."),
    click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write one JSON object per frame (JSON lines)."),
    click.option("--report", type=click.Path(path_type=Path), default=None, help="Folder for live_summary.json and, with known labels, confusion_matrix.png."),
    click.option("--serve", default=None, metavar="[HOST:]PORT", help=f"Serve a page with the annotated video and the prediction to a browser (/, /stream.mjpg, /status). Binds {config.SERVE_HOST} unless HOST is given, e.g. 0.0.0.0:8080 for the network (then a token is required)."),
    click.option("--token", default=None, envvar=config.SERVE_TOKEN_ENV, show_envvar=True, help="The token every --serve request must carry (?token= or Authorization: Bearer); default: a random one when HOST is not loopback."),
)
@event_options
@click.pass_context
@friendly_errors
def live(ctx, model, source, data, use, view, outputs, events):
    """Classify hand signs live from a camera, a video or the test set (q/Esc quits, s saves a snapshot).

    Ends with a summary: frames, FPS, inference and overhead times, and with known
    labels (--testset, --video --labels) accuracy and a confusion matrix.
    """
    # A token exported in the environment waits for --serve; only a typed --token without it is a mistake.
    token = outputs["token"] if outputs["serve"] is not None or given(ctx, "token") else None
    options = LiveOptions(**source, data=data, **{**use, "roi": roi_of(use["roi"])}, **{**view, "window": view["window"] or None},
                          **{**outputs, "token": token}, events=events)
    try:
        summary = run_live(model, options, log=log)
    except OutputError as exc:  # the run happened: its summary first, then the output that failed
        click.echo(exc.summary.text(), nl=False)
        raise
    click.echo(summary.text(), nl=False)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help=f"Dataset folder: crops go to OUT/<label>/, a row per crop to OUT/{config.COLLECT_CSV}.")
@source_group(testset=False, width=config.COLLECT_CAMERA_WIDTH, height=config.COLLECT_CAMERA_HEIGHT,
              labels_help="With --video: save the frames of every labelled range (start_frame,end_frame,label CSV, as live --labels) under their labels; no window.")
@option_group(
    "saving",
    click.option("--roi", default=None, metavar="SIZE[,CX,CY]", help="The square saved, as live's --roi (default: 1,0.5,0.5, the largest centred square)."),
    click.option("--headless", is_flag=True, help="No window: count down, save --count crops of --label at --interval, stop (what --label alone does)."),
    click.option("--window", is_flag=True, help="A window even with --label (which then labels the first burst); an error where none can open."),
    click.option("--label", default=None, metavar="L", help=f"The label of every crop ({', '.join(config.LABELS)}), saved without a window; with --window, the first burst's label."),
    click.option("--count", type=number(ranges.COUNT), default=None, help=f"With --label: crops to save [default: {config.COLLECT_COUNT}]; with a window, crops per burst (default: until b)."),
    click.option("--interval", type=number(ranges.SECONDS), default=None, help=f"Seconds between a burst's crops, of source time (video files: frame number / fps) [default: {config.COLLECT_INTERVAL_S:g}; --labels: every frame]."),
    click.option("--countdown", type=number(ranges.SECONDS), default=config.COLLECT_COUNTDOWN_S, show_default=True, help="With --label: seconds counted down before the first crop."),
    # Not click's range: a size past the bound gets the options' one line, which says what such a crop costs.
    click.option("--size", type=int, default=config.COLLECT_SIZE, show_default=True, help=f"Side of the saved square crop, pixels, {ranges.CROP_SIZE.describe()}."),
    click.option("--quality", type=number(ranges.JPEG_QUALITY), default=config.COLLECT_JPEG_QUALITY, show_default=True, help="JPEG quality."),
)
@event_options
@friendly_errors
def collect(out, source, saving, events):
    """Save hand-sign crops as a labelled image folder, OUT/<label>/*.jpg (keys 0-5 save, b burst, q/Esc quits).

    Never overwrites: each run is a session, and files are named <session>_<NNNNN>.jpg.
    Ends with the crops saved per class and the totals in OUT.
    """
    from edge_signs.edge.collect import CollectOptions, run_collect

    options = CollectOptions(out=out, **source, **{**saving, "roi": roi_of(saving["roi"]), "window": saving["window"] or None},
                             events=events)
    summary = run_collect(options, log=log)
    click.echo(summary.text(), nl=False)
    if summary.error is not None:
        fail(summary.error)


# -- doctor -----------------------------------------------------------------------------------


@main.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@data_option
@friendly_errors
def doctor(model, data):
    """Check that this machine is ready: runtime, numpy and picamera2, window, cameras, SIGNS, MODEL, CPU.

    One line per check, PASS, WARN or FAIL with the fix; exit status 1 when any check fails.
    """
    from edge_signs.edge.doctor import FAIL, run_doctor

    checks = run_doctor(model, data)
    for check in checks:
        click.echo(check.line())
    if any(c.status == FAIL for c in checks):
        fail(f"{sum(c.status == FAIL for c in checks)} check(s) failed")


# -- teach ------------------------------------------------------------------------------------


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--own", "folder", type=click.Path(path_type=Path), default=None, help="A folder of your own labelled images (<label>/*.jpg, e.g. from 'edge-signs collect').")
@click.option("--camera", type=number(ranges.INDEX), default=None, help="Instead of --own: teach in a window from this OpenCV camera (keys 0-5 teach the frame shown, q ends).")
@click.option("--picamera", is_flag=True, help="The same from the Raspberry Pi Camera Module.")
@click.option("--video", default=None, metavar="PATH", help="The same from a video; with --labels, headless: each labelled frame is classified, then taught.")
@click.option("--labels", "labels_csv", type=click.Path(path_type=Path), default=None, help="With --video: start_frame,end_frame,label CSV (as live --labels).")
@click.option("--roi", default=None, metavar="SIZE[,CX,CY]", help="The square classified, as live's --roi.")
@click.option("--save", type=click.Path(path_type=Path), default=None, help="With a window or --serve: keep each taught frame's crop in this folder, as 'edge-signs collect' does.")
@click.option("--serve", default=None, metavar="[HOST:]PORT", help="Instead of a window (a headless Pi): live --serve's page, with buttons 0-5 that teach the frame shown and 'done' that writes --out.")
@click.option("--token", default=None, envvar=config.SERVE_TOKEN_ENV, show_envvar=True, help="The token every --serve request must carry, as live's.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The personal .tflite file to write (its .json beside it).")
@click.option("--per-sign", type=click.IntRange(min=1), default=None, help="Fit on N frames of each sign drawn from the folder's training part (default: all of it).")
@click.option("--l2", type=FiniteFloat(0), default=config.TEACH_L2, show_default=True, help="L2 penalty on the head's weights, in units of the features' mean square.")
@click.option("--prior/--no-prior", default=config.TEACH_PRIOR, show_default=True, help="Penalize the distance to the model's own head (--prior) or to zero.")
@click.option("--signs", "signs_dir", type=click.Path(path_type=Path), default=None, help=f"SIGNS folder mixed in. Default: ${config.DATA_ENV_VAR} or the Keras cache, if SIGNS is there (never fetched).")
@click.option("--signs-per-sign", type=click.IntRange(min=0), default=config.TEACH_SIGNS_PER_SIGN, show_default=True, help="SIGNS training images of each sign mixed in (0: none).")
@click.option("--signs-share", type=FiniteFloat(0, 1, high_open=True), default=config.TEACH_SIGNS_SHARE, show_default=True, help="The mixed-in SIGNS images' share of the loss.")
@click.option("--min-per-sign", type=click.IntRange(min=1), default=config.TEACH_MIN_PER_SIGN, show_default=True, help="Refuse to fit on fewer frames of any sign.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=config.TEACH_SEED, show_default=True, help="Which frames --per-sign draws and which SIGNS images are mixed in.")
@threads_option
@click.pass_context
@friendly_errors
def teach(ctx, model, folder, camera, picamera, video, labels_csv, roi, save, serve, token, out, per_sign, l2, prior, signs_dir, signs_per_sign,
          signs_share, min_per_sign, seed, threads):
    """Fit a personal head on your labelled images and write it into a copy of an int8 MODEL, on the Pi, in seconds.

    The folder's held-out sessions/photos are never fitted on and score the written
    file (as 'edge-signs evaluate FILE --own FOLDER --split heldout' does). From a
    camera or video: keys 0-5 in a window, or the buttons of a browser page (--serve).
    """
    from edge_signs.edge.head import FitOptions
    from edge_signs.edge.teach import TeachOptions, teach_folder

    fit = FitOptions(l2=l2, prior=prior, signs_share=signs_share, min_per_sign=min_per_sign)
    options = TeachOptions(fit=fit, per_sign=per_sign, signs=signs_dir, signs_per_sign=signs_per_sign, seed=seed, threads=threads)
    roi = roi_of(roi)
    if sum(x is not None and x is not False for x in (folder, camera, picamera or None, video)) != 1:
        raise click.UsageError("name one of --own FOLDER, --camera N, --picamera or --video PATH")
    if serve is None and given(ctx, "token"):
        raise click.UsageError("--token protects --serve; give --serve [HOST:]PORT too")
    if serve is not None and (folder is not None or labels_csv is not None):
        raise click.UsageError("--serve teaches with the page's buttons, from --camera N, --picamera or --video PATH (not --own or --labels)")
    if folder is not None:
        result = teach_folder(model, folder, out, options, log=log)
    elif video is not None and labels_csv is not None:
        from edge_signs.edge.teach_live import teach_video

        result = teach_video(model, video, labels_csv, out, options, roi=roi, log=log)
    elif serve is not None:
        from edge_signs.edge.teach_serve import teach_served

        result = teach_served(model, SourceOptions(camera=camera, picamera=picamera, video=video), out, options, serve=serve, token=token,
                              roi=roi, save=save, log=log)
    else:
        from edge_signs.edge.teach_window import teach_window

        result = teach_window(model, SourceOptions(camera=camera, picamera=picamera, video=video), out, options, roi=roi, save=save, log=log)
    click.echo(result.text(), nl=False)
