"""`edge-signs teach MODEL.tflite --own FOLDER --out FILE.tflite`: a personal head from a labelled folder, on the Pi.

The folder's held-out sessions/photos (the same hash split as `evaluate --split
heldout` and `finetune`) are never fitted on; the rest, or ``per_sign`` frames of
each sign drawn from it, give the int8 model's penultimate features, a softmax head
is fitted on them in numpy (edge/head.py), with SIGNS training images mixed in when
SIGNS is at hand, and the head is written into a copy of the model file
(edge/head_file.py). The written file is then scored on the held-out part.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_signs import config
from edge_signs.artifacts import check_output_file
from edge_signs.data import resolve_data, stratified_split
from edge_signs.edge.head import FitOptions, SoftmaxHead, check_frames, fit_head
from edge_signs.edge.head_file import read_site, snap, write_head_file
from edge_signs.edge.runtime import Classifier, sidecar_path
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr
from edge_signs.own_data import Labelled, load_labelled, own_split

HELD_GROUPS = "the folder's held-out sessions/photos (as evaluate --split heldout)"
HELD_REST = "the images not drawn (the folder has no session held out: for bursts of one session, near-copies of the fitted frames)"


@dataclass(frozen=True)
class TeachOptions:
    fit: FitOptions = field(default_factory=FitOptions)
    per_sign: int | None = None  # frames of each sign drawn from the folder's training part (None: all)
    signs: str | Path | None = None  # SIGNS folder to mix in; None: wherever SIGNS is found, if anywhere
    signs_per_sign: int = config.TEACH_SIGNS_PER_SIGN  # 0: none mixed in
    seed: int = config.TEACH_SEED
    threads: int = config.THREADS


@dataclass
class TeachResult:
    out: Path
    frames: list[int]  # fitted on, per sign
    signs_images: int  # SIGNS training images mixed in
    fit_seconds: float
    steps: int
    heldout: dict | None  # images, accuracy (written file), original_accuracy, agreement; None: nothing held out
    signs_test: dict | None  # accuracy of the written file and the original on SIGNS test; None: SIGNS not at hand

    def text(self) -> str:
        lines = [f"fitted on {sum(self.frames)} frames ({', '.join(f'{config.LABELS[k]}: {n}' for k, n in enumerate(self.frames))})"
                 + (f" and {self.signs_images} SIGNS images" if self.signs_images else "")
                 + f" in {self.fit_seconds * 1e3:.0f} ms ({self.steps} steps)"]
        if self.heldout:
            h = self.heldout
            lines.append(f"held-out accuracy {h['accuracy']:.3f} on {h['images']} images, {h['what']} (the original model: {h['original_accuracy']:.3f}); "
                         f"the written file agrees with the in-memory head on {h['agreement']:.3f} (with the float fit before rounding: {h['float_agreement']:.3f})")
        else:
            lines.append("held-out accuracy: none held out (every session/photo of the folder was fitted on)")
        if self.signs_test:
            lines.append(f"SIGNS test accuracy {self.signs_test['accuracy']:.3f} (the original model: {self.signs_test['original_accuracy']:.3f})")
        lines.append(f"wrote {self.out} and {sidecar_path(self.out).name}")
        return "\n".join(lines) + "\n"


def agreement(file_probs: np.ndarray, classes: np.ndarray) -> float:
    """Share of rows where the file's top-1 is ``classes``; a tie at the file's output resolution counts for any tied class."""
    if not len(classes):
        return float("nan")
    return float(np.mean(file_probs[np.arange(len(classes)), classes] >= file_probs.max(axis=1)))


def draw_per_sign(labels: np.ndarray, per_sign: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``per_sign`` items of each sign, drawn with ``seed`` (all of them when None)."""
    if per_sign is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=min(per_sign, int(np.sum(labels == c))), replace=False) for c in range(config.NUM_CLASSES)]
    return np.sort(np.concatenate(picked))


def signs_features(clf: Classifier, options: TeachOptions, log: Log) -> tuple[tuple[np.ndarray, np.ndarray] | None, object]:
    """(features, labels) of SIGNS training images to mix in, and the Signs found (for its test set); (None, None) without SIGNS."""
    if options.signs_per_sign <= 0:
        return None, None
    try:
        signs = resolve_data(options.signs, fetch=False, log=log)
    except EdgeSignsError as exc:
        if options.signs is not None:
            raise
        log(f"note: no SIGNS images mixed in ({exc}); the head may forget SIGNS' own set-up")
        return None, None
    fraction = min(1.0, options.signs_per_sign * config.NUM_CLASSES / len(signs.train))
    _, idx = stratified_split(signs.train.y, fraction, options.seed)
    _, feats = clf.features_batch(signs.train.x[idx])
    return (feats, signs.train.y[idx]), signs


def check_teach_paths(model: str | Path, out: str | Path) -> Path:
    """Before any work: the model is an int8 file whose head can be replaced, and --out (and its sidecar) can be written."""
    read_site(model)
    out = check_output_file(out, "--out", inputs=[model])
    check_output_file(sidecar_path(out), "--out", inputs=[model])
    if Path(out).suffix != ".tflite":
        raise EdgeSignsError(f"--out {out}: expected a .tflite file name")
    return Path(out)


def teach_folder(model: str | Path, folder: str | Path, out: str | Path, options: TeachOptions = TeachOptions(), *, log: Log = log_stderr) -> TeachResult:
    """Fit a personal head on a labelled folder's training part and write it into a copy of ``model`` (see the module's notes)."""
    model = Path(model)
    out = check_teach_paths(model, out)
    own = load_labelled(folder, log=log)
    held, held_what = _held_out(own), HELD_GROUPS
    train = own_split(own, "train")
    drawn = draw_per_sign(train.y, options.per_sign, options.seed)
    if held is None and options.per_sign is not None:  # one group only (e.g. a folder of single photos): score the rest
        held, held_what = train.subset(np.setdiff1d(np.arange(len(train)), drawn)), HELD_REST
    train = train.subset(drawn)
    check_frames(train.y, options.fit.min_per_sign, what=f"teach from {own.source} (its training part)")
    clf = Classifier(model, threads=options.threads, features=True)
    _, feats = clf.features_batch(train.x)
    mix, signs = signs_features(clf, options, log)
    site = read_site(model)
    fit_bias = site.head.bias is not None
    t0 = time.perf_counter()
    fitted = fit_head(feats, train.y, original=site.original(), signs=mix, options=options.fit, fit_bias=fit_bias)
    head = snap(site, fitted)
    fit_seconds = time.perf_counter() - t0
    fitted_on = feats if mix is None else np.concatenate([feats, mix[0]])
    record = {"data": str(Path(own.source).resolve()), "frames": train.counts(), "per_sign": options.per_sign, "signs_images": 0 if mix is None else len(mix[1]),
              "fit": asdict(options.fit), "seed": options.seed, "fit_seconds": round(fit_seconds, 4), "steps": fitted.steps,
              "heldout": held_what if held is not None and len(held) else None}
    write_head_file(model, head, out, fitted_on, record)
    written = Classifier(out, threads=options.threads)
    heldout = _score_heldout(clf, written, head, fitted, held)
    if heldout is not None:
        heldout["what"] = held_what
    return TeachResult(out, train.counts(), record["signs_images"], fit_seconds, fitted.steps, heldout, _score_signs(clf, written, signs))


def _held_out(own: Labelled) -> Labelled | None:
    try:
        return own_split(own, "heldout")
    except EdgeSignsError:  # no group held out: nothing to score
        return None


def _score_heldout(clf: Classifier, written: Classifier, head: SoftmaxHead, fitted: SoftmaxHead, held: Labelled | None) -> dict | None:
    """The written file on the held-out images, beside the original model; its agreement with the in-memory head
    (``head``, on the file's int8 grid) and with the float fit before rounding (``fitted``)."""
    if held is None or not len(held):
        return None
    original_probs, feats = clf.features_batch(held.x)
    probs = written.predict_batch(held.x)
    return {"images": len(held), "accuracy": float(np.mean(probs.argmax(1) == held.y)),
            "original_accuracy": float(np.mean(original_probs.argmax(1) == held.y)), "agreement": agreement(probs, head.predict(feats)),
            "float_agreement": agreement(probs, fitted.predict(feats))}


def _score_signs(clf: Classifier, written: Classifier, signs) -> dict | None:
    if signs is None:
        return None
    x, y = signs.test.x, signs.test.y
    return {"images": len(y), "accuracy": float(np.mean(written.predict_batch(x).argmax(1) == y)),
            "original_accuracy": float(np.mean(clf.predict_batch(x).argmax(1) == y))}
