"""--mqtt against a real broker: Debian's mosquitto on a free loopback port, and a real paho subscriber.

Checked: the events of a labelled video end to end, the retained state and
availability, Home Assistant discovery, the last will when `live` is killed
(SIGKILL), a broker that is down from the start, one restarted mid-run (the loop
never stalls, paho reconnects, what could not be sent is counted; the sign still
held is told to it again), mqtts:// against a TLS listener (openssl makes its CA),
and a user whose password comes from the environment (mosquitto_passwd).
Skipped, with the reason, only where the mosquitto binary or paho-mqtt is absent
(.ci/run installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from edge_signs import config
from edge_signs.edge.event_types import SignEvent
from edge_signs.edge.events import HELD, RELEASED, EventOptions
from edge_signs.edge.live import LiveOptions, run_live
from edge_signs.edge.mqtt import MqttOutput, discovery_config, parse_mqtt
from edge_signs.errors import EdgeSignsError
from edge_signs.log import quiet
from tests.conftest import REPO

mqtt = pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed: pip install -e '.[mqtt]' (.ci/run does)")
MOSQUITTO = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Broker:
    """A mosquitto process on 127.0.0.1:port (anonymous, in memory); stop and start again on the same port."""

    def __init__(self, folder: Path, extra: str = ""):
        self.port = _free_port()
        self.conf = folder / "mosquitto.conf"
        anonymous = "false" if "password_file" in extra else "true"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous {anonymous}\npersistence false\n{extra}")
        self.log = folder / "mosquitto.log"
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"))
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-500:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def url(self, topic: str = "signs", scheme: str = "mqtt") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/{topic}"


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("no mosquitto binary: apt-get install mosquitto (.ci/run does)")
    b = Broker(tmp_path)
    yield b
    if b.proc.poll() is None:
        b.stop()


class Subscriber:
    """A real paho client subscribed to ``topics``; keeps (topic, payload, retained) and resubscribes after a reconnection."""

    def __init__(self, port: int, topics=("signs/#",), ca: Path | None = None, user: tuple[str, str] | None = None):
        version = getattr(mqtt, "CallbackAPIVersion", None)
        self.client = mqtt.Client(version.VERSION2) if version is not None else mqtt.Client()
        if user is not None:
            self.client.username_pw_set(*user)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.messages: list[tuple[str, str, bool]] = []
        self.topics = topics
        self._cond = threading.Condition()
        self.client.on_connect = lambda client, *a: [client.subscribe(t, qos=1) for t in self.topics]
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 0.5)
        self.client.connect_async("127.0.0.1", port, 5)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append((msg.topic, msg.payload.decode(), bool(msg.retain)))
            self._cond.notify_all()

    def wait(self, predicate, timeout: float = 20.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout=timeout)

    def on(self, topic: str) -> list[str]:
        with self._cond:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _events(sub: Subscriber, kind: str = HELD) -> list[dict]:
    return [e for e in map(json.loads, sub.on("signs/event")) if e["event"] == kind]


# -- the URL ------------------------------------------------------------------------------------------------


def test_parse_mqtt_urls(monkeypatch):
    t = parse_mqtt("mqtts://pi:s%40cret@hub.local/home/signs/")
    assert (t.host, t.port, t.topic, t.tls, t.username, t.password) == ("hub.local", 8883, "home/signs", True, "pi", "s@cret")
    assert "s@cret" not in str(t) and "s%40cret" not in str(t)  # never printed
    monkeypatch.setenv(config.MQTT_PASSWORD_ENV, "from-env")
    t = parse_mqtt("mqtt://pi@10.0.0.2:1884/signs")
    assert (t.port, t.tls, t.password) == (1884, False, "from-env")
    for bad in ("mqtt:///signs", "mqtt://host:99999/signs", "mqtt://host/a/+/b", "mqtt://host/signs?x=1"):
        with pytest.raises(EdgeSignsError, match="--mqtt"):
            parse_mqtt(bad)


# -- a real broker ---------------------------------------------------------------------------------------------


def test_events_of_a_labelled_video_reach_a_subscriber(broker, held_video, tiny_models):
    video, _, ranges = held_video
    sub = Subscriber(broker.port, ("signs/#", f"{config.MQTT_DISCOVERY_PREFIX}/#"))
    try:
        time.sleep(0.3)  # subscribed before the run starts
        # A file plays faster than paho connects on a busy machine: the first frame waits until the Pi is online,
        # so every held sign's state has a connection to go out on.
        def first_frame_waits(result) -> None:
            if result.frame == 0:
                assert sub.wait(lambda m: ("signs/availability", "online") in [(t, p) for t, p, _ in m])

        summary = run_live(tiny_models["int8"], LiveOptions(video=str(video), headless=True, status_interval=0,
                                                            events=EventOptions(mqtt=broker.url(), ha_discovery=True)),
                           log=quiet, on_frame=first_frame_waits)
        signs = [sign for _, _, sign in ranges]
        assert sub.wait(lambda m: sum(1 for t, p, _ in m if t == "signs/availability" and p == "offline") >= 1)
        assert sub.wait(lambda m: len([1 for t, p, _ in m if t == "signs/event"]) >= 2 * len(signs))
        assert [e["sign"] for e in _events(sub)] == signs  # one per held sign, in order, none for the transitions
        assert [e["id"] for e in _events(sub, RELEASED)] == [e["id"] for e in _events(sub)]
        assert [s for s in sub.on("signs/state") if s != "none"] == signs and sub.on("signs/state")[-1] == "none"
        assert sub.on("signs/availability")[:1] == ["online"]
        topic, payload = discovery_config(parse_mqtt(broker.url()))
        assert json.loads(sub.on(topic)[0])["state_topic"] == "signs/state"
        stats = summary.events["outputs"][f"--mqtt {parse_mqtt(broker.url())}"]
        assert stats["delivered"] == 2 * len(signs) and stats["dropped"] == 0 and stats["connections"] == 1
    finally:
        sub.close()
    # Retained: a subscriber that comes later learns the state, that the Pi is offline, and the sensor.
    late = Subscriber(broker.port, ("signs/#", f"{config.MQTT_DISCOVERY_PREFIX}/#"))
    try:
        assert late.wait(lambda m: {"signs/state", "signs/availability", topic} <= {t for t, _, r in m if r})
        assert late.on("signs/state") == ["none"] and late.on("signs/availability") == ["offline"]
        assert late.on("signs/event") == []  # events are not retained
    finally:
        late.close()


def test_the_last_will_says_offline_when_live_is_killed(broker, tiny_models, signs_dir):
    sub = Subscriber(broker.port)
    proc = subprocess.Popen([sys.executable, "-m", "edge_signs", "live", str(tiny_models["int8"]), "--testset", "--loop", "--headless",
                             "--signs", str(signs_dir), "--status-every", "0", "--mqtt", broker.url()],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert sub.wait(lambda m: ("signs/availability", "online", False) in m or ("signs/availability", "online", True) in m, 60), \
            proc.stderr.read() if proc.poll() is not None else "live never said online"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert sub.wait(lambda m: m[-1][:2] == ("signs/availability", "offline"), 10)  # the broker's, on the Pi's behalf
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        sub.close()


def test_a_broker_restarted_mid_run_never_stalls_the_loop(broker, held_video, tiny_models, monkeypatch):
    monkeypatch.setattr(config, "MQTT_QUEUE", 8)  # small, so the downtime overflows it
    video, _, _ = held_video
    sub = Subscriber(broker.port)
    frame_times: list[float] = []
    stop = threading.Event()

    def on_frame(result):
        frame_times.append(time.perf_counter())
        if stop.is_set():
            raise KeyboardInterrupt  # ends the loop like Ctrl-C (not the main thread: no signal handlers)
        time.sleep(0.002)  # a camera's pace, roughly: events every few tenths of a second

    result = {}
    options = LiveOptions(video=str(video), loop=True, headless=True, status_interval=0, events=EventOptions(mqtt=broker.url(), hold=0.2))
    runner = threading.Thread(target=lambda: result.update(summary=run_live(tiny_models["int8"], options, log=quiet, on_frame=on_frame)))
    runner.start()
    try:
        assert sub.wait(lambda m: sum(1 for t, *_ in m if t == "signs/event") >= 4)
        broker.stop()
        down_at = len(frame_times)
        time.sleep(2.0)
        assert len(frame_times) - down_at > 100  # the loop went on while the broker was gone
        broker.start()
        before = len(sub.on("signs/event"))
        assert sub.wait(lambda m: sum(1 for t, *_ in m if t == "signs/event") >= before + 4)  # reconnected: events flow again
        assert sub.wait(lambda m: m.count(("signs/availability", "online", False)) + m.count(("signs/availability", "online", True)) >= 2)
        late = Subscriber(broker.port)  # the restarted broker kept nothing (persistence false); a newcomer still learns the state
        try:
            assert late.wait(lambda m: any(t == "signs/state" and retained for t, _, retained in m))
        finally:
            late.close()
    finally:
        stop.set()
        runner.join(timeout=30)
        sub.close()
    summary = result["summary"]
    gaps = [b - a for a, b in zip(frame_times, frame_times[1:])]
    assert max(gaps) < 0.5, max(gaps)  # no frame waited for the broker
    stats = next(v for k, v in summary.events["outputs"].items() if k.startswith("--mqtt"))
    emitted = 2 * summary.events["events"]  # each held sign is released, the last one when the run ends
    assert stats["connections"] >= 2 and stats["dropped"] > 0
    assert stats["delivered"] + stats["dropped"] == emitted  # every event either reached the broker or was counted
    assert any("dropped" in line and "mqtt" in line for line in summary.event_lines)


def test_a_restarted_broker_is_told_the_sign_still_held(broker, monkeypatch):
    """No event after the restart, so only the new connection can bring the state back (persistence false forgets it)."""
    monkeypatch.setattr(config, "MQTT_RECONNECT_MIN_S", 0.1)
    output = MqttOutput(broker.url(), log=quiet)

    def frames_until(connections: int) -> None:
        deadline = time.monotonic() + 20
        while output.connections < connections and time.monotonic() < deadline:
            output.on_frame(None)  # the loop goes on, with no events
            time.sleep(0.05)

    try:
        frames_until(1)
        output.on_event(SignEvent(HELD, 1, "3", 0.9, 0.0, 0.5, 10))
        broker.stop()
        broker.start()
        frames_until(2)
        for _ in range(10):
            output.on_frame(None)
            time.sleep(0.02)
        late = Subscriber(broker.port)
        try:
            assert late.wait(lambda m: ("signs/state", "3", True) in m)
        finally:
            late.close()
    finally:
        output.close()


def test_a_broker_that_is_down_costs_the_run_nothing(held_video, tiny_models):
    video, _, ranges = held_video
    url = f"mqtt://127.0.0.1:{_free_port()}/signs"  # nothing listens there
    t0 = time.perf_counter()
    summary = run_live(tiny_models["int8"], LiveOptions(video=str(video), headless=True, status_interval=0, events=EventOptions(mqtt=url)),
                       log=quiet)
    assert time.perf_counter() - t0 < 15
    stats = next(v for k, v in summary.events["outputs"].items() if k.startswith("--mqtt"))
    assert summary.events["events"] == len(ranges)
    assert stats["connections"] == 0 and stats["delivered"] == 0 and stats["dropped"] == 2 * len(ranges)
    assert any("never connected" in w for w in summary.warnings)


def _events_arrive(model: Path, options: LiveOptions, sub: Subscriber, ranges) -> None:
    """Run live: ``sub`` receives one held event per held range, in order, and the summary has no MQTT warning."""
    try:
        time.sleep(0.3)  # subscribed before the run starts
        summary = run_live(model, options, log=quiet)
        assert sub.wait(lambda m: len(_events(sub)) >= len(ranges))
        assert [e["sign"] for e in _events(sub)] == [sign for _, _, sign in ranges]
        assert not any("mqtt" in w for w in summary.warnings), summary.warnings
    finally:
        sub.close()


@pytest.fixture
def readable_dir():
    """A folder mosquitto can read when started as root (it reads certificates and passwords as its own user), unlike tmp_path."""
    if MOSQUITTO is None:
        pytest.skip("no mosquitto binary: apt-get install mosquitto (.ci/run does)")
    folder = Path(tempfile.mkdtemp(prefix="edge-signs-mqtt-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _readable(*files: Path) -> None:
    for f in files:
        f.chmod(0o644)


@pytest.fixture
def tls_broker(readable_dir):
    """mosquitto with a TLS listener whose certificate (for IP 127.0.0.1) a fresh CA signed: (broker, CA file)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary: apt-get install openssl")
    d = readable_dir

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=edge-signs test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt",
            "-days", "2", "-extfile", "san.cnf")
    _readable(d / "ca.crt", d / "server.crt", d / "server.key")
    b = Broker(d, f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n")
    yield b, d / "ca.crt"
    if b.proc.poll() is None:
        b.stop()


def test_mqtts_checks_the_brokers_certificate(tls_broker, held_video, tiny_models, monkeypatch):
    broker, ca = tls_broker
    video, _, ranges = held_video
    options = LiveOptions(video=str(video), headless=True, status_interval=0, events=EventOptions(mqtt=broker.url(scheme="mqtts")))
    # A certificate no system CA signed: refused, and the run is not held up by it.
    summary = run_live(tiny_models["int8"], options, log=quiet)
    assert any("never connected" in w for w in summary.warnings)
    # Its CA trusted (OpenSSL's SSL_CERT_FILE, which paho's default certificates follow): the events arrive encrypted.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    _events_arrive(tiny_models["int8"], options, Subscriber(broker.port, ca=ca), ranges)


def test_a_user_and_password_from_the_environment(readable_dir, held_video, tiny_models, monkeypatch):
    if shutil.which("mosquitto_passwd") is None:
        pytest.skip("no mosquitto_passwd binary (Debian's mosquitto package has it)")
    passwords = readable_dir / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "pi", "s3cret word"], check=True, capture_output=True)
    _readable(passwords)
    broker = Broker(readable_dir, f"password_file {passwords}\n")
    video, _, ranges = held_video
    url = f"mqtt://pi@127.0.0.1:{broker.port}/signs"
    options = LiveOptions(video=str(video), headless=True, status_interval=0, events=EventOptions(mqtt=url))
    try:
        monkeypatch.setenv(config.MQTT_PASSWORD_ENV, "wrong")
        said = []
        summary = run_live(tiny_models["int8"], options, log=said.append)
        assert any("refused every connection" in w and config.MQTT_PASSWORD_ENV in w for w in summary.warnings), summary.warnings
        assert sum("refused the connection" in line for line in said) == 1  # said once, not at every retry
        monkeypatch.setenv(config.MQTT_PASSWORD_ENV, "s3cret word")
        _events_arrive(tiny_models["int8"], options, Subscriber(broker.port, user=("pi", "s3cret word")), ranges)
    finally:
        broker.stop()
