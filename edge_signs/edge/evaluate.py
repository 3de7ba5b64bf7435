"""`edge-signs evaluate`: one table comparing model files on the SIGNS test set (or your own images).

For each model: what the file really is (read from its tensors, not its name),
size, accuracy, loss, per-class accuracy, a confusion matrix, top-1 agreement
with the first model, and latency per image from one harness for every format.

Models are run through a ``Runners`` registry (``edge_signs.runners``): ``.tflite``
files through the edge runtime (``TFLITE``, so a Pi can run this), and whatever else
the caller registered -- the CLI adds the trainer's Keras runner and int8 layer
diagnosis where TensorFlow is.

Several datasets (``--signs``/``--own`` repeated: SIGNS, a folder of your own images, its
held-out split) are scored side by side in one more table: the domain gap at a glance.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from edge_signs import config, metrics, perturb
from edge_signs.artifacts import check_output_dir, check_output_file, finite_or_none, write_json, write_text
from edge_signs.edge.cpu import cpu_info, int8_advice
from edge_signs.edge.eval_sets import EvalSet, signs_test_set
from edge_signs.edge.runtime import Backend, Classifier, check_tflite_file, read_sidecar, sidecar_path
from edge_signs.log import Log, log_stderr
from edge_signs.metrics import confusion_matrix
from edge_signs.plots import confusion_matrix_png, confusion_matrix_text
from edge_signs.runners import ModelKind, Runner, Runners


def tflite_runner(path: Path, threads: int, backend: Optional[Backend] = None) -> Runner:
    clf = Classifier(path, threads=threads, backend=backend)
    return Runner(path, clf.format, str(clf.backend), clf.predict_batch, clf.set_input, clf.interpreter.invoke)


def check_tflite_model(path: Path) -> None:
    """A TFLite file that exists, and metadata beside it (if any) that is its own; nothing is loaded."""
    read_sidecar(check_tflite_file(path))


TFLITE = ModelKind((".tflite",), ".tflite from 'edge-signs quantize'", check_tflite_model, tflite_runner)


def edge_runners() -> Runners:
    """What runs here without TensorFlow: .tflite files, and no int8 layer diagnosis."""
    return Runners([TFLITE])


def measure_latency(runner: Runner, image: np.ndarray, runs: int = config.LATENCY_RUNS, warmup: int = config.LATENCY_WARMUP) -> tuple[float, float]:
    """Median and 90th percentile milliseconds of one inference, after warm-up."""
    runner.prepare_one(image)
    for _ in range(warmup):
        runner.run_one()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        runner.run_one()
        times[i] = (time.perf_counter() - t0) * 1e3
    return float(np.percentile(times, 50)), float(np.percentile(times, 90))


@dataclass
class ModelReport:
    model: str
    format: str
    backend: str
    size_mb: float
    accuracy: float
    loss: float
    agreement: float  # top-1 agreement with the first model
    latency_ms_p50: float
    latency_ms_p90: float
    threads: int
    per_class_accuracy: list = field(default_factory=list)
    confusion: list = field(default_factory=list)
    datasets: dict = field(default_factory=dict)  # dataset name -> accuracy, loss, per-class accuracy, confusion


def evaluate_models(
    paths: list[str | os.PathLike],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    threads: int = config.THREADS,
    runs: int = config.LATENCY_RUNS,
    warmup: int = config.LATENCY_WARMUP,
    backend: Backend | None = None,
    also: list[EvalSet] = (),
    runners: Optional[Runners] = None,
    log: Log = log_stderr,
) -> list[ModelReport]:
    """Every model on the same images through the same harness; ``backend`` picks the TFLite interpreter.

    ``also``: further datasets each model is scored on while it is loaded (``ModelReport.datasets``).
    ``runners``: the model kinds to run (default: ``edge_runners()``).
    """
    runners = runners or edge_runners()
    for path in paths:  # every file and its metadata checked before the first model is scored
        runners.check(path)
    reports: list[ModelReport] = []
    reference = None
    for path in paths:
        runner = runners.open(path, threads, backend)
        log(f"evaluating {runner.path.name} ({runner.format}, {runner.backend})")
        probs = runner.predict(images)
        _warn_nonfinite(probs, runner.path.name, "images", log)
        pred = np.argmax(probs, axis=1)
        reference = pred if reference is None else reference
        p50, p90 = measure_latency(runner, images[0], runs, warmup)
        reports.append(
            ModelReport(
                model=str(runner.path),
                format=runner.format,
                backend=runner.backend,
                size_mb=runner.path.stat().st_size / 1e6,
                accuracy=metrics.accuracy(probs, labels),
                loss=metrics.cross_entropy(probs, labels),
                agreement=float(np.mean(pred == reference)),
                latency_ms_p50=p50,
                latency_ms_p90=p90,
                threads=threads,
                per_class_accuracy=metrics.per_class_accuracy(pred, labels, config.NUM_CLASSES),
                confusion=confusion_matrix(labels, pred, config.NUM_CLASSES).tolist(),
                datasets={s.name: _scores(runner.predict(s.x), s.y, f"{runner.path.name} on {s.name}", log) for s in also},
            )
        )
    return reports


def _warn_nonfinite(probs: np.ndarray, what: str, items: str, log: Log) -> None:
    bad = metrics.nonfinite_rows(probs)
    if bad:
        log(f"warning: {what}: {bad} of {len(probs)} {items} gave NaN or infinite probabilities, scored as class "
            f"{config.LABELS[0]} by argmax: the model is broken (re-run 'edge-signs quantize'; a float16 file can overflow)")


def _scores(probs: np.ndarray, labels: np.ndarray, what: str, log: Log) -> dict:
    _warn_nonfinite(probs, what, "images", log)
    pred = np.argmax(probs, axis=1)
    return {**metrics.summarize(probs, labels), "images": len(labels),
            "per_class_accuracy": metrics.per_class_accuracy(pred, labels, config.NUM_CLASSES),
            "confusion": confusion_matrix(labels, pred, config.NUM_CLASSES).tolist()}


def display_names(models: list[str]) -> list[str]:
    """File names, with their folder where two models share a name (runs/a/model_int8.tflite, runs/b/...)."""
    names = [Path(m).name for m in models]
    return [f"{Path(m).parent.name}/{n}" if names.count(n) > 1 else n for m, n in zip(models, names)]


def datasets_table(reports: list[ModelReport], sets: list[EvalSet]) -> str:
    """Accuracy of every model on every dataset: one row per model, one column per dataset."""
    lines = ["| model | format | " + " | ".join(f"{s.name} ({len(s.y)})" for s in sets) + " |",
             "|---|---|" + "---:|" * len(sets)]
    for r, name in zip(reports, display_names([r.model for r in reports])):
        lines.append(f"| {name} | {r.format} | " + " | ".join(f"{r.datasets[s.name]['accuracy']:.3f}" for s in sets) + " |")
    return "\n".join(lines)


def markdown_table(reports: list[ModelReport]) -> str:
    base = reports[0].latency_ms_p50 if reports else 1.0
    lines = [
        "| model | format | size (MB) | accuracy | loss | agreement | latency p50 (ms) | p90 (ms) | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, name in zip(reports, display_names([r.model for r in reports])):
        lines.append(
            f"| {name} | {r.format} | {r.size_mb:.1f} | {r.accuracy:.3f} | {r.loss:.3f} | "
            f"{r.agreement:.3f} | {r.latency_ms_p50:.2f} | {r.latency_ms_p90:.2f} | {base / r.latency_ms_p50:.2f}x |"
        )
    if reports:
        lines.append(f"\n{int(np.sum(reports[0].confusion))} test images; agreement and speed-up are relative to the first model; latency is one image, {reports[0].threads} thread(s), median and 90th percentile after warm-up.")
        runtimes = sorted({r.backend for r in reports})
        lines.append(f"Runtime: {', '.join(runtimes)}. CPU: {cpu_info().describe()}.")
    return "\n".join(lines)


def int8_speedup(reports: list[ModelReport]) -> float | None:
    """How much faster the int8 file runs than the float32 TFLite file of the same run, if both are there."""
    by_format = {r.format: r for r in reports}
    if "int8" not in by_format or "float32" not in by_format:
        return None
    return by_format["float32"].latency_ms_p50 / by_format["int8"].latency_ms_p50


def run_evaluation(
    paths: list[str | os.PathLike],
    sets,
    *,
    threads: int = config.THREADS,
    runs: int = config.LATENCY_RUNS,
    warmup: int = config.LATENCY_WARMUP,
    with_robustness: bool = False,
    runners: Optional[Runners] = None,
    log: Log = log_stderr,
) -> dict:
    """Everything `edge-signs evaluate` reports, as one JSON-able dict with its Markdown.

    ``sets``: the datasets to score (``load_eval_sets``), or a ``Signs`` for its test set. The
    first gets the full report (latency, confusion, robustness, int8 diagnosis); with more
    than one, a table scores every model on each. ``result["models"]`` holds one object
    per model; the int8 layer diagnosis and the robustness results are attached to the
    model they are about. ``runners``: the model kinds to run and the int8 diagnosis (default: ``edge_runners()``).
    """
    runners = runners or edge_runners()
    sets = list(sets) if isinstance(sets, (list, tuple)) else [signs_test_set(sets)]
    first = sets[0]
    reports = evaluate_models(paths, first.x, first.y, threads=threads, runs=runs, warmup=warmup,
                              also=sets if len(sets) > 1 else (), runners=runners, log=log)
    result: dict = {"models": [asdict(r) for r in reports], "cpu": cpu_info().describe()}
    by_model = {m["model"]: m for m in result["models"]}
    sections = _tables(reports, sets, log)
    findings = _diagnose_int8(reports, first.signs, runners, log) if first.signs is not None else []
    for f in findings:
        by_model[f["model"]]["int8_layer_errors"] = f
    if findings:
        sections.append("\n## Where int8 loses accuracy\n\n" + layer_table(findings))
    if with_robustness:
        log("robustness (test accuracy under each perturbation):")
        found = [robustness(r.model, first.x, first.y, threads=threads, runners=runners, log=log) for r in reports]
        for r in found:
            by_model[r["model"]]["robustness"] = r
        sections.append(f"\n## Robustness\n\n{first.name} accuracy under each camera-like perturbation on its own:\n\n" + robustness_table(found))
    result["data"] = {"name": first.name, "source": first.source, "sha256": first.sha256, "test_images": len(first.y)}
    result["datasets"] = [{"name": s.name, "source": s.source, "sha256": s.sha256, "images": len(s.y)} for s in sets]
    result["markdown"] = "\n".join(sections) + "\n"
    return result


def _tables(reports: list[ModelReport], sets: list[EvalSet], log: Log) -> list[str]:
    """The report's Markdown up to the diagnoses: the comparison, accuracy by dataset, the int8 note, each confusion matrix."""
    first = sets[0]
    sections = [f"Scored on {first.name} ({len(first.y)} images, {first.source}).\n\n" + markdown_table(reports)]
    if len(sets) > 1:
        sections.append("\n## Accuracy by dataset\n\n" + datasets_table(reports, sets))
    speedup = int8_speedup(reports)
    advice = int8_advice(speedup, cpu_info()) if speedup is not None else None
    if advice:
        log(f"note: {advice}")
        sections.append(f"\nNote: {advice}.")
    for r in reports:
        for s in sets:
            confusion = r.confusion if s is first else r.datasets[s.name]["confusion"]
            sections.append(f"\n{Path(r.model).name} ({r.format}) on {s.name}: confusion matrix, rows true, columns predicted:\n\n```\n"
                            f"{confusion_matrix_text(np.asarray(confusion), config.LABELS)}```")
    return sections


def confusion_png_names(models: list[str | os.PathLike]) -> list[str]:
    """The confusion-matrix picture of each model; same-named files from different runs get their folder's name too."""
    stems = [Path(m).stem for m in models]
    return [f"confusion_{Path(m).stem if stems.count(Path(m).stem) == 1 else f'{Path(m).parent.name}_{Path(m).stem}'}.png" for m in models]


def check_report_outputs(models: list[str | os.PathLike], out_dir: str | os.PathLike) -> None:
    """Before any work: the report folder is writable and no report file is one of the models or their metadata."""
    out = check_output_dir(out_dir, "--out")
    inputs = [p for m in models for p in (Path(m), sidecar_path(m))]
    for name in ("evaluation.json", "evaluation.md", *confusion_png_names(models)):
        check_output_file(out / name, "--out", inputs)


def write_report(result: dict, out_dir: str | os.PathLike) -> list[Path]:
    """evaluation.json, evaluation.md and a confusion-matrix PNG per model."""
    out = Path(out_dir)
    written = []
    for r, name in zip(result["models"], confusion_png_names([r["model"] for r in result["models"]])):
        written.append(confusion_matrix_png(np.asarray(r["confusion"]), config.LABELS, out / name,
                                            title=f"{Path(name).stem[len('confusion_'):]} ({r['format']}): {r['accuracy']:.3f}"))
    sets = result.get("datasets", [])
    if len(sets) > 1:  # every model on every further dataset, too
        for r, name in zip(result["models"], confusion_png_names([r["model"] for r in result["models"]])):
            for s in sets[1:]:
                scores = r["datasets"][s["name"]]
                slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in s["name"].lower())
                written.append(confusion_matrix_png(np.asarray(scores["confusion"]), config.LABELS, out / f"{Path(name).stem}_{slug}.png",
                                                    title=f"{Path(name).stem[len('confusion_'):]} ({r['format']}) on {s['name']}: {scores['accuracy']:.3f}"))
    write_json(out / "evaluation.json", finite_or_none({k: v for k, v in result.items() if k != "markdown"}))
    write_text(out / "evaluation.md", result["markdown"])
    return [out / "evaluation.json", out / "evaluation.md", *written]


# -- robustness ------------------------------------------------------------------------


def robustness(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray, *, threads: int = config.THREADS, seed: int = 0,
               runners: Optional[Runners] = None, log: Log = log_stderr) -> dict:
    """Accuracy on the test set under each camera-like perturbation on its own, and their mean."""
    runner = (runners or edge_runners()).open(path, threads)
    result = {"model": str(runner.path), "format": runner.format, "clean": metrics.accuracy(runner.predict(images), labels), "perturbations": {}}
    for name in perturb.names():
        acc = metrics.accuracy(runner.predict(perturb.apply(name, images, seed)), labels)
        result["perturbations"][name] = acc
        log(f"  {name:16s} {acc:.3f}")
    result["mean"] = float(np.mean(list(result["perturbations"].values())))
    return result


def robustness_table(results: list[dict]) -> str:
    names = list(results[0]["perturbations"]) if results else []
    header = "| perturbation | " + " | ".join(f"{Path(r['model']).name} ({r['format']})" for r in results) + " |"
    lines = [header, "|---|" + "---:|" * len(results)]
    lines.append("| clean | " + " | ".join(f"{r['clean']:.3f}" for r in results) + " |")
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{r['perturbations'][name]:.3f}" for r in results) + " |")
    lines.append("| **mean (perturbed)** | " + " | ".join(f"**{r['mean']:.3f}**" for r in results) + " |")
    return "\n".join(lines)


# -- where int8 loses accuracy ------------------------------------------------------------------


def int8_losses(reports: list[ModelReport], tolerance: float = config.INT8_TOLERANCE) -> list[tuple[ModelReport, float]]:
    """int8 files more than ``tolerance`` below the best float model in the same run, with their drop."""
    floats = [r.accuracy for r in reports if r.format in ("float32", "float16", "keras float32")]
    if not floats:
        return []
    best = max(floats)
    return [(r, best - r.accuracy) for r in reports if r.format == "int8" and best - r.accuracy > tolerance]


def _diagnose_int8(reports: list[ModelReport], signs, runners: Runners, log: Log) -> list[dict]:
    """Which layers lose accuracy, by the diagnosis ``runners`` has (the trainer's quantization debugger); else where to run it."""
    losses = int8_losses(reports)
    if losses and runners.diagnose_int8 is not None:
        return runners.diagnose_int8(losses, signs, log)
    for r, drop in losses:
        log(f"{Path(r.model).name}: int8 loses {drop:.3f} accuracy against float; run 'edge-signs evaluate' "
            f"where TensorFlow and its source model are, to see which layers lose it")
    return []


def layer_table(findings: list[dict]) -> str:
    lines = []
    for f in findings:
        lines += [f"{Path(f['model']).name}: {f['accuracy_drop']:.3f} below float; layers with the largest int8 error (RMSE in quantization steps):", ""]
        lines += ["| layer | op | rmse / scale |", "|---|---|---:|"]
        lines += [f"| {row['layer'][:80]} | {row['op']} | {row['rmse_over_scale']:.2f} |" for row in f["layers"]]
        lines.append("")
    return "\n".join(lines)
