"""The Pi side (`live`, `evaluate`) with bad outputs and inputs: output paths checked before the work, nothing lost or
half-written, metadata that must belong to its model, labels CSVs as spreadsheets save them, and
strict JSON.

Runs without TensorFlow on copies of the committed tiny models (tests/fixtures); the other bad
inputs (videos, labels CSVs, edited sidecars, a model with a NaN weight) are made here. CLI runs go
through a fresh process, as a user would run them.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge.live import LiveOptions, run_live
from edge_signs.edge.runtime import Classifier
from edge_signs.edge.truth import read_label_ranges
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from tests.conftest import REPO, run_cli
from tests.faults import UNWRITABLE, digests, hidden_files, nan_float32_tflite, one_line_error, strict_json

VIDEO_FRAMES = 20


@pytest.fixture
def model(tiny_models, tmp_path) -> Path:
    """A copy of the tiny int8 model and its sidecar in tmp_path (tests may aim outputs at them)."""
    for suffix in (".tflite", ".json"):
        shutil.copy(tiny_models["int8"].with_suffix(suffix), tmp_path / f"m_int8{suffix}")
    return tmp_path / "m_int8.tflite"


@pytest.fixture
def video(tmp_path) -> Path:
    """A 20-frame MJPG clip."""
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (128, 128))
    for k in range(VIDEO_FRAMES):
        writer.write(np.full((128, 128, 3), (k * 12) % 255, np.uint8))
    writer.release()
    assert path.stat().st_size > 0
    return path


def _edit_sidecar(model: Path, **changes) -> None:
    meta = json.loads(model.with_suffix(".json").read_text())
    meta.update(changes)
    model.with_suffix(".json").write_text(json.dumps(meta))


def _nan_float32(tiny_models, folder: Path) -> Path:
    path = nan_float32_tflite(tiny_models["float32"], folder / "nan_float32.tflite")
    assert np.isnan(Classifier(path).predict_rgb(np.zeros((64, 64, 3), np.uint8)).probs).all()
    return path


TESTSET = ["--testset", "--headless", "--max-frames", "5", "--status-every", "0"]


# -- outputs checked before the work; nothing lost ---------------------------------------------------


def test_live_unwritable_record_keeps_the_old_json_lines(model, signs_dir, tmp_path):
    """`live ... --json prev.jsonl --record /read-only/x.avi` fails before the run, and the existing
    prev.jsonl keeps every byte."""
    prev = tmp_path / "prev.jsonl"
    prev.write_text('{"frame": 0, "label": "3"}\n')
    before = digests(prev, model, model.with_suffix(".json"))
    proc = run_cli("live", model, *TESTSET, "--signs", signs_dir, "--json", prev, "--record", UNWRITABLE / "x.avi")
    one_line_error(proc, "--record", "not writable")
    assert digests(*before) == before
    assert hidden_files(tmp_path) == []


@pytest.mark.parametrize("target", ["sidecar", "model", "labels CSV", "video"])
def test_live_json_onto_an_input_of_the_run_is_refused(model, video, tmp_path, target):
    """`live ... --json run/model_int8.json` would overwrite the model's own sidecar: no output may be
    an input of the same run (the model, its metadata, the labels CSV)."""
    labels = tmp_path / "l.csv"
    labels.write_text("start_frame,end_frame,label\n0,4,1\n")
    path = {"sidecar": model.with_suffix(".json"), "model": model, "labels CSV": labels, "video": video}[target]
    before = digests(model, model.with_suffix(".json"), labels, video)
    proc = run_cli("live", model, "--video", video, "--labels", labels, "--headless", "--status-every", "0", "--json", path)
    one_line_error(proc, "--json", "is an input of this run")
    assert digests(*before) == before
    assert Classifier(model).labels == config.LABELS  # the model still loads with its own metadata
    assert hidden_files(tmp_path) == []


def test_live_unwritable_report_is_refused_before_any_frame(model, signs_dir, tmp_path):
    """`--report` to a read-only folder is found before the run, so no summary is lost and no hidden
    temp file is left."""
    seen = []
    with pytest.raises(EdgeSignsError, match="--report .*not writable"):
        run_live(model, LiveOptions(testset=True, data=signs_dir, headless=True, status_interval=0, report=UNWRITABLE / "report",
                                    json_path=tmp_path / "frames.jsonl"), log=quiet, on_frame=lambda r: seen.append(r.frame))
    assert seen == []
    assert not (tmp_path / "frames.jsonl").exists() and hidden_files(tmp_path) == []
    # The CLI checks it before even loading the data: a missing --data is not what it complains about.
    proc = run_cli("live", model, *TESTSET, "--signs", tmp_path / "no-such-data", "--report", UNWRITABLE / "report")
    one_line_error(proc, "--report", "not writable")


def test_live_record_onto_an_existing_folder_is_refused(model, signs_dir, tmp_path):
    """`--record` onto an existing directory is refused before the run (a summary lost and a hidden
    temp file otherwise)."""
    folder = tmp_path / "x.avi"
    (folder / "keep").mkdir(parents=True)
    proc = run_cli("live", model, *TESTSET, "--signs", signs_dir, "--record", folder, "--report", tmp_path / "report")
    one_line_error(proc, "--record", "is a folder")
    assert [p.name for p in folder.iterdir()] == ["keep"]
    assert not (tmp_path / "report").exists() and hidden_files(tmp_path) == []


def test_evaluate_unwritable_out_is_refused_before_any_work(model, tmp_path):
    """`evaluate` checks its report folder first (before even the data is looked for): otherwise all
    the work would be done and no table printed."""
    proc = run_cli("evaluate", model, "--out", UNWRITABLE / "ev", "--own", tmp_path / "no-such-data")
    one_line_error(proc, "--out", "not writable")


def test_evaluate_report_onto_a_models_metadata_is_refused(tiny_models, signs_dir, tmp_path):
    """Every output path is checked not to be an input of the same run: a model named
    evaluation.tflite has its metadata in evaluation.json, where the report would go."""
    model = tmp_path / "evaluation.tflite"
    shutil.copy(tiny_models["int8"], model)
    shutil.copy(tiny_models["int8"].with_suffix(".json"), model.with_suffix(".json"))
    before = digests(model, model.with_suffix(".json"))
    proc = run_cli("evaluate", model, "--signs", signs_dir, "--runs", 1, "--warmup", 0)
    one_line_error(proc, "evaluation.json", "is an input of this run")
    assert digests(*before) == before
    assert not (tmp_path / "evaluation.md").exists()


def test_kill_9_while_recording_leaves_a_temp_file_the_next_run_removes(model, signs_dir, tmp_path):
    """kill -9 during `live --record` leaves a hidden temp video, which the next run cleans up: a
    killed run leaves no hidden temp files behind for good."""
    record, jsonl = tmp_path / "out.avi", tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_signs", "live", str(model), "--testset", "--loop", "--headless", "--status-every", "0",
         "--signs", str(signs_dir), "--record", str(record), "--json", str(jsonl)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.glob(".out.jsonl*") if p.stat().st_size > 0]
            if temps and list(tmp_path.glob(".out.avi*")):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the recording never started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not record.exists() and not jsonl.exists()  # nothing unfinished published
    left = hidden_files(tmp_path)
    assert any(name.startswith(".out.avi") for name in left), left  # what a kill -9 leaves

    again = run_cli("live", model, *TESTSET, "--signs", signs_dir, "--record", record, "--json", jsonl)
    assert again.returncode == 0, again.stderr
    assert hidden_files(tmp_path) == []  # the killed run's temporaries are gone
    cap = cv2.VideoCapture(str(record))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 5 and len(jsonl.read_text().splitlines()) == 5


# -- labels CSVs -----------------------------------------------------------------------------------------


def test_labels_csv_with_a_utf8_bom_is_accepted(model, video, tmp_path):
    """A labels CSV saved by a spreadsheet (UTF-8 with a byte-order mark) is read like any other:
    the mark is not part of the header."""
    labels = tmp_path / "l.csv"
    labels.write_bytes(b"\xef\xbb\xbfstart_frame,end_frame,label\r\n0,4,1\r\n")
    ranges = read_label_ranges(labels, config.LABELS)
    assert [ranges.lookup(f) for f in (0, 4, 5)] == [1, 1, None]
    proc = run_cli("live", model, "--video", video, "--labels", labels, "--headless", "--status-every", "0")
    assert proc.returncode == 0, proc.stderr
    assert "/5 frames)" in next(ln for ln in proc.stdout.splitlines() if ln.startswith("accuracy "))  # frames 0..4 scored
    assert "warning" not in proc.stdout + proc.stderr


def test_labels_csv_with_non_utf8_bytes_is_one_line(model, video, tmp_path):
    """A labels CSV with non-UTF-8 bytes is a one-line error, not a traceback."""
    labels = tmp_path / "l.csv"
    labels.write_bytes(b"start_frame,end_frame,label\n0,4,\xff\n")
    proc = run_cli("live", model, "--video", video, "--labels", labels, "--headless", "--status-every", "0")
    one_line_error(proc, str(labels), "UTF-8")


@pytest.mark.parametrize("row, words", [
    ("0,4,\u00b2", "unknown label '\u00b2'"),  # superscript two: str.isdigit() is True, int() fails
    ("0,4,\u0663", "unknown label '\u0663'"),  # Arabic-Indic three: int() would read it as 3
    ("\uff10,4,1", "must be integers"),  # fullwidth zero as a frame number
])
def test_labels_csv_accepts_only_ascii_numbers_and_label_names(model, video, tmp_path, row, words):
    """A labels CSV with a label '²' is a one-line error; other Unicode digits are not read as classes
    or frame numbers either."""
    labels = tmp_path / "l.csv"
    labels.write_text(f"start_frame,end_frame,label\n{row}\n", encoding="utf-8")
    with pytest.raises(EdgeSignsError, match="row 2"):
        read_label_ranges(labels, config.LABELS)
    if "\u00b2" in row:
        proc = run_cli("live", model, "--video", video, "--labels", labels, "--headless", "--status-every", "0")
        one_line_error(proc, str(labels), words)


def test_labels_running_past_the_end_of_the_video_give_a_warning(model, video, tmp_path):
    """A labels CSV whose ranges run past the end of the video: the frames it had are scored, and a
    warning says so."""
    labels = tmp_path / "l.csv"
    labels.write_text("0,4,1\n10,60,2\n")
    summary = run_live(model, LiveOptions(video=str(video), labels_csv=labels, headless=True, status_interval=0, report=tmp_path / "rep"),
                       log=quiet)
    assert summary.frames == VIDEO_FRAMES and summary.scored == 5 + 10
    (warning,) = summary.warnings
    assert f"{60 - VIDEO_FRAMES + 1} labelled frame(s) were never reached" in warning and str(labels) in warning
    assert strict_json((tmp_path / "rep" / "live_summary.json").read_text())["warnings"] == [warning]  # kept in the report
    proc = run_cli("live", model, "--video", video, "--labels", labels, "--headless", "--status-every", "0")
    assert proc.returncode == 0, proc.stderr
    assert f"warning: {warning}" in proc.stdout


def test_labels_within_the_video_or_a_run_stopped_early_give_no_warning(model, video, tmp_path):
    """The warning is only for frames the video never reached: not for a run stopped early."""
    labels = tmp_path / "l.csv"
    labels.write_text(f"0,{VIDEO_FRAMES - 1},1\n")
    assert run_live(model, LiveOptions(video=str(video), labels_csv=labels, headless=True, status_interval=0), log=quiet).warnings == []
    stopped = run_live(model, LiveOptions(video=str(video), labels_csv=labels, headless=True, status_interval=0, max_frames=5), log=quiet)
    assert stopped.frames == 5 and stopped.warnings == []  # the user stopped it: not a short video


def test_truncated_video_gives_a_warning(model, video, tmp_path):
    """A truncated video is scored on the frames it has, with a warning for the labelled ones it lost."""
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    labels = tmp_path / "l.csv"
    labels.write_text(f"0,{VIDEO_FRAMES - 1},1\n")
    proc = run_cli("live", model, "--video", cut, "--labels", labels, "--headless", "--status-every", "0")
    assert proc.returncode == 0, proc.stderr
    frames = int(proc.stdout.split(" frames from ")[0].splitlines()[-1])
    assert 0 < frames < VIDEO_FRAMES
    assert f"warning: {labels}: {VIDEO_FRAMES - frames} labelled frame(s) were never reached" in proc.stdout


# -- metadata that must belong to its model ----------------------------------------------------------------


def test_sidecar_of_another_model_is_refused_by_live_and_evaluate(model, tiny_models, signs_dir, tmp_path):
    """Loading a model whose metadata does not match it (its tflite_sha256) is an error that says so,
    in live and in evaluate."""
    _edit_sidecar(model, tflite_sha256="0" * 64)
    one_line_error(run_cli("live", model, *TESTSET, "--signs", signs_dir), "metadata of another model")
    one_line_error(run_cli("evaluate", model, "--signs", signs_dir, "--out", tmp_path / "ev", "--runs", 1, "--warmup", 0),
                    "metadata of another model", before_work=False)
    assert not (tmp_path / "ev").exists()
    # Second of two models: refused before the first one is scored, not after.
    proc = run_cli("evaluate", tiny_models["int8"], model, "--signs", signs_dir, "--out", tmp_path / "ev", "--runs", 1, "--warmup", 0)
    one_line_error(proc, "metadata of another model", before_work=False)
    assert "evaluating" not in proc.stderr


@pytest.mark.parametrize("labels", [
    [0, 1, 2, 3, 4, 5],  # ints
    [["0"], ["1"], ["2"], ["3"], ["4"], ["5"]],  # nested lists
    ["5", "4", "3", "2", "1", "0"],  # permuted: a 0-finger image would be reported as "5"
    ["1", "0", "2", "3", "4", "5"],
], ids=["ints", "nested", "reversed", "swapped"])
def test_sidecar_labels_that_are_not_the_classes_in_order_are_refused(model, signs_dir, video, tmp_path, labels):
    """Sidecar labels that are ints, nested lists or permuted are refused (live would report a
    0-finger image with truth "5")."""
    _edit_sidecar(model, labels=labels)
    one_line_error(run_cli("live", model, *TESTSET, "--signs", signs_dir), "labels", "not the classes in the model's output order")
    csv = tmp_path / "l.csv"
    csv.write_text("0,4,5\n")  # --labels names classes through the sidecar's labels
    one_line_error(run_cli("live", model, "--video", video, "--labels", csv, "--headless"), "not the classes in the model's output order")


def test_evaluating_models_whose_label_sets_differ_is_refused(model, tiny_models, signs_dir, tmp_path):
    """Models whose label sets differ are not compared: their agreement would mean nothing."""
    other = tmp_path / "other_int8.tflite"
    shutil.copy(model, other)
    shutil.copy(model.with_suffix(".json"), other.with_suffix(".json"))
    _edit_sidecar(other, labels=["a", "b", "c", "d", "e", "f"])
    proc = run_cli("evaluate", model, other, "--signs", signs_dir, "--out", tmp_path / "ev", "--runs", 1, "--warmup", 0)
    one_line_error(proc, str(other.with_suffix(".json")), "labels", before_work=False)
    assert not (tmp_path / "ev" / "evaluation.json").exists()


# -- strict JSON -------------------------------------------------------------------------------------------


def test_evaluate_json_is_strict_for_a_model_giving_nan(tiny_models, signs_dir, tmp_path):
    """JSON written by the project is always strict JSON, in every output: `evaluate --json` of a
    model giving NaN has null for a loss that is not a number."""
    nan_model = _nan_float32(tiny_models, tmp_path)
    proc = run_cli("evaluate", tiny_models["int8"], nan_model, "--json", "--signs", signs_dir, "--out", tmp_path / "ev",
                   "--runs", 2, "--warmup", 0)
    assert proc.returncode == 0, proc.stderr
    printed = strict_json(proc.stdout)
    assert [Path(r["model"]).name for r in printed] == ["tiny_int8.tflite", "nan_float32.tflite"]
    assert printed[0]["loss"] is not None and printed[1]["loss"] is None
    written = strict_json((tmp_path / "ev" / "evaluation.json").read_text())
    assert written["models"][1]["loss"] is None
    # Said, not silently scored as class 0: one warning, for the broken model only.
    warnings = [ln for ln in proc.stderr.splitlines() if "NaN or infinite probabilities" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("warning: nan_float32.tflite: 120 of 120 images gave NaN"), proc.stderr


def test_live_summary_json_isstrict_json(tmp_path):
    """JSON written by the project is always strict JSON: live_summary.json of a run that ended before
    its first frame (no timings: NaN medians and start-up) holds nulls."""
    from edge_signs.artifacts import write_json
    from edge_signs.edge.live import LiveSummary

    nan = float("nan")
    summary = LiveSummary(frames=0, reason="interrupted (Ctrl-C)", source="camera 0", model="m", labels=config.LABELS, seconds=0.0,
                          fps=0.0, median_inference_ms=nan, median_overhead_ms=nan, startup_s=nan)
    write_json(tmp_path / "live_summary.json", summary.to_dict())
    written = strict_json((tmp_path / "live_summary.json").read_text())
    assert written["median_inference_ms"] is None and written["startup_s"] is None and written["frames"] == 0


def test_live_json_lines_are_strict_for_a_model_giving_nan(tiny_models, signs_dir, tmp_path):
    """JSON written by the project is always strict JSON (allow_nan=False), in every output: the JSON
    lines of `live --json`, with a model whose probabilities are NaN."""
    nan_model = _nan_float32(tiny_models, tmp_path)
    jsonl = tmp_path / "frames.jsonl"
    proc = run_cli("live", nan_model, *TESTSET, "--signs", signs_dir, "--json", jsonl)
    assert proc.returncode == 0, proc.stderr
    lines = [strict_json(line) for line in jsonl.read_text().splitlines()]
    assert len(lines) == 5 and all(ln["confidence"] is None and ln["smoothed_confidence"] is None for ln in lines)
    assert "warning: 5 of 5 frames gave NaN or infinite probabilities" in proc.stdout


def test_labels_csv_rows_starting_on_the_same_frame_name_both_rows(tmp_path):
    """Two rows that both start at frame 0 overlap: the message names each of them, not one row twice."""
    labels = tmp_path / "l.csv"
    labels.write_text("start_frame,end_frame,label\n0,4,1\n0,9,2\n")
    with pytest.raises(EdgeSignsError) as caught:
        read_label_ranges(labels, config.LABELS)
    message = str(caught.value)
    assert "row 2" in message and "row 3" in message and "overlap" in message, message
