#!/usr/bin/env python3
"""Write calibration/manifest.csv: the SIGNS training images that calibrate int8 models.

    python tools/make_calibration_manifest.py --data ../shared/datasets/signs

Stratified over the six classes and seeded, from the training set only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_signs import config  # noqa: E402
from edge_signs.artifacts import write_text  # noqa: E402
from edge_signs.data import resolve_data  # noqa: E402
from edge_signs.trainer.calibration import manifest_text  # noqa: E402


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, help="SIGNS folder (default: as edge-signs train).")
@click.option("--per-class", type=click.IntRange(min=1), default=config.CALIBRATION_PER_CLASS, show_default=True)
@click.option("--seed", type=int, default=config.SEED, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=config.CHECKOUT_CALIBRATION_MANIFEST, show_default=True)
def main(data, per_class, seed, out):
    signs = resolve_data(data)
    write_text(out, manifest_text(signs, per_class, seed))
    click.echo(f"wrote {out}: {per_class * config.NUM_CLASSES} training images")


if __name__ == "__main__":
    main()
