#!/usr/bin/env python3
"""Write a labelled test video from SIGNS test images, for `edge-signs live --video --labels`.

    python tools/make_labelled_video.py --out signs.avi --data ../shared/datasets/signs
    edge-signs live model_int8.tflite --video signs.avi --labels signs.csv --headless

Each image is upscaled (nearest neighbour, so area-downscaling in the live
path gets its pixels back) and held for K frames; ``--gap`` inserts unlabelled
grey frames between images, which the live scorer must skip. MJPG in .avi by
default: OpenCV decodes it everywhere, Raspberry Pi included. Both files are
written atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import click
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_signs import config  # noqa: E402
from edge_signs.artifacts import atomic_path, write_text  # noqa: E402
from edge_signs.data import resolve_data  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402

GAP_GREY = 128
SIZE = 256  # SIGNS images upscaled to this square
FRAMES_PER_IMAGE = 5  # each image held this many frames
FPS = 15.0


def make_labelled_video(
    out: str | Path,
    labels_csv: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    frames_per_image: int = FRAMES_PER_IMAGE,
    size: int = SIZE,
    *,
    fps: float = FPS,
    gap: int = 0,
    label_names: Sequence[str] = config.LABELS,
) -> int:
    """Write ``out`` (video) and ``labels_csv`` (start_frame,end_frame,label); returns the frame count.

    ``images`` are uint8 RGB (N, H, W, 3), ``labels`` class indices (N,).
    Frames are numbered from 0, as `edge-signs live` counts them.
    """
    out, labels_csv = Path(out), Path(labels_csv)
    images = np.asarray(images)
    labels = np.asarray(labels).reshape(-1)
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise EdgeSignsError(f"images: expected uint8 RGB (N, H, W, 3), got {images.dtype} {images.shape}")
    if len(images) != len(labels) or len(images) == 0:
        raise EdgeSignsError(f"expected as many labels as images (at least one), got {len(labels)} and {len(images)}")
    if frames_per_image < 1 or size < 1 or gap < 0:
        raise EdgeSignsError("frames_per_image and size must be at least 1, gap at least 0")
    fourcc = config.RECORD_FOURCC.get(out.suffix.lower())
    if fourcc is None:
        raise EdgeSignsError(f"{out}: use a .avi (MJPG) or .mp4 (mp4v) file name")

    rows = ["start_frame,end_frame,label"]
    frame_no = 0
    gap_frame = np.full((size, size, 3), GAP_GREY, np.uint8)
    with atomic_path(out) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (size, size))
        if not writer.isOpened():
            raise EdgeSignsError(f"{out}: OpenCV cannot write {fourcc} video here")
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)  # JPEG quality: keep compression from changing predictions
        try:
            for k, (rgb, y) in enumerate(zip(images, labels)):
                if k and gap:
                    for _ in range(gap):
                        writer.write(gap_frame)
                    frame_no += gap
                bgr = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (size, size), interpolation=cv2.INTER_NEAREST)
                for _ in range(frames_per_image):
                    writer.write(bgr)
                rows.append(f"{frame_no},{frame_no + frames_per_image - 1},{label_names[int(y)]}")
                frame_no += frames_per_image
        finally:
            writer.release()  # finalizes the container before the move
    write_text(labels_csv, "\n".join(rows) + "\n")
    return frame_no


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("signs_test.avi"), show_default=True, help="Video file (.avi MJPG or .mp4 mp4v).")
@click.option("--labels-csv", type=click.Path(path_type=Path), default=None, help="Labels CSV (default: the video's name with .csv).")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="SIGNS folder (default: as edge-signs train).")
@click.option("--frames-per-image", type=click.IntRange(min=1), default=FRAMES_PER_IMAGE, show_default=True)
@click.option("--size", type=click.IntRange(min=8), default=SIZE, show_default=True, help="Frame side in pixels.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=FPS, show_default=True)
@click.option("--gap", type=click.IntRange(min=0), default=0, show_default=True, help="Unlabelled grey frames between images.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N test images.")
def main(out, labels_csv, data, frames_per_image, size, fps, gap, limit):
    """Write a video of SIGNS test images and its labels CSV."""

    labels_csv = labels_csv or out.with_suffix(".csv")
    try:
        signs = resolve_data(data)
        x, y = signs.test.x[:limit], signs.test.y[:limit]
        frames = make_labelled_video(out, labels_csv, x, y, frames_per_image, size, fps=fps, gap=gap)
    except EdgeSignsError as exc:
        click.echo(f"make_labelled_video: error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out} ({frames} frames, {len(y)} images, {size}x{size}) and {labels_csv}")


if __name__ == "__main__":
    main()
