#!/usr/bin/env python3
"""How much a model reads the sign from the hand's surface rather than its outline.

    python tools/probe_surface.py runs/default-s0/model_int8.tflite --data ../shared/datasets/signs

SIGNS shows the palm only in its 4s and 5s. Each SIGNS test photo of a 0-3 is given
the surface of another test photo's hand (the training augmentation's own
``hand_surface``: that hand's box stretched onto this one's, pasted where both masks
are hand; outline and wall kept), its donor drawn three ways: a 4 or a 5, another
0-3, the same sign. Where a 4's or a 5's surface turns many more of them into 4s and
5s than a 0-3's does, the model takes the palm for the sign. Donors are drawn with a
fixed seed among the photos whose mask is trusted; the rows print accuracy on those
0-3s and the share read as a 4 or a 5.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_signs import config  # noqa: E402
from edge_signs.artifacts import write_json  # noqa: E402
from edge_signs.data import resolve_data  # noqa: E402
from edge_signs.edge.runtime import Classifier  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.preprocess import to_model_input  # noqa: E402
from edge_signs.segment import hand_masks  # noqa: E402
from edge_signs.trainer import tf  # noqa: E402
from edge_signs.trainer.augment import hand_surface  # noqa: E402

DONORS = {"a 4 or a 5": lambda label, own: label >= 4, "another 0-3": lambda label, own: label <= 3, "the same sign": lambda label, own: label == own}


def with_surfaces(rgba: np.ndarray, labels: np.ndarray, chosen: np.ndarray, donor_of, seed: int = 0) -> np.ndarray:
    """The ``chosen`` images (indices) with the surface of a donor drawn, per image, where ``donor_of(label, own)``."""
    rng, trusted = np.random.default_rng(seed), trusted_masks(rgba)
    pairs = []
    for i in chosen:
        pool = [j for j in trusted if j != i and donor_of(labels[j], labels[i])]
        pairs += [rgba[rng.choice(pool)], rgba[i]]  # hand_surface gives each image its predecessor's surface
    out = hand_surface(tf.random.Generator.from_seed(seed), tf.constant(np.stack(pairs)), 1.0).numpy()
    return out[1::2, ..., :3]


def trusted_masks(rgba: np.ndarray) -> np.ndarray:
    """The images whose mask is trusted (segment.py's all-ones mask is not)."""
    return np.flatnonzero(rgba[..., 3].mean(axis=(1, 2)) < 0.9)


def probe(model: Classifier, images: np.ndarray, labels: np.ndarray) -> dict:
    rgba = np.concatenate([to_model_input(images), hand_masks(images)], axis=-1)
    low = np.array([i for i in trusted_masks(rgba) if labels[i] <= 3])
    rows = {}
    variants = {"as they are": rgba[low, ..., :3], **{f"surface of {name}": with_surfaces(rgba, labels, low, rule) for name, rule in DONORS.items()}}
    for name, floats in variants.items():
        predicted = model.predict_batch(np.rint(floats * 255).astype(np.uint8)).argmax(axis=1)
        rows[name] = {"accuracy": float((predicted == labels[low]).mean()), "read_as_4_or_5": float((predicted >= 4).mean()),
                      "predicted_per_sign": np.bincount(predicted, minlength=config.NUM_CLASSES).tolist()}
    return {"images": int(len(low)), "rows": rows}


@click.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "folder", type=click.Path(path_type=Path), default=None, help="The SIGNS folder (else found as `train` finds it).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the result here.")
def main(model_path: Path, folder: Path | None, json_path: Path | None) -> None:
    try:
        test = resolve_data(folder, log=quiet).test
        result = {"model": str(model_path), **probe(Classifier(model_path), test.x, test.y)}
    except EdgeSignsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{result['images']} SIGNS test photos of 0-3 with a trusted mask\n{'surface':<26} accuracy  read as 4/5  predicted per sign")
    for name, row in result["rows"].items():
        click.echo(f"{name:<26} {row['accuracy']:8.3f}  {row['read_as_4_or_5']:11.3f}  {row['predicted_per_sign']}")
    if json_path:
        write_json(json_path, result)


if __name__ == "__main__":
    main()
