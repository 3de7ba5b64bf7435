#!/usr/bin/env python3
"""How a model's accuracy on a labelled folder moves when its photos are framed differently.

    python tools/probe_framing.py runs/default-s0/model_int8.tflite --data ../shared/datasets/sld-dev

Each row changes every photo of the folder the same way after the camera path's
preprocessing (64x64 RGB) and scores the model on the result: smaller or larger in
the frame, moved up or down, tilted either way, mirrored, grey, brighter, darker,
higher contrast, the hand alone lighter or darker (its mask from segment.py, the
wall kept); then a grid of scale x downward shift. Where a change raises the
accuracy, the folder's photos differ from what training showed in that way (a hand
larger, higher, more upright than SIGNS'); where it lowers it a lot, the model leans
on what changed (the hand's brightness against the wall). Training augmentation
should cover either: this points the recipe at the gap; it is never applied on the
camera path.

Edges are filled by repeating the border (a plain wall stays a plain wall).
Positive angles turn counter-clockwise; a positive shift moves the content down.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_signs import config  # noqa: E402
from edge_signs.artifacts import write_json  # noqa: E402
from edge_signs.edge.runtime import Classifier  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.own_data import load_labelled  # noqa: E402
from edge_signs.segment import hand_mask  # noqa: E402

GRID_SCALES = (1.0, 0.85, 0.75, 0.65)
GRID_SHIFTS = (0, 4, 8, 12)  # pixels of the 64, downward


def affine(image: np.ndarray, *, angle: float = 0.0, scale: float = 1.0, down: float = 0.0) -> np.ndarray:
    """One 64x64 RGB image turned by ``angle`` degrees, scaled about its centre, moved ``down`` pixels."""
    size = image.shape[0]
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, scale)
    matrix[1, 2] += down
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _levels(images: np.ndarray, gain: float = 1.0, offset: float = 0.0) -> np.ndarray:
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True) if gain != 1.0 else 0.0
    return np.rint(np.clip(mean + gain * (x - mean) + offset, 0, 255)).astype(np.uint8)


def hand_gain(image: np.ndarray, gain: float) -> np.ndarray:
    """One uint8 RGB image with the hand alone (segment.py's mask) times ``gain``; the wall as it was."""
    mask = hand_mask(image)[..., None]
    x = image.astype(np.float32)
    return np.rint(x * (1 - mask) + np.clip(x * gain, 0, 255) * mask).astype(np.uint8)


def _each(change):
    return lambda images: np.stack([change(image) for image in images])


CHANGES = {
    "as they are": lambda images: images,
    "mirrored": lambda images: images[:, :, ::-1].copy(),
    "smaller x0.8": _each(lambda im: affine(im, scale=0.8)),
    "smaller x0.65": _each(lambda im: affine(im, scale=0.65)),
    "larger x1.2": _each(lambda im: affine(im, scale=1.2)),
    "moved down 8 px": _each(lambda im: affine(im, down=8)),
    "moved up 8 px": _each(lambda im: affine(im, down=-8)),
    "turned +15 deg": _each(lambda im: affine(im, angle=15)),
    "turned -15 deg": _each(lambda im: affine(im, angle=-15)),
    "turned +30 deg": _each(lambda im: affine(im, angle=30)),
    "turned -30 deg": _each(lambda im: affine(im, angle=-30)),
    "grey": lambda images: np.repeat(images.astype(np.float32).mean(axis=3, keepdims=True).round().astype(np.uint8), 3, axis=3),
    "brighter +30": lambda images: _levels(images, offset=30),
    "darker -30": lambda images: _levels(images, offset=-30),
    "contrast x1.4": lambda images: _levels(images, gain=1.4),
    "hand x1.25": _each(lambda im: hand_gain(im, 1.25)),
    "hand x0.75": _each(lambda im: hand_gain(im, 0.75)),
    "hand x0.6": _each(lambda im: hand_gain(im, 0.6)),
}


def probe(model: Classifier, images: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy and the count predicted per sign for each change, and the scale x shift grid."""
    def score(batch):
        predicted = model.predict_batch(batch).argmax(axis=1)
        return float((predicted == labels).mean()), np.bincount(predicted, minlength=config.NUM_CLASSES).tolist()

    rows = {}
    for name, change in CHANGES.items():
        accuracy, counts = score(change(images))
        rows[name] = {"accuracy": accuracy, "predicted_per_sign": counts}
    grid = [[score(_each(lambda im, s=s, d=d: affine(im, scale=s, down=d))(images))[0] for d in GRID_SHIFTS] for s in GRID_SCALES]
    return {"images": int(len(labels)), "per_sign": np.bincount(labels, minlength=config.NUM_CLASSES).tolist(), "changes": rows,
            "grid": {"scales": list(GRID_SCALES), "shifts_down_px": list(GRID_SHIFTS), "accuracy": grid}}


def report_text(result: dict) -> str:
    lines = [f"{result['images']} images, per sign {result['per_sign']}", f"{'change':<18} accuracy  predicted per sign"]
    lines += [f"{name:<18} {row['accuracy']:8.3f}  {row['predicted_per_sign']}" for name, row in result["changes"].items()]
    grid = result["grid"]
    lines += ["", "scale \\ down px  " + "".join(f"{d:>7}" for d in grid["shifts_down_px"])]
    lines += [f"{s:<16} " + "".join(f"{a:7.3f}" for a in row) for s, row in zip(grid["scales"], grid["accuracy"])]
    return "\n".join(lines)


@click.command()
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--data", "folder", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="A labelled folder (<label>/*.jpg).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also write the result here.")
@click.option("--threads", type=click.IntRange(min=1), default=config.THREADS, show_default=True)
def main(model_path: Path, folder: Path, json_path: Path | None, threads: int) -> None:
    try:
        own = load_labelled(folder, log=quiet)
        result = {"model": str(model_path), "folder": str(folder), **probe(Classifier(model_path, threads=threads), own.x, own.y)}
    except EdgeSignsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report_text(result))
    if json_path:
        write_json(json_path, result)


if __name__ == "__main__":
    main()
