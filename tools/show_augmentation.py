#!/usr/bin/env python3
"""What training sees: SIGNS images and a recipe's augmentation of them, as one PNG.

    python tools/show_augmentation.py --recipe default --out augmentation.png [--set upright=1 ...]
        [--per-sign 2] [--draws 2] [--data DIR]

The first row holds the images as they are (``--per-sign`` of each sign, in order),
each further row one draw of the recipe's augmentation of the same images, through
the trainer's own pipeline (the hand masks included). Needs TensorFlow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_signs.artifacts import atomic_path  # noqa: E402
from edge_signs.cli_base import RecipeSetting  # noqa: E402
from edge_signs.config import RECIPES  # noqa: E402
from edge_signs.data import resolve_data  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.segment import hand_masks  # noqa: E402
from edge_signs.trainer.datasets import make_dataset  # noqa: E402
from edge_signs.trainer.options import TrainOptions  # noqa: E402


def augmentation_grid(x: np.ndarray, y: np.ndarray, recipe, draws: int) -> np.ndarray:
    """uint8 RGB rows: the images, then ``draws`` augmented copies of them."""
    masks = hand_masks(x) if recipe.needs_masks else None
    rows = [x]
    for draw in range(draws):
        batch, _ = next(iter(make_dataset(x, y, batch_size=len(y), training=False, augment=recipe, seed=draw, masks=masks)))
        rows.append(np.round(batch.numpy() * 255).astype(np.uint8))
    return np.vstack([np.hstack(list(row)) for row in rows])


@click.command()
@click.option("--recipe", default="default", show_default=True, type=click.Choice(list(RECIPES)))
@click.option("--set", "settings", multiple=True, type=RecipeSetting(), help="Override a recipe field, as train --set.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The PNG to write.")
@click.option("--per-sign", default=2, show_default=True, type=click.IntRange(1, 20))
@click.option("--draws", default=2, show_default=True, type=click.IntRange(1, 10))
@click.option("--data", type=click.Path(path_type=Path), default=None, help="SIGNS (default: where train finds it).")
def main(recipe, settings, out, per_sign, draws, data):
    try:
        options = TrainOptions(recipe=recipe, overrides=dict(settings)).validate()
        signs = resolve_data(data, log=quiet)
    except EdgeSignsError as exc:
        raise click.ClickException(str(exc)) from None
    chosen = np.concatenate([np.flatnonzero(signs.train.y == sign)[:per_sign] for sign in range(6)])
    grid = augmentation_grid(signs.train.x[chosen], signs.train.y[chosen], options.resolved_recipe(), draws)
    with atomic_path(out, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    click.echo(f"wrote {out}: {len(chosen)} SIGNS images, then {draws} draw(s) of the '{recipe}' recipe's augmentation")


if __name__ == "__main__":
    main()
