"""Events: the definition on scripted predictions, the JSON lines and --exec outputs, and live end to end.

The tracker is driven by scripted (time, sign) sequences: flicker, a hand held and
withdrawn, two signs in a row, no sign. ``--exec`` runs real shell commands (one
that appends to a file, one that hangs, one that fails). The end-to-end test runs
the committed tiny int8 model on a labelled video (tools/make_labelled_video.py)
whose signs are held for over a second with transitions shorter than --hold
between them. MQTT is in test_mqtt.py (a real broker).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_signs import config
from edge_signs.edge.event_outputs import ExecOutput, JsonLinesOutput
from edge_signs.edge.events import HELD, RELEASED, EventHub, EventOptions, EventOutput, EventTracker, SignEvent
from edge_signs.edge.live import FrameResult, LiveOptions, run_live
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from tests.conftest import REPO, run_cli

FPS = 10.0


def script(signs: str, hold: float = 0.5, fps: float = FPS) -> list[SignEvent]:
    """One character per frame ('.' no sign) at ``fps``, through a tracker; the events, the end's release included."""
    tracker = EventTracker(hold)
    events = []
    for k, ch in enumerate(signs):
        events += tracker.update(k / fps, None if ch == "." else ch, 0.9, k)
    return events + list(tracker.finish())


def kinds(events) -> list[tuple[str, str]]:
    return [(e.event, e.sign) for e in events]


# -- the definition -------------------------------------------------------------------------------------


def test_no_sign_makes_no_event():
    assert script("." * 50) == []


def test_flicker_shorter_than_hold_makes_no_event():
    # 0.4 s bursts of signs (a hand moving between signs) under a 0.5 s hold
    assert script("..1111..2222.3333.1111....") == []


def test_a_hand_held_and_withdrawn():
    events = script("..." + "3" * 12 + "....")
    assert kinds(events) == [(HELD, "3"), (RELEASED, "3")]
    held, released = events
    assert held.id == released.id == 1
    assert held.start == pytest.approx(0.3) and held.frame == 3 + 5  # 0.5 s after the first frame of 3, at 10 fps
    assert held.held_s == pytest.approx(0.5)
    assert released.frame == 15 and released.held_s == pytest.approx(1.2)  # 12 frames on screen
    assert held.confidence == pytest.approx(0.9)


def test_exactly_hold_counts_and_just_under_does_not():
    assert kinds(script("." + "2" * 6 + ".")) == [(HELD, "2"), (RELEASED, "2")]  # frames 0.0 .. 0.5 s: held 0.5 s
    assert script("." + "2" * 5 + ".") == []


def test_two_signs_in_a_row_release_then_hold():
    events = script("1" * 10 + "4" * 10)
    assert kinds(events) == [(HELD, "1"), (RELEASED, "1"), (HELD, "4"), (RELEASED, "4")]
    assert events[1].frame == 10 and events[1].held_s == pytest.approx(1.0)  # released on the first frame of 4
    assert events[2].id == 2 and events[2].start == pytest.approx(1.0) and events[2].frame == 15


def test_a_short_transition_between_two_held_signs_makes_no_event_of_its_own():
    events = script("1" * 10 + "55" + "." + "2" * 10)
    assert kinds(events) == [(HELD, "1"), (RELEASED, "1"), (HELD, "2"), (RELEASED, "2")]


def test_a_flicker_inside_a_held_sign_releases_it():
    # One frame of another sign is a change: the hold ends there and a new one starts (the smoothing absorbs most such frames).
    events = script("3" * 8 + "1" + "3" * 8)
    assert kinds(events) == [(HELD, "3"), (RELEASED, "3"), (HELD, "3"), (RELEASED, "3")]


def test_hold_zero_fires_on_the_first_frame_and_confidence_is_the_mean():
    tracker = EventTracker(0.0)
    (held,) = tracker.update(0.0, "0", 0.7, 0)
    assert held.event == HELD and held.held_s == 0
    tracker.update(0.1, "0", 0.9, 1)
    (released,) = tracker.update(0.2, None, 0.1, 2)
    assert released.confidence == pytest.approx(0.8) and released.held_s == pytest.approx(0.2)
    assert tracker.held is None and tracker.count == 1


@pytest.mark.parametrize("hold", [-1.0, float("nan"), float("inf")])
def test_bad_hold_is_one_line(hold):
    with pytest.raises(EdgeSignsError, match="--hold"):
        EventTracker(hold)


# -- the hub -----------------------------------------------------------------------------------------------


class Broken(EventOutput):
    name = "broken"

    def on_event(self, event):
        raise OSError(28, "No space left on device")


class Kept(EventOutput):
    name = "kept"

    def __init__(self):
        self.events = []

    def on_event(self, event):
        self.events.append(event)


def _frames(hub: EventHub, signs: str) -> None:
    r = FrameResult()
    for k, ch in enumerate(signs):
        r.frame, r.source_time, r.label, r.smoothed_confidence = k, k / FPS, None if ch == "." else ch, 0.8
        hub.on_frame(r)


def test_an_output_that_fails_is_named_and_the_others_go_on():
    kept, said = Kept(), []
    hub = EventHub(0.5, [Broken(), kept], log=said.append)
    _frames(hub, "1" * 8 + "2" * 8)
    hub.close()
    assert kinds(kept.events) == [(HELD, "1"), (RELEASED, "1"), (HELD, "2"), (RELEASED, "2")]
    assert any("broken failed (OSError" in w and "No space left" in w for w in hub.warnings())
    assert len(said) == 1  # named once, then left out
    assert hub.count == 2 and hub.stats()["by_sign"] == {"1": 1, "2": 1}
    assert [e["sign"] for e in hub.recent] == ["2", "2", "1", "1"]  # newest first


# -- --events ------------------------------------------------------------------------------------------------


def test_events_file_is_published_when_the_run_ends(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("old\n")
    out = JsonLinesOutput(path)
    hub = EventHub(0.5, [out])
    _frames(hub, "." + "4" * 10)
    temps = list(tmp_path.glob(".events.jsonl.tmp-*"))
    assert path.read_text() == "old\n" and len(temps) == 1
    assert json.loads(temps[0].read_text().splitlines()[0])["event"] == HELD  # streams while the run goes on
    hub.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(ln["event"], ln["sign"], ln["id"]) for ln in lines] == [(HELD, "4", 1), (RELEASED, "4", 1)]
    assert {"confidence", "start", "held_s", "frame", "time"} <= lines[0].keys()
    assert not list(tmp_path.glob(".events.jsonl.tmp-*"))


def test_a_failed_run_keeps_the_old_events_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text("old\n")
    out = JsonLinesOutput(path)
    out.on_event(SignEvent(HELD, 1, "1", 0.9, 0.0, 0.5, 5))
    out.close(keep=False)
    assert path.read_text() == "old\n" and not list(tmp_path.glob(".events.jsonl.tmp-*"))


def test_events_to_a_fifo_arrive_as_they_happen_and_a_stalled_reader_never_blocks(tmp_path):
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    out = JsonLinesOutput(fifo)  # no reader yet: opening does not wait for one
    out.on_event(SignEvent(HELD, 1, "5", 0.9, 0.0, 0.5, 5))
    with open(fifo) as reader:
        assert json.loads(reader.readline())["sign"] == "5"  # before the run ends
        t0 = time.perf_counter()
        for k in range(5000):  # a reader that stops reading: the pipe fills, lines are dropped, nothing waits
            out.on_event(SignEvent(RELEASED, k, "5", 0.9, 0.0, 0.5, 5))
        assert time.perf_counter() - t0 < 5
        assert out.stats()["dropped"] > 0 and out.stats()["lines"] + out.stats()["dropped"] == 5001
        out.close()
        lines = reader.read().splitlines()
    assert len(lines) == out.stats()["lines"] - 1 and all(json.loads(line)["event"] == RELEASED for line in lines)  # whole lines only
    assert fifo.exists() and not fifo.is_file()


# -- --exec ----------------------------------------------------------------------------------------------------


def _held(sign: str, k: int = 1) -> SignEvent:
    return SignEvent(HELD, k, sign, 0.875, 1.5, 0.5, 20)


def test_exec_runs_a_command_per_held_sign_with_the_event_in_its_environment(tmp_path):
    log = tmp_path / "log.txt"
    out = ExecOutput(f'echo "$EDGE_SIGNS_SIGN $EDGE_SIGNS_CONFIDENCE $EDGE_SIGNS_ID $EDGE_SIGNS_HELD_S" >> {log}', log=quiet)
    out.on_event(_held("3", 1))
    out.on_event(SignEvent(RELEASED, 1, "3", 0.875, 1.5, 2.0, 40))  # releases run nothing
    out.on_event(_held("0", 2))
    out.close()
    assert log.read_text().splitlines() == ["3 0.8750 1 0.500", "0 0.8750 2 0.500"]
    assert out.stats() == {"ran": 2, "failed": 0, "timed_out": 0, "dropped": 0}


def _running(pid: int) -> bool:
    """Alive and not a zombie (a container's PID 1 may never reap an orphan)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_exec_that_hangs_is_killed_and_named_and_the_loop_never_waits(tmp_path):
    said = []
    pids = tmp_path / "pids"
    # The shell's child (sleep) must die too: its whole process group is killed.
    out = ExecOutput(f'sleep 30 & echo $! >> {pids}; wait', timeout=0.5, log=said.append)
    t0 = time.perf_counter()
    for k in range(3):
        out.on_event(_held("2", k + 1))
    assert time.perf_counter() - t0 < 0.1  # queued, not run here
    out.close()
    assert time.perf_counter() - t0 < 10
    assert out.stats()["timed_out"] >= 1 and out.stats()["ran"] == 0
    assert any("still ran after 0.5 s: killed" in s and "sleep 30" in s and "sign 2" in s for s in said)
    started = [int(p) for p in pids.read_text().split()]
    assert started and not any(_running(pid) for pid in started)


def test_exec_that_fails_is_named_and_the_next_still_runs(tmp_path):
    said = []
    log = tmp_path / "log.txt"
    out = ExecOutput(f'[ "$EDGE_SIGNS_SIGN" = 1 ] && exit 3; echo "$EDGE_SIGNS_SIGN" >> {log}', log=said.append)
    out.on_event(_held("1"))
    out.on_event(_held("4", 2))
    out.close()
    assert log.read_text() == "4\n"
    assert out.stats()["failed"] == 1 and out.stats()["ran"] == 2
    assert any("for sign 1 failed (exit status 3)" in s for s in said)


def test_exec_queue_is_bounded_and_drops_the_oldest(tmp_path):
    log = tmp_path / "log.txt"
    gate = tmp_path / "go"
    out = ExecOutput(f'while [ ! -e {gate} ]; do sleep 0.02; done; echo "$EDGE_SIGNS_ID" >> {log}', queue_size=2, log=quiet)
    for k in range(1, 7):
        out.on_event(_held("5", k))
        time.sleep(0.05)  # the worker takes the first and waits at the gate
    gate.touch()
    out.close()
    ran = [int(x) for x in log.read_text().split()]
    assert ran[0] == 1 and ran[-2:] == [5, 6]  # the newest two waited; those between were dropped
    assert out.stats()["dropped"] == 6 - len(ran)


# -- live, end to end on a labelled video ----------------------------------------------------------------------


def test_live_makes_one_event_per_held_sign_of_a_labelled_video(tiny_models, held_video, tmp_path):
    video, csv, ranges = held_video
    events_path, log = tmp_path / "events.jsonl", tmp_path / "exec.txt"
    options = LiveOptions(video=str(video), labels_csv=csv, headless=True, status_interval=0,
                          events=EventOptions(path=events_path, command=f'echo "$EDGE_SIGNS_SIGN" >> {log}'))
    summary = run_live(tiny_models["int8"], options, log=quiet)
    lines = [json.loads(line) for line in events_path.read_text().splitlines()]
    held = [ln for ln in lines if ln["event"] == HELD]
    assert [ln["sign"] for ln in held] == [sign for _, _, sign in ranges]  # one per held range, none for the transitions
    for ln, (first, last, sign) in zip(held, ranges):
        assert first <= ln["frame"] <= last and first <= round(ln["start"] * 15) <= last, (ln, first, last)
        assert ln["held_s"] >= 0.5
    released = [ln for ln in lines if ln["event"] == RELEASED]
    assert [ln["id"] for ln in released] == [ln["id"] for ln in held]
    assert log.read_text().split() == [sign for _, _, sign in ranges]
    assert summary.events["events"] == len(ranges) and summary.events["by_sign"] == {s: 1 for _, _, s in ranges}
    assert any(line.startswith(f"events: {len(ranges)} held signs") for line in summary.event_lines)
    # The same video gives the same events: times are the video's, not the machine's.
    again = run_live(tiny_models["int8"], LiveOptions(video=str(video), headless=True, status_interval=0,
                                                      events=EventOptions(path=tmp_path / "again.jsonl")), log=quiet)
    strip = [{k: v for k, v in ln.items() if k != "time"} for ln in lines]
    assert [{k: v for k, v in json.loads(x).items() if k != "time"} for x in (tmp_path / "again.jsonl").read_text().splitlines()] == strip
    assert again.events["events"] == len(ranges)


def test_a_hold_longer_than_every_sign_makes_no_event(tiny_models, held_video):
    video, _, _ = held_video
    summary = run_live(tiny_models["int8"], LiveOptions(video=str(video), headless=True, status_interval=0,
                                                        events=EventOptions(hold=1.5)), log=quiet)
    assert summary.events["events"] == 0


# -- the command line -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--mqtt", "http://broker/topic"], ["--mqtt", "mqtt://"]),
    (["--mqtt", "mqtt://broker"], ["no topic"]),
    (["--mqtt", "mqtt://broker/a/#"], ["wildcard"]),
    (["--ha-discovery"], ["--ha-discovery", "--mqtt"]),
    (["--exec", "  "], ["--exec", "empty"]),
    (["--events", "."], ["--events", "folder"]),
    (["--events", "x.jsonl", "--json", "x.jsonl"], ["--json and --events name the same file"]),
])
def test_event_option_mistakes_are_one_line(tiny_models, args, words):
    proc = run_cli("live", tiny_models["int8"], "--testset", "--headless", *args)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_missing_paho_is_one_line_naming_the_extra(tiny_models):
    # paho made unimportable (as test_no_tensorflow blocks TensorFlow), whether or not it is installed here.
    body = textwrap.dedent(f"""
        import sys
        class NoPaho:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "paho":
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, NoPaho())
        from edge_signs.cli import main
        main(["live", {str(tiny_models["int8"])!r}, "--testset", "--headless", "--mqtt", "mqtt://127.0.0.1/signs"])
    """)
    proc = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "edge-signs[mqtt]" in lines[0] and "python3-paho-mqtt" in lines[0], proc.stderr


def test_collect_counts_the_labelled_ranges_it_saves_as_events(held_video, tmp_path):
    video, csv, ranges = held_video
    events_path = tmp_path / "collect_events.jsonl"
    proc = run_cli("collect", "--out", tmp_path / "own", "--video", video, "--labels", csv, "--interval", "0.2",
                   "--events", events_path, "--hold", "1.0")
    assert proc.returncode == 0, proc.stderr
    held = [json.loads(x) for x in events_path.read_text().splitlines() if json.loads(x)["event"] == HELD]
    assert [e["sign"] for e in held] == [s for _, _, s in ranges]  # the 0.2 s transitions are not held 1 s
    assert f"events: {len(ranges)} held signs" in proc.stdout


def test_serve_status_shows_the_last_events(tiny_models, held_video):
    import urllib.request

    video, _, ranges = held_video
    port, seen = [], []

    def on_frame(result):
        if result.frame == ranges[2][1]:  # the end of the third held sign: three held, two released so far
            with urllib.request.urlopen(f"http://127.0.0.1:{port[0]}/status", timeout=10) as r:
                seen.append(json.loads(r.read()))

    run_live(tiny_models["int8"], LiveOptions(video=str(video), headless=True, status_interval=0, serve="127.0.0.1:0"), log=quiet,
             on_frame=on_frame, on_server=lambda server: port.append(server.port))
    events = seen[0]["events"]  # newest first
    assert [(e["event"], e["sign"]) for e in events[:3]] == [(HELD, ranges[2][2]), (RELEASED, ranges[1][2]), (HELD, ranges[1][2])]
    assert len(events) == min(5, config.EVENTS_RECENT)
