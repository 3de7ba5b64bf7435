#!/usr/bin/env python3
"""How well a personal head learns from a few frames per sign, and how fast it is refitted: docs/teach.md's tables.

    python tools/teach_report.py runs/default-s0/model_int8.tflite --data ../shared/datasets/sld-dev \\
        --data ../shared/datasets/hands-webcam --signs ../shared/datasets/signs --per-sign 5,10,20 --draws 5

For each folder the int8 model's features of every image are computed once. For
each number of frames per sign and each draw (seed 0, 1, ...), that many frames of
each sign are drawn from the folder's training part and a head is fitted on them
with each variant of the options (the defaults; without the prior; without SIGNS;
l2 ten times smaller and larger), rounded to the file's int8 grid as `teach`
writes it. It is scored on the folder's held-out sessions/photos, or, where the
folder holds none out (sld-dev: single photos of other people), on every image not
drawn; and on SIGNS test. Accuracy: mean and spread (min-max) over the draws.
The defaults' first draw is also written to a file and reloaded with the
interpreter: its accuracy and its agreement with the in-memory head are printed.

Then the refit time: the default fit on 10 frames per sign (60 frames, with the
SIGNS images mixed in as `teach` does, and without), median of --repeat fits, wall
and CPU time. Wall times mean something only on an idle machine; run it with
OPENBLAS_NUM_THREADS=1 too, to see what one core does (a Pi's camera loop keeps
the others busy).
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_signs import config  # noqa: E402
from edge_signs.artifacts import write_json  # noqa: E402
from edge_signs.edge.head import FitOptions, fit_head  # noqa: E402
from edge_signs.edge.head_file import read_site, snap, write_head_file  # noqa: E402
from edge_signs.edge.runtime import Classifier  # noqa: E402
from edge_signs.edge.teach import TeachOptions, agreement, draw_per_sign, signs_features  # noqa: E402
from edge_signs.log import quiet  # noqa: E402
from edge_signs.own_data import load_labelled, own_split  # noqa: E402

DEFAULT = FitOptions()
VARIANTS = {
    "defaults": DEFAULT,
    "no prior": dataclasses.replace(DEFAULT, prior=False),
    "no SIGNS": dataclasses.replace(DEFAULT, signs_share=0.0),
    "l2 / 10": dataclasses.replace(DEFAULT, l2=DEFAULT.l2 / 10),
    "l2 x 10": dataclasses.replace(DEFAULT, l2=DEFAULT.l2 * 10),
}


def folder_split(folder: Path):
    """(training part, held-out part, what is held out) as `teach` splits the folder."""
    own = load_labelled(folder, log=quiet)
    try:
        return own_split(own, "train"), own_split(own, "heldout"), "held-out sessions/photos"
    except Exception:  # one group: the rest of the folder is scored (see teach_folder)
        return own, None, "the rest"


def report_folder(clf: Classifier, site, folder: Path, per_signs: list[int], draws: int, mix, signs, log) -> list[dict]:
    train, held, what = folder_split(folder)
    _, train_f = clf.features_batch(train.x)
    held_f = clf.features_batch(held.x)[1] if held is not None else None
    signs_test_f = clf.features_batch(signs.test.x)[1] if signs is not None else None
    original = site.original()
    rows = []
    for n in per_signs:
        for name, options in VARIANTS.items():
            accs, signs_accs = [], []
            for seed in range(draws):
                drawn = draw_per_sign(train.y, n, seed)
                if held is None:
                    rest = np.setdiff1d(np.arange(len(train)), drawn)
                    eval_f, eval_y = train_f[rest], train.y[rest]
                else:
                    eval_f, eval_y = held_f, held.y
                head = snap(site, fit_head(train_f[drawn], train.y[drawn], original=original, signs=mix, options=options))
                accs.append(float(np.mean(head.predict(eval_f) == eval_y)))
                if signs_test_f is not None:
                    signs_accs.append(float(np.mean(head.predict(signs_test_f) == signs.test.y)))
            rows.append({"folder": folder.name, "scored_on": what, "per_sign": n, "variant": name, "images": len(eval_y),
                         "accuracy": _spread(accs), "signs_test": _spread(signs_accs) if signs_accs else None,
                         "original": float(np.mean(original.predict(eval_f) == eval_y))})
            log(f"{folder.name} {n}/sign {name}: {_fmt(rows[-1]['accuracy'])}")
    return rows


def written_check(model: Path, clf: Classifier, site, folder: Path, n: int, mix) -> dict:
    """The defaults' first draw written to a file and reloaded: its accuracy and agreement with the in-memory head."""
    train, held, _ = folder_split(folder)
    drawn = draw_per_sign(train.y, n, 0)
    if held is None:
        held = train.subset(np.setdiff1d(np.arange(len(train)), drawn))
    train = train.subset(drawn)
    _, feats = clf.features_batch(train.x)
    head = snap(site, fit_head(feats, train.y, original=site.original(), signs=mix))
    with tempfile.TemporaryDirectory(prefix="teach-report-") as tmp:
        out = Path(tmp) / "personal.tflite"
        write_head_file(model, head, out, feats if mix is None else np.concatenate([feats, mix[0]]), {})
        probs = Classifier(out).predict_batch(held.x)
    held_f = clf.features_batch(held.x)[1]
    return {"folder": folder.name, "per_sign": n, "accuracy": float(np.mean(probs.argmax(1) == held.y)),
            "agreement": agreement(probs, head.predict(held_f))}


def refit_times(clf: Classifier, site, folder: Path, mix, repeat: int) -> dict:
    train, _, _ = folder_split(folder)
    drawn = draw_per_sign(train.y, 10, 0)
    _, feats = clf.features_batch(train.x[drawn])
    out = {}
    for name, m in (("60 frames + SIGNS", mix), ("60 frames alone", None)):
        times, cpu, steps = [], [], []
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            head = fit_head(feats, train.y[drawn], original=site.original(), signs=m)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            steps.append(head.steps)
        out[name] = {"median_s": statistics.median(times), "max_s": max(times), "cpu_median_s": statistics.median(cpu), "steps": statistics.median(steps),
                     "rows": len(feats) + (0 if m is None else len(m[1]))}
    return out


def _spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "draws": len(values)}


def _fmt(s: dict | None) -> str:
    return "-" if s is None else f"{s['mean']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


@click.command()
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.option("--data", "folders", multiple=True, required=True, type=click.Path(exists=True, path_type=Path), help="A labelled folder; repeatable.")
@click.option("--signs", "signs_dir", type=click.Path(exists=True, path_type=Path), default=None, help="SIGNS, mixed in and scored (test).")
@click.option("--per-sign", default="5,10,20", show_default=True, help="Frames per sign, comma-separated.")
@click.option("--draws", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--repeat", type=click.IntRange(min=1), default=20, show_default=True, help="Timed refits.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None)
def main(model, folders, signs_dir, per_sign, draws, repeat, json_out):
    per_signs = [int(x) for x in per_sign.split(",") if x.strip()]
    clf = Classifier(model, features=True)
    site = read_site(model)
    mix, signs = signs_features(clf, TeachOptions(signs=signs_dir), quiet)

    def log(msg):
        click.echo(msg, err=True)

    rows = [row for folder in folders for row in report_folder(clf, site, folder, per_signs, draws, mix, signs, log)]
    checks = [written_check(model, clf, site, folder, 10, mix) for folder in folders]
    times = refit_times(clf, site, folders[0], mix, repeat)
    click.echo(f"{model} ({clf.feature_size} features), {draws} draws, SIGNS {'mixed in: ' + str(len(mix[1])) + ' images' if mix else 'not mixed in'}")
    click.echo("| folder (scored on) | frames/sign | variant | accuracy | SIGNS test | own head |")
    click.echo("|---|---:|---|---:|---:|---:|")
    for r in rows:
        click.echo(f"| {r['folder']} ({r['scored_on']}, {r['images']}) | {r['per_sign']} | {r['variant']} | {_fmt(r['accuracy'])} | {_fmt(r['signs_test'])} | {r['original']:.3f} |")
    for c in checks:
        click.echo(f"written file, {c['folder']}, {c['per_sign']}/sign, draw 0: accuracy {c['accuracy']:.3f}, agreement with the in-memory head {c['agreement']:.3f}")
    for name, t in times.items():
        click.echo(f"refit, {name} ({t['rows']} rows): median {t['median_s'] * 1e3:.1f} ms, max {t['max_s'] * 1e3:.1f} ms, "
                   f"CPU {t['cpu_median_s'] * 1e3:.1f} ms (median, every thread), {t['steps']:.0f} steps")
    if json_out:
        write_json(json_out, {"model": str(model), "defaults": dataclasses.asdict(DEFAULT), "rows": rows, "written": checks, "refit": times,
                              "signs_per_sign": config.TEACH_SIGNS_PER_SIGN})


if __name__ == "__main__":
    main()
