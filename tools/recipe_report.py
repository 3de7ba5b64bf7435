#!/usr/bin/env python3
"""Compare training runs (e.g. seed vs default recipe) in every format: the table in docs/results.md.

    python tools/recipe_report.py runs/seed-s0 runs/default-s0 [--data DIR] [--json OUT]
        [--dev ../shared/datasets/sld-dev] [--heldout ../shared/datasets/hands-webcam]

Each run folder needs model.keras (edge-signs train) and model_float16.tflite /
model_int8.tflite (edge-signs quantize). For the float Keras model, float16 and
int8 files it prints train, validation and test accuracy and loss (the run's own
split, rebuilt from its options.json), the int8 robustness mean, and the run's
seconds per epoch. Needs TensorFlow for the Keras model.

--dev DIR (repeatable) adds the int8 file's accuracy on every image of a labelled
folder (other people's hands), --heldout DIR on its held-out fifth only (the photos
a run's --extra never trained on). A second table gives, per recipe, the mean and
the minimum over its runs (seeds) of int8 SIGNS test, robustness and each folder:
a recipe is chosen by what it does reliably, not by one lucky seed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_signs import config, metrics  # noqa: E402
from edge_signs.artifacts import write_json  # noqa: E402
from edge_signs.data import resolve_data, train_val_split  # noqa: E402
from edge_signs.edge.evaluate import edge_runners, robustness  # noqa: E402
from edge_signs.errors import EdgeSignsError  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.own_data import load_labelled, own_split  # noqa: E402
from edge_signs.trainer import evaluate as trainer_evaluate  # noqa: E402

FORMATS = (("float", "model.keras"), ("float16", "model_float16.tflite"), ("int8", "model_int8.tflite"))


def recipe_label(options: dict) -> str:
    """The recipe's name with what the run changed or added: runs group by it, so seeds of one
    recipe meet and a run with extra data or another schedule is not averaged with them."""
    parts = [options["recipe"]]
    parts += [f"{key} {value}" for key, value in sorted(options.get("overrides", {}).items())]
    parts += [f"+{Path(folder).name}" for folder in options.get("extra", [])]
    if options.get("select_on"):
        parts.append(f"kept by {Path(options['select_on']).name}")
    return ", ".join(parts)


def run_report(run_dir: Path, signs, folders: dict | None = None) -> dict:
    options = json.loads((run_dir / "options.json").read_text())
    train_metrics = json.loads((run_dir / "metrics.json").read_text())
    tr, va = train_val_split(signs.train.y, options["val_fraction"], options["seed"], options.get("limit"))
    splits = {
        "train": (signs.train.x[tr], signs.train.y[tr]),
        "val": (signs.train.x[va], signs.train.y[va]),
        "test": (signs.test.x, signs.test.y),
    }
    row = {"run": str(run_dir), "recipe": recipe_label(options), "seed": options["seed"],
           "seconds_per_epoch": train_metrics["seconds_per_epoch"], "wall_seconds": train_metrics.get("wall_seconds"),
           "epochs": train_metrics["epochs"], "formats": {}}
    runners = edge_runners()
    trainer_evaluate.register(runners)  # the float model is model.keras
    for name, file in FORMATS:
        runner = runners.open(run_dir / file, config.THREADS)
        row["formats"][name] = {split: metrics.summarize(runner.predict(x), y) for split, (x, y) in splits.items()}
    rob = robustness(run_dir / "model_int8.tflite", signs.test.x, signs.test.y, log=quiet)
    row["int8_robustness_mean"] = rob["mean"]
    row["int8_robustness"] = rob["perturbations"]
    int8 = runners.open(run_dir / "model_int8.tflite", config.THREADS)
    row["folders"] = {name: metrics.summarize(int8.predict(part.x), part.y)["accuracy"] for name, part in (folders or {}).items()}
    row["checkpoint"] = train_metrics.get("checkpoint", {}).get("by", "the last epoch")
    return row


def by_recipe(rows: list[dict]) -> str:
    """Mean and minimum over each recipe's runs of what decides a recipe."""
    names = sorted({name for row in rows for name in row["folders"]})
    lines = ["| recipe | runs | seeds | int8 SIGNS test mean / min | robustness mean / min | "
             + " | ".join(f"{n} mean / min" for n in names) + " |",
             "|---|---:|---|---|---|" + "---|" * len(names)]
    for recipe in dict.fromkeys(row["recipe"] for row in rows):
        mine = [row for row in rows if row["recipe"] == recipe]

        def cell(values):
            return f"{np.mean(values):.3f} / {np.min(values):.3f}"

        test = [row["formats"]["int8"]["test"]["accuracy"] for row in mine]
        rob = [row["int8_robustness_mean"] for row in mine]
        folder_cells = [cell([row["folders"][n] for row in mine if n in row["folders"]]) for n in names]
        seeds = ", ".join(str(row["seed"]) for row in mine)
        lines.append(f"| {recipe} | {len(mine)} | {seeds} | {cell(test)} | {cell(rob)} | " + " | ".join(folder_cells) + " |")
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    names = sorted({name for row in rows for name in row["folders"]})
    lines = ["| run | recipe | seed | format | train acc / loss | val acc / loss | test acc / loss | int8 robustness mean | "
             + "".join(f"int8 {n} | " for n in names) + "s/epoch | training wall time |",
             "|---|---|---:|---|---|---|---|---:|" + "---:|" * len(names) + "---:|---:|"]
    for row in rows:
        for name, _ in FORMATS:
            m = row["formats"][name]
            cells = [f"{m[s]['accuracy']:.3f} / {m[s]['loss']:.3f}" for s in ("train", "val", "test")]
            rob = f"{row['int8_robustness_mean']:.3f}" if name == "int8" else ""
            folder_cells = "".join((f"{row['folders'][n]:.3f} | " if name == "int8" and n in row["folders"] else " | ") for n in names)
            wall = f"{row['wall_seconds'] / 60:.1f} min" if row.get("wall_seconds") and name == "float" else ""
            spe = f"{row['seconds_per_epoch']:.1f}" if name == "float" else ""
            lines.append(f"| {Path(row['run']).name} | {row['recipe']} | {row['seed']} | {name} | {' | '.join(cells)} | {rob} | {folder_cells}{spe} | {wall} |")
    return "\n".join(lines)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None)
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Also write the numbers here.")
@click.option("--dev", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="A labelled folder scored whole (repeatable).")
@click.option("--heldout", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="A labelled folder scored on its held-out fifth (repeatable).")
def main(runs, data, json_out, dev, heldout):
    try:
        report(runs, data, json_out, dev, heldout)
    except EdgeSignsError as exc:  # a run folder without a file it needs: one line, not a traceback
        raise click.ClickException(str(exc)) from None


def report(runs, data, json_out, dev, heldout):
    signs = resolve_data(data)
    folders = {folder.name: load_labelled(folder) for folder in dev}
    folders.update({f"{folder.name} held out": own_split(load_labelled(folder), "heldout") for folder in heldout})
    rows = []
    for run in runs:
        click.echo(f"evaluating {run} ...", err=True)
        rows.append(run_report(run, signs, folders))
    click.echo(markdown(rows))
    click.echo()
    click.echo(by_recipe(rows))
    if json_out:
        write_json(json_out, rows)


if __name__ == "__main__":
    main()
