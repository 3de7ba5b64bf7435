"""`edge-signs teach --serve`: the page's buttons teach the frame in hand, "done" writes the file.

A real run (the committed tiny int8 model, a real video file looped, the real server
on 127.0.0.1:0) in a thread; the buttons are real HTTP POSTs (urllib), and the page
is read by headless Chromium, as tests/edge/test_serve.py does.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from typing import Optional

import numpy as np
import pytest

from edge_signs import config
from edge_signs.edge.runtime import Classifier, read_sidecar
from edge_signs.edge.sources import SourceOptions
from edge_signs.edge.teach import TeachOptions
from edge_signs.edge.teach_serve import LoopCalls, teach_served
from tests.conftest import run_cli
from tests.edge.test_serve import BROWSER, WAIT_S, served, wait_until
from tests.faults import one_line_error

TOKEN = "teach-token-0123456789"


def http(port: int, path: str, body=None, *, method: Optional[str] = None, token: Optional[str] = None) -> tuple[int, str]:
    """One request with urllib: (status, body text); a JSON body makes it a POST."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


class TeachRun:
    def __init__(self):
        self.server = None
        self.logs: list[str] = []
        self.result = None
        self.error: Optional[BaseException] = None
        self.stop = threading.Event()
        self.thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self.server.port

    def status(self) -> dict:
        code, text = http(self.port, "/status", token=self.server.token)
        assert code == 200, text
        return json.loads(text)

    def teach(self, label, expect: int = 200) -> dict:
        code, text = http(self.port, "/teach", {"label": label}, token=self.server.token)
        assert code == expect, (code, text)
        return json.loads(text) if code == 200 else {"text": text}

    def ended(self):
        """The run's result once it has ended by itself ("done", the source's end)."""
        self.thread.join(timeout=WAIT_S)
        assert not self.thread.is_alive(), "teach_served did not end"
        if self.error is not None:
            raise self.error
        return self.result


@contextlib.contextmanager
def teaching(model, video, out, *, save=None, token=None):
    """teach_served(--video looped --serve 127.0.0.1:0) in a thread; a run still going at the end is stopped as Ctrl-C stops it."""
    run = TeachRun()

    def on_frame(f) -> None:
        if run.stop.is_set():
            raise KeyboardInterrupt  # what Ctrl-C does in the loop's thread

    def target() -> None:
        try:
            run.result = teach_served(model, SourceOptions(video=str(video), loop=True), out, TeachOptions(signs_per_sign=0),
                                      serve="127.0.0.1:0", token=token, save=save, log=run.logs.append,
                                      on_server=lambda server: setattr(run, "server", server), on_frame=on_frame)
        except BaseException as exc:  # noqa: BLE001 -- handed to the test's thread
            run.error = exc

    run.thread = threading.Thread(target=target, name="test: teach_served", daemon=True)
    run.thread.start()
    try:
        wait_until(lambda: not run.thread.is_alive() or (run.server is not None and _has_frame(run)), "the first frame")
        if run.error is not None:
            raise run.error
        yield run
    finally:
        run.stop.set()
        run.thread.join(timeout=WAIT_S)
        assert not run.thread.is_alive(), "teach_served did not end"


def _has_frame(run: TeachRun) -> bool:
    with contextlib.suppress(OSError, AssertionError):
        return run.status()["frame"] is not None
    return False


def test_a_click_is_answered_once_its_frame_has_run_it_and_not_before():
    """The loop sends a click's answer after publishing the frame's status, so the page never reads counts older than its answer."""
    calls, answered = LoopCalls(), {}
    clicker = threading.Thread(target=lambda: answered.setdefault("answer", calls.call(lambda f, feats: f"taught on {f}", timeout=WAIT_S)))
    clicker.start()
    answers: list = []
    wait_until(lambda: bool(answers.extend(calls.run_pending("frame 7", None)) or answers), "the click to reach the loop")
    clicker.join(timeout=0.2)
    assert clicker.is_alive() and not answered  # run, but not yet answered
    calls.answer(answers)
    clicker.join(timeout=WAIT_S)
    assert answered == {"answer": "taught on frame 7"}


def test_buttons_teach_the_frame_in_hand_and_done_writes_the_file(tiny_models, held_video, signs, tmp_path):
    out, crops = tmp_path / "mine.tflite", tmp_path / "crops"
    with teaching(tiny_models["int8"], held_video[0], out, save=crops) as run:
        assert any(f"serving http://127.0.0.1:{run.port}/" in line for line in run.logs), run.logs
        first = run.status()["teach"]
        assert first["counts"] == [0] * 6 and first["head"] == "own" and first["min_per_sign"] == config.TEACH_MIN_PER_SIGN
        for round_ in range(5):
            for k, label in enumerate(config.LABELS):
                answer = run.teach(label if k != 3 else 3)  # the label as a string, or as a number
                counts = [round_ + 1] * (k + 1) + [round_] * (5 - k)
                assert answer["taught"] == label and answer["teach"]["counts"] == counts, answer
                # The head is fitted once every sign has a frame, and refitted after every frame from then on.
                assert answer["teach"]["head"] == ("taught" if round_ > 0 or k == 5 else "own"), answer
                assert run.status()["teach"]["counts"] == counts
            if round_ == 3:  # 4 of each: "done" is refused in one line, and teaching goes on
                code, text = http(run.port, "/teach/done", {})
                assert code == 400 and text.count("\n") == 1 and "too few of 0: 4, 1: 4" in text, text
        status = run.status()
        assert status["teach"]["head"] == "taught" and status["label"] in config.LABELS
        code, text = http(run.port, "/teach/done", {})
        assert code == 200, text
        assert json.loads(text)["out"] == str(out)
        result = run.ended()
    assert result.taught == [5] * 6 and result.saved == 30 and result.out == out
    assert sorted(len(list((crops / label).glob("*.jpg"))) for label in config.LABELS) == [5] * 6
    # The file loads (its checksum, integer-only int8) and predicts.
    written = Classifier(out)
    assert written.format == "int8" and read_sidecar(out)["teach"]["frames"] == [5] * 6
    probs = written.predict_batch(signs.test.x[:30])
    assert probs.shape == (30, 6) and np.allclose(probs.sum(1), 1, atol=0.05)
    with pytest.raises(ConnectionRefusedError):  # the server ended with the run
        socket.create_connection(("127.0.0.1", run.port), timeout=5).close()


def test_bad_posts_are_one_line_and_state_changes_are_post_only(tiny_models, held_video, tmp_path):
    with teaching(tiny_models["int8"], held_video[0], tmp_path / "mine.tflite") as run:
        for body in ({"label": "7"}, {"label": True}, {"sign": 3}, [3], "3"):
            code, text = http(run.port, "/teach", body)
            assert code == 400 and text.count("\n") == 1 and text.startswith("POST /teach: expected a JSON body"), (body, text)
        assert http(run.port, "/teach")[0] == 405 and http(run.port, "/teach/done")[0] == 405  # a GET changes nothing
        assert run.status()["teach"]["counts"] == [0] * 6
    assert isinstance(run.error, KeyboardInterrupt) and not (tmp_path / "mine.tflite").exists()  # stopped: nothing written


def test_the_buttons_need_the_token_as_every_route_does(tiny_models, held_video, tmp_path):
    with teaching(tiny_models["int8"], held_video[0], tmp_path / "mine.tflite", token=TOKEN) as run:
        assert http(run.port, "/teach", {"label": "2"})[0] == 401
        assert http(run.port, "/teach", {"label": "2"}, token="wrong-token-123456")[0] == 403
        assert http(run.port, "/teach/done", {})[0] == 401
        assert run.teach("2")["teach"]["counts"] == [0, 0, 1, 0, 0, 0]


def test_teach_serve_from_the_command_line(tiny_models, held_video, tmp_path):
    out = tmp_path / "mine.tflite"
    # Nobody presses a button: the video ends, and the file is refused in one line, as q too early is.
    proc = run_cli("teach", tiny_models["int8"], "--video", held_video[0], "--serve", "127.0.0.1:0", "--out", out, "--signs-per-sign", 0)
    one_line_error(proc, "needs at least 5 frames of every sign", before_work=False)
    assert "serving http://127.0.0.1:" in proc.stderr and not out.exists()
    proc = run_cli("teach", tiny_models["int8"], "--video", held_video[0], "--token", TOKEN, "--out", out)
    assert proc.returncode == 2 and "--token protects --serve" in proc.stderr


# -- a real browser ----------------------------------------------------------------------------------------------------


def _page_dom(port: int, profile, token: Optional[str] = None) -> str:
    query = f"?token={token}" if token else ""
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=3000", "--dump-dom", f"http://127.0.0.1:{port}/{query}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2 * WAIT_S)
    assert re.search(r"<body[^>]*data-frame=\"\d+\"", proc.stdout), proc.stderr[-2000:]  # the page's script ran
    return proc.stdout


@pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt-get install chromium)")
def test_the_page_shows_the_buttons_when_teaching_and_not_for_live(tiny_models, held_video, tmp_path):
    with teaching(tiny_models["int8"], held_video[0], tmp_path / "mine.tflite") as run:
        for label in ("3", "3", "0"):
            run.teach(label)
        dom = _page_dom(run.port, tmp_path / "teach-profile")
    buttons = dict(re.findall(r'<button data-label="(\d)"[^>]*>([^<]*)</button>', dom))
    assert buttons == {label: f"{label} ({n})" for label, n in zip(config.LABELS, [1, 0, 0, 2, 0, 0])}, buttons
    assert '<button id="done">done</button>' in dom and 'data-taught="1 0 0 2 0 0"' in dom
    with served() as live:
        dom = _page_dom(live.server.port, tmp_path / "live-profile")
    assert "<button" not in dom and "data-taught" not in dom and re.search(r'<div id="teach" hidden=""', dom)
