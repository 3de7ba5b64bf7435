"""Teaching on the Pi: the penultimate features, the numpy head fit, the int8 file writer, `teach --own`.

Runs without TensorFlow on the committed tiny models (tests/fixtures): their
``features`` output is the dense layer's 64 inputs. The written file is reloaded
with the real interpreter and must repeat the in-memory head.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge.head import FitOptions, SoftmaxHead, check_frames, fit_head, softmax
from edge_signs.edge.head_file import read_site, snap, write_head_file
from edge_signs.edge.runtime import Classifier, read_sidecar
from edge_signs.edge.teach import agreement, draw_per_sign
from edge_signs.edge.teach_live import Teacher
from edge_signs.edge.tflite_file import Table, read_graph
from edge_signs.errors import EdgeSignsError
from edge_signs.own_data import load_labelled, own_split
from tests.conftest import FIXTURES, run_cli
from tests.faults import one_line_error

PROBS_ONLY = FIXTURES / "tiny_int8_probs_only.tflite"


@pytest.fixture(scope="module")
def signs_features(tiny_models, signs):
    """The tiny int8 model's probabilities and features of SIGNS train and test."""
    clf = Classifier(tiny_models["int8"], features=True)
    return clf.features_batch(signs.train.x), clf.features_batch(signs.test.x)


# -- the features -----------------------------------------------------------------------------


def test_every_fixture_gives_its_features_from_its_second_output(tiny_models, signs):
    x = signs.test.x[:40]
    for fmt, path in tiny_models.items():
        clf = Classifier(path)
        assert clf.has_features and clf.feature_size == 64, fmt
        probs, feats = clf.features_batch(x)
        assert np.array_equal(probs, clf.predict_batch(x)) and np.isfinite(feats).all() and (feats >= 0).all(), fmt  # after a ReLU
    assert read_sidecar(tiny_models["int8"])["features"]["size"] == 64


def test_features_are_the_last_layers_input(tiny_models, signs_features):
    (_, _), (probs, feats) = signs_features
    own_head = read_site(tiny_models["int8"]).original()
    assert agreement(probs, own_head.predict(feats)) >= 0.98
    assert np.abs(own_head.probs(feats) - probs).max() < 0.05


def _swap_outputs(path: Path, out: Path) -> None:
    blob = bytearray(path.read_bytes())
    subgraph = Table(blob, struct.unpack_from("<I", blob, 0)[0]).tables(2)[0]
    start, n = subgraph.vector(2)
    assert n == 2
    a, b = struct.unpack_from("<ii", blob, start)
    struct.pack_into("<ii", blob, start, b, a)
    out.write_bytes(bytes(blob))


def test_outputs_are_told_apart_by_name_not_order(tiny_models, signs, tmp_path):
    swapped = tmp_path / "swapped.tflite"
    _swap_outputs(tiny_models["int8"], swapped)
    assert read_graph(swapped.read_bytes()).outputs == tuple(reversed(read_graph(tiny_models["int8"].read_bytes()).outputs))
    x = signs.test.x[:20]
    mine, theirs = Classifier(swapped).features_batch(x), Classifier(tiny_models["int8"]).features_batch(x)
    assert np.array_equal(mine[0], theirs[0]) and np.array_equal(mine[1], theirs[1])


def test_two_outputs_of_other_names_are_refused(tiny_models, tmp_path):
    blob = tiny_models["int8"].read_bytes()
    renamed = tmp_path / "renamed.tflite"
    renamed.write_bytes(blob.replace(b"features", b"featurez"))
    with pytest.raises(EdgeSignsError, match="two outputs named 'probs'"):
        Classifier(renamed)


def test_a_file_without_the_features_output_gives_them_when_asked(tiny_models, signs):
    x = signs.test.x[:60]
    plain = Classifier(PROBS_ONLY)
    assert not plain.has_features
    with pytest.raises(EdgeSignsError, match="features were not asked for"):
        plain.output_features()
    probs, feats = Classifier(PROBS_ONLY, features=True).features_batch(x)
    assert np.array_equal(probs, plain.predict_batch(x))
    assert agreement(probs, read_site(PROBS_ONLY).original().predict(feats)) >= 0.98


# -- the head fit ---------------------------------------------------------------------------------


def _blobs(rng, n_per_class: int, dim: int = 256, shift: float = 0.0):
    """Non-negative (ReLU-like) features of six noisy classes; ``shift`` moves every class (another set-up)."""
    centres = np.abs(np.random.default_rng(7).normal(size=(config.NUM_CLASSES, dim))) + shift * np.random.default_rng(8).normal(size=dim)
    y = np.repeat(np.arange(config.NUM_CLASSES), n_per_class)
    return np.maximum(centres[y] + rng.normal(scale=1.5, size=(len(y), dim)), 0).astype(np.float32), y


def _objective_gradient(head: SoftmaxHead, x, y, w, lam, prior) -> np.ndarray:
    """The weighted cross-entropy + L2 objective's gradient in the weights, written out independently of head.py."""
    p = softmax(x.astype(np.float64) @ head.weights.T.astype(np.float64) + head.bias)
    p[np.arange(len(y)), y] -= 1
    return (p * w[:, None]).T @ x + lam * (head.weights - prior)


def test_fit_reaches_the_objectives_minimum():
    rng = np.random.default_rng(0)
    x, y = _blobs(rng, 10)
    sx, sy = _blobs(rng, 20, shift=1.0)
    original = SoftmaxHead(rng.normal(scale=0.01, size=(6, 256)).astype(np.float32), np.zeros(6, np.float32))
    options = FitOptions(l2=0.01, prior=True, signs_share=0.3, iterations=20000, tolerance=1e-7)
    head = fit_head(x, y, original=original, signs=(sx, sy), options=options)
    assert head.steps < options.iterations
    allx, ally = np.concatenate([x, sx]), np.concatenate([y, sy])
    w = np.concatenate([np.full(len(y), 0.7 / len(y)), np.full(len(sy), 0.3 / len(sy))])
    lam = 0.01 * float(np.mean(np.square(allx)))
    at_start = _objective_gradient(original, allx, ally, w, lam, original.weights)
    at_fit = _objective_gradient(head, allx, ally, w, lam, original.weights)
    assert np.linalg.norm(at_fit) < 1e-4 * np.linalg.norm(at_start)


def test_the_prior_keeps_the_original_head_under_a_strong_penalty():
    rng = np.random.default_rng(1)
    x, y = _blobs(rng, 10)
    original = SoftmaxHead(rng.normal(size=(6, 256)).astype(np.float32), np.zeros(6, np.float32))
    kept = fit_head(x, y, original=original, options=FitOptions(l2=1e4, prior=True))
    shrunk = fit_head(x, y, original=original, options=FitOptions(l2=1e4, prior=False))
    assert np.linalg.norm(kept.weights - original.weights) < 0.01 * np.linalg.norm(original.weights)
    assert np.linalg.norm(shrunk.weights) < 0.01 * np.linalg.norm(original.weights)


def test_signs_mixed_in_keep_signs_own_set_up():
    rng = np.random.default_rng(2)
    mine, mine_y = _blobs(rng, 10)
    theirs, theirs_y = _blobs(rng, 30, shift=3.0)  # SIGNS: the same six signs, another set-up
    test, test_y = _blobs(rng, 50, shift=3.0)
    alone = fit_head(mine, mine_y)
    mixed = fit_head(mine, mine_y, signs=(theirs, theirs_y), options=FitOptions(signs_share=0.3))
    assert np.mean(mixed.predict(test) == test_y) > np.mean(alone.predict(test) == test_y) + 0.1
    assert np.mean(mixed.predict(mine) == mine_y) == 1.0


def test_too_few_frames_of_a_sign_is_one_line():
    y = np.repeat(np.arange(6), [5, 5, 2, 5, 0, 5])
    with pytest.raises(EdgeSignsError) as exc:
        check_frames(y, 5)
    assert str(exc.value) == "teach needs at least 5 frames of every sign (0, 1, 2, 3, 4, 5); too few of 2: 2, 4: 0"
    with pytest.raises(EdgeSignsError, match="at least 5 frames"):
        fit_head(np.ones((len(y), 8), np.float32), y)


# -- the written file -----------------------------------------------------------------------------


def _integer_only(path: Path) -> None:
    clf = Classifier(path)
    boundary = {d["index"] for d in clf.interpreter.get_input_details() + clf.interpreter.get_output_details()}
    for t in clf.interpreter.get_tensor_details():
        assert t["dtype"] in ((np.uint8,) if t["index"] in boundary else (np.int8, np.int32)), (t["name"], t["dtype"])


def test_round_trip_on_the_tiny_model(tiny_models, signs, signs_features, tmp_path):
    (_, train_f), (_, test_f) = signs_features
    model = tiny_models["int8"]
    site = read_site(model)
    idx = draw_per_sign(signs.train.y, 10, seed=0)
    head = snap(site, fit_head(train_f[idx], signs.train.y[idx], original=site.original()))
    out = tmp_path / "mine.tflite"
    meta = write_head_file(model, head, out, train_f[idx], {"note": "test"})
    _integer_only(out)
    written = Classifier(out)  # checks the sidecar's checksum
    assert written.format == "int8" and meta["teach"] == {"note": "test"} and meta["base_model"]["file"] == model.name
    probs = written.predict_batch(signs.test.x)
    assert agreement(probs, head.predict(test_f)) >= 0.99
    assert np.abs(probs - head.probs(test_f)).max() < 0.1
    # Only the last layer changed: same size, the other bytes as they were.
    before, after = np.frombuffer(model.read_bytes(), np.uint8), np.frombuffer(out.read_bytes(), np.uint8)
    assert len(before) == len(after)
    h = site.head
    changed = np.zeros(len(before), bool)
    for span in (h.weights.data, h.weights.scale, h.bias.data, h.bias.scale, h.logits.scale, h.logits.zero_point):
        changed[span.offset:span.offset + span.count * np.dtype(span.dtype).itemsize] = True
    assert np.array_equal(before[~changed], after[~changed]) and not np.array_equal(before, after)


def test_live_runs_the_written_file_as_evaluate_scores_it(tiny_models, signs, signs_dir, signs_features, tmp_path):
    from edge_signs.edge.live import LiveOptions, run_live
    from edge_signs.log import quiet

    (_, train_f), _ = signs_features
    site = read_site(tiny_models["int8"])
    out = tmp_path / "mine.tflite"
    write_head_file(tiny_models["int8"], snap(site, fit_head(train_f, signs.train.y, original=site.original())), out, train_f, {})
    summary = run_live(out, LiveOptions(testset=True, data=signs_dir, headless=True, status_interval=0), log=quiet)
    assert summary.frames == len(signs.test.y)
    assert summary.accuracy == pytest.approx(float(np.mean(Classifier(out).predict_batch(signs.test.x).argmax(1) == signs.test.y)))


def test_writing_the_models_own_head_back_changes_no_prediction(tiny_models, signs, signs_features, tmp_path):
    (train_p, train_f), (test_p, test_f) = signs_features
    site = read_site(tiny_models["int8"])
    out = tmp_path / "same.tflite"
    write_head_file(tiny_models["int8"], site.original(), out, train_f, {})
    assert np.mean(Classifier(out).predict_batch(signs.test.x).argmax(1) == test_p.argmax(1)) >= 0.98


def test_only_int8_files_are_taught(tiny_models, tmp_path):
    for fmt in ("float32", "float16"):
        with pytest.raises(EdgeSignsError, match="not a full-integer int8 model"):
            read_site(tiny_models[fmt])


# -- edge-signs teach --own -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_folder(signs, tmp_path_factory) -> Path:
    """SIGNS test images as a collect folder: 6 sessions of 20 frames per sign; the hash split holds session0 out."""
    root = tmp_path_factory.mktemp("own")
    for c in range(config.NUM_CLASSES):
        (root / str(c)).mkdir()
        images = signs.test.x[signs.test.y == c]
        for k in range(120):
            rgb = images[k % len(images)]
            cv2.imwrite(str(root / str(c) / f"session{k // 20}_{k:05d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert set(own_split(load_labelled(root), "heldout").groups) == {"session0"}
    return root


def test_teach_from_a_folder_then_evaluate_the_file(tiny_models, own_folder, signs_dir, tmp_path):
    out = tmp_path / "personal" / "mine.tflite"
    proc = run_cli("teach", tiny_models["int8"], "--own", own_folder, "--out", out, "--per-sign", 10, "--signs", signs_dir)
    assert proc.returncode == 0, proc.stderr
    assert "held-out accuracy" in proc.stdout and "held-out sessions/photos" in proc.stdout and "SIGNS test accuracy" in proc.stdout
    assert "fitted on 60 frames" in proc.stdout and "and 120 SIGNS images" in proc.stdout
    meta = read_sidecar(out)
    assert meta["teach"]["frames"] == [10] * 6 and meta["teach"]["fit"]["l2"] == config.TEACH_L2
    for data in (["--own", own_folder, "--split", "heldout"], ["--signs", signs_dir], ["--own", own_folder]):
        proc = run_cli("evaluate", out, tiny_models["int8"], *data, "--runs", 3, "--warmup", 0, "--out", tmp_path / "report")
        assert proc.returncode == 0, proc.stderr
        assert "mine.tflite" in proc.stdout
        assert ("mine.tflite was taught on" in proc.stderr) == (data == ["--own", own_folder]), proc.stderr


def test_teach_refuses_too_few_frames_in_one_line(tiny_models, own_folder, tmp_path):
    out = tmp_path / "mine.tflite"
    proc = run_cli("teach", tiny_models["int8"], "--own", own_folder, "--out", out, "--per-sign", 3, "--signs-per-sign", 0)
    one_line_error(proc, "needs at least 5 frames of every sign", "too few of 0: 3", before_work=False)
    assert not out.exists()


def test_teach_refuses_a_float_model_before_any_work(tiny_models, own_folder, tmp_path):
    proc = run_cli("teach", tiny_models["float32"], "--own", own_folder, "--out", tmp_path / "m.tflite")
    one_line_error(proc, "not a full-integer int8 model")


# -- teaching from a frame loop -------------------------------------------------------------------


def test_the_teacher_refits_after_each_frame_once_every_sign_has_one(tiny_models, signs):
    clf = Classifier(tiny_models["int8"], features=True)
    teacher = Teacher(clf, tiny_models["int8"])
    probs, feats = clf.features_batch(signs.train.x[:40])
    for i in range(5):  # signs 0-4 only: the model's own prediction is shown
        teacher.add(feats[i], i)
        assert teacher.head is None and np.array_equal(teacher.probs(feats[10], probs[10]), probs[10])
    teacher.add(feats[5], 5)
    first = teacher.head
    assert first is not None and teacher.counts() == [1] * 6
    assert np.allclose(teacher.probs(feats[10], probs[10]), first.probs(feats[10:11])[0])
    teacher.add(feats[6], 0)
    assert teacher.head is not first and not np.array_equal(teacher.head.weights, first.weights)
    with pytest.raises(EdgeSignsError, match="too few of 0: 2, 1: 1"):
        teacher.write(Path("unused.tflite"), {})


def test_teach_from_a_labelled_video_learns_as_it_goes(tiny_models, signs, tmp_path):
    from tests.conftest import load_tool

    y = signs.train.y
    order = [int(np.flatnonzero(y == c)[k]) for k in range(8) for c in range(6)]  # every sign early, 8 photos each
    video, csv = tmp_path / "teach.avi", tmp_path / "teach.csv"
    load_tool("make_labelled_video").make_labelled_video(video, csv, signs.train.x[order], y[order], 2, 128, fps=15.0)
    out = tmp_path / "mine.tflite"
    proc = run_cli("teach", tiny_models["int8"], "--video", video, "--labels", csv, "--out", out, "--signs-per-sign", 0)
    assert proc.returncode == 0, proc.stderr
    assert "taught 96 (0: 16, 1: 16, 2: 16, 3: 16, 4: 16, 5: 16)" in proc.stdout and "classified before it was taught" in proc.stdout
    meta = read_sidecar(out)
    assert meta["teach"]["frames"] == [16] * 6 and Classifier(out).format == "int8"
    proc = run_cli("teach", tiny_models["int8"], "--video", video, "--out", tmp_path / "x.tflite")  # without labels: a window
    one_line_error(proc, "no GUI", before_work=False)


def test_teach_in_a_window_with_keys(tiny_models, signs, monkeypatch, tmp_path):
    """OpenCV's window stood in for (no display here), as tests/edge/test_collect.py does: key i after the i-th frame."""
    from edge_signs.edge.sources import SourceOptions
    from edge_signs.edge.teach import TeachOptions
    from edge_signs.edge.teach_window import teach_window
    from edge_signs.log import quiet
    from tests.conftest import load_tool
    from tests.edge.test_collect import _fake_gui

    y = signs.train.y
    order = [int(np.flatnonzero(y == c)[k]) for k in range(6) for c in range(6)]
    video, csv = tmp_path / "w.avi", tmp_path / "w.csv"
    load_tool("make_labelled_video").make_labelled_video(video, csv, signs.train.x[order], y[order], 1, 128, fps=15.0)
    keys = {i: str(y[j]) for i, j in enumerate(order[:-1])} | {len(order) - 1: "q"}
    shown = _fake_gui(monkeypatch, keys)
    out, crops = tmp_path / "mine.tflite", tmp_path / "crops"
    result = teach_window(tiny_models["int8"], SourceOptions(video=str(video)), out, TeachOptions(signs_per_sign=0), save=crops, log=quiet)
    assert len(shown) == 36 and result.frames == 36 and result.taught == [6, 6, 6, 6, 6, 5] and result.saved == 35
    assert sorted(len(list((crops / label).glob("*.jpg"))) for label in config.LABELS) == [5, 6, 6, 6, 6, 6]
    assert read_sidecar(out)["teach"]["frames"] == [6, 6, 6, 6, 6, 5] and Classifier(out).format == "int8"
