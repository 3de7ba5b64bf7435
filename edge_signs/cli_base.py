"""What every `edge-signs` command shares: the group, one-line errors, option types and options.

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

from edge_signs import __version__, config, tfquiet
from edge_signs.errors import EdgeSignsError


def fail(message: str, code: int = 1):
    click.echo(f"edge-signs: error: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn):
    """Turn user mistakes into one line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeSignsError as exc:
            fail(str(exc), exc.exit_code)
        except OSError as exc:  # an unwritable folder, a full disk: name the file, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            fail(f"{where}{exc.strerror or exc}")
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def log(msg: str) -> None:
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


class RecipeSetting(click.ParamType):
    """FIELD=VALUE for one field of config.Recipe, the value read as that field's type: ("rotation", 45.0)."""

    name = "FIELD=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        field_name, sep, text = str(value).partition("=")
        field_name = field_name.strip().replace("-", "_")
        defaults = dataclasses.asdict(config.RECIPES[config.DEFAULT_RECIPE])
        if not sep or field_name not in defaults:
            self.fail(f"{value!r}: expected FIELD=VALUE with FIELD one of {', '.join(defaults)}", param, ctx)
        kind = type(defaults[field_name])
        text = text.strip()
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                self.fail(f"{value!r}: {field_name} is true or false", param, ctx)
            return field_name, text.lower() in ("true", "1")
        try:
            parsed = kind(text)
        except ValueError:
            self.fail(f"{value!r}: {field_name} takes {'an integer' if kind is int else 'a number' if kind is float else 'a word'}", param, ctx)
        if kind is float and not math.isfinite(parsed):
            self.fail(f"{value!r}: {field_name} must be finite", param, ctx)
        return field_name, parsed


def given(ctx: click.Context, name: str) -> bool:
    """Whether the user typed this option (rather than getting its default)."""
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=config.THREADS,
    help=f"Interpreter threads [default: the cores available, at most {config.MAX_THREADS}: {config.THREADS} here].",
)
def renamed(param: str, old_flag: str, new_flag: str, *, multiple: bool = False):
    """A hidden, deprecated ``old_flag`` that still fills ``param`` (the option now called ``new_flag``), with a warning.

    Option names mean one thing in every command (docs/cli.md); the old names keep working for a release.
    """
    alias = f"{param}_under_old_name"

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            old = kwargs.pop(alias)
            if old:
                if kwargs.get(param):
                    raise click.UsageError(f"{old_flag} is the old name of {new_flag} here: give {new_flag} only")
                log(f"warning: {old_flag} is deprecated here and will go; use {new_flag}")
                kwargs[param] = old
            return fn(*args, **kwargs)

        return click.option(old_flag, alias, hidden=True, multiple=multiple, type=click.Path(path_type=Path),
                            default=() if multiple else None)(wrapper)

    return decorate


SIGNS_HELP = f"The SIGNS folder (HDF5 pair or train/ test/ image folders) [default: ${config.DATA_ENV_VAR}, then the Keras cache, else fetched]."
OWN_HELP = "A folder of your own labelled images (<label>/*.jpg, e.g. from 'edge-signs collect'); repeat for several."


def data_option(fn):
    """--signs (the SIGNS folder, into the ``data`` parameter), and --data, its old name."""
    fn = renamed("data", "--data", "--signs")(fn)
    return click.option("--signs", "data", type=click.Path(path_type=Path), default=None, help=SIGNS_HELP)(fn)


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        tfquiet.set_verbose(True)


verbose_option = click.option("-v", "--verbose", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbose,
                              help="Show TensorFlow's own log lines (hidden by default).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-signs")
@verbose_option
def main():
    """Train a SIGNS hand-sign classifier, quantize it, and run it on a Raspberry Pi."""
