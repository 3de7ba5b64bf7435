"""``--mqtt mqtt[s]://[user:pass@]host[:port]/topic``: events for home-automation hubs.

Topics under ``topic``:

    topic/event          every event as JSON (events.SignEvent.as_dict), QoS 1, not retained
    topic/state          the sign held now, or "none": retained, so a subscriber that comes later knows it
    topic/availability   "online" while the run goes on, "offline" at its end; also the last will, which
                         the broker publishes when the Pi goes away without saying so (killed, power, network)

With ``--ha-discovery`` a retained config message under ``homeassistant/sensor/...``
makes the Pi appear in Home Assistant as a sensor whose state is the sign.

The loop never waits for the broker. paho-mqtt's network thread (``loop_start``)
connects, and reconnects with back-off (``reconnect_delay_set``) when the broker is
down or goes away; events wait in a bounded queue here meanwhile (the oldest dropped
and counted when it is full) and are handed to paho, which only queues them, when
the connection is up. paho-mqtt is the optional ``[mqtt]`` extra (Debian's
python3-paho-mqtt in the Camera Module's venv); paho 1.6 (Bookworm) and 2.x both work.
"""

from __future__ import annotations

import collections
import json
import os
import re
import socket
import threading
from dataclasses import dataclass
from typing import Optional
from urllib.parse import unquote, urlsplit

from edge_signs import config
from edge_signs.artifacts import dumps, finite_or_none
from edge_signs.edge.event_types import HELD, EventOutput, SignEvent
from edge_signs.errors import EdgeSignsError
from edge_signs.log import Log, log_stderr

PAHO_HINT = ("--mqtt needs paho-mqtt, which this Python cannot import: pip install 'edge-signs[mqtt]' "
             "(in the Camera Module's --system-site-packages venv: sudo apt install python3-paho-mqtt)")
NO_SIGN = "none"  # topic/state when no sign is held
ONLINE, OFFLINE = "online", "offline"


@dataclass(frozen=True)
class MqttTarget:
    """A parsed --mqtt URL."""

    host: str
    port: int
    topic: str  # the base topic, without a trailing slash
    tls: bool = False
    username: Optional[str] = None
    password: Optional[str] = None

    def __str__(self) -> str:  # never the password
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.topic}"


def parse_mqtt(url: str) -> MqttTarget:
    """``mqtt[s]://[user:pass@]host[:port]/topic`` -> MqttTarget, or a one-line error naming what is wrong."""
    expected = "expected mqtt://[user:pass@]host[:port]/topic (mqtts:// for TLS)"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EdgeSignsError(f"--mqtt {url!r}: {exc}; {expected}") from None
    if parts.scheme not in ("mqtt", "mqtts"):
        raise EdgeSignsError(f"--mqtt {url!r}: {expected}")
    if not parts.hostname:
        raise EdgeSignsError(f"--mqtt {url!r}: no broker host; {expected}")
    topic = unquote(parts.path).strip("/")
    if not topic:
        raise EdgeSignsError(f"--mqtt {url!r}: no topic; {expected}, e.g. mqtt://raspberrypi.local/edge-signs")
    if "+" in topic or "#" in url or "\0" in topic:  # '#' ends a URL's path: it can only be meant as the wildcard
        raise EdgeSignsError(f"--mqtt {url!r}: the topic {topic!r} holds a wildcard (+ or #); name one topic to publish under")
    if parts.query:
        raise EdgeSignsError(f"--mqtt {url!r}: no ?query expected; {expected}")
    tls = parts.scheme == "mqtts"
    password = unquote(parts.password) if parts.password is not None else os.environ.get(config.MQTT_PASSWORD_ENV)
    return MqttTarget(parts.hostname, port or (8883 if tls else 1883), topic, tls,
                      unquote(parts.username) if parts.username else None, password)


def import_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise EdgeSignsError(PAHO_HINT) from None
    return mqtt


def check_mqtt(url: str) -> MqttTarget:
    target = parse_mqtt(url)
    import_paho()
    return target


def _new_client(mqtt, client_id: str):
    """A paho client on either API: 2.x wants the callback version named, 1.x has no such argument."""
    version = getattr(mqtt, "CallbackAPIVersion", None)
    if version is not None:
        return mqtt.Client(version.VERSION2, client_id=client_id)
    return mqtt.Client(client_id=client_id)


def discovery_config(target: MqttTarget) -> tuple[str, str]:
    """Home Assistant's MQTT discovery message for a sensor whose state is the sign: (topic, JSON payload)."""
    node = re.sub(r"[^A-Za-z0-9_-]", "_", target.topic)
    payload = {
        "name": "Sign", "unique_id": f"edge_signs_{node}_sign", "object_id": f"edge_signs_{node}",
        "state_topic": f"{target.topic}/state", "availability_topic": f"{target.topic}/availability",
        "payload_available": ONLINE, "payload_not_available": OFFLINE, "icon": "mdi:hand-back-right",
        "json_attributes_topic": f"{target.topic}/event",
        "device": {"identifiers": [f"edge_signs_{node}"], "name": f"edge-signs {target.topic}", "manufacturer": "edge-signs",
                   "model": "hand-sign camera"},
    }
    return f"{config.MQTT_DISCOVERY_PREFIX}/sensor/edge_signs_{node}/sign/config", json.dumps(payload)


class MqttOutput(EventOutput):
    """Publishes events, the held sign and availability (the module's docstring); never blocks the loop.

    Only the loop's thread touches the queue: ``on_event`` queues, and ``on_event`` or
    ``on_frame`` hand what waits to paho while paho's thread says the connection is
    up (a flag). paho's callbacks never take a lock of ours, so they cannot deadlock
    against a publish. Delivery is counted from the broker's acknowledgements (QoS 1).
    """

    def __init__(self, url: str, *, ha_discovery: bool = False, log: Log = log_stderr, queue_size: Optional[int] = None,
                 keepalive: Optional[int] = None):
        mqtt = import_paho()
        # Defaults read from config now, not at import: tests and tools may change them.
        queue_size = config.MQTT_QUEUE if queue_size is None else queue_size
        keepalive = config.MQTT_KEEPALIVE_S if keepalive is None else keepalive
        self.target = parse_mqtt(url)
        self.name = f"--mqtt {self.target}"
        self.log = log
        self.ha_discovery = ha_discovery
        t = self.target.topic
        self.event_topic, self.state_topic, self.availability_topic = f"{t}/event", f"{t}/state", f"{t}/availability"
        self.delivered = self.dropped = self.connections = self.refused = 0
        self.state = NO_SIGN
        self._state_sent_on = 0  # the connection the state last went out on (0: none yet)
        self._state_sent: Optional[str] = None  # and what it was
        self.refusal: Optional[str] = None  # the broker's reason, when it refused a connection
        self._queue: collections.deque[str] = collections.deque(maxlen=queue_size)  # event payloads not yet handed to paho
        self._sent: collections.deque = collections.deque()  # paho's MQTTMessageInfo of events not yet acknowledged
        self._connected = False  # set by paho's thread, read by the loop's
        self._up = threading.Event()  # the same, for close() to wait on
        self._down_said = False
        self._closed = False
        client = _new_client(mqtt, f"edge-signs-{socket.gethostname()}-{os.getpid()}")
        if self.target.username:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            client.tls_set()  # the system's CA certificates; the broker's name is checked
        client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(config.MQTT_RECONNECT_MIN_S, config.MQTT_RECONNECT_MAX_S)
        client.max_queued_messages_set(queue_size)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        client.connect_async(self.target.host, self.target.port, keepalive)
        client.loop_start()  # connects in paho's thread, and keeps reconnecting: a broker that is down is no error
        log(f"mqtt: publishing to {self.target} ({self.event_topic}, {self.state_topic} retained, {self.availability_topic})")

    # -- paho's thread
    def _on_connect(self, client, userdata, flags, reason, *properties) -> None:
        if reason != 0:
            self.refused += 1
            self.refusal = str(reason)
            self._say_down(f"{self.target} refused the connection ({reason})")
            return
        self.connections += 1
        self.log(f"mqtt: connected to {self.target}" + (" again" if self.connections > 1 else ""))
        client.publish(self.availability_topic, ONLINE, qos=1, retain=True)
        if self.ha_discovery:
            client.publish(*discovery_config(self.target), qos=1, retain=True)
        # The state goes out from the loop's thread (_hand_over): read here, a sign held meanwhile could be lost.
        self._down_said = False
        self._connected = True
        self._up.set()

    def _on_disconnect(self, client, userdata, *args) -> None:
        self._connected = False
        self._up.clear()
        self._say_down(f"lost {self.target}")

    def _on_connect_fail(self, client, userdata) -> None:
        self._say_down(f"cannot reach {self.target}")

    def _say_down(self, what: str) -> None:
        """Once per outage, not once per retry."""
        if not self._down_said and not self._closed:
            self._down_said = True
            self.log(f"warning: mqtt: {what}; events wait (up to {self._queue.maxlen}) while paho reconnects with back-off")

    # -- the loop's thread
    def on_event(self, event: SignEvent) -> None:
        self.state = event.sign if event.event == HELD else NO_SIGN
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # the deque drops its oldest on append
        self._queue.append(dumps(finite_or_none(event.as_dict())))
        self._hand_over()

    def on_frame(self, result) -> None:
        if self._queue or self._sent or self._state_stale():
            self._hand_over()

    def _state_stale(self) -> bool:
        """Connected, and the broker lacks the sign held now: it changed, or this is a new connection (a restarted broker forgot it)."""
        return self._connected and (self._state_sent != self.state or self._state_sent_on != self.connections)

    def _hand_over(self) -> None:
        """Count what the broker acknowledged; give paho what waits while connected (paho writes it from its thread)."""
        while self._sent and self._sent[0].is_published():
            self._sent.popleft()
            self.delivered += 1
        if self._state_stale():
            connection = self.connections  # read before publishing: a reconnection meanwhile sends it again
            if self._client.publish(self.state_topic, self.state, qos=1, retain=True).rc == 0:
                self._state_sent, self._state_sent_on = self.state, connection
        while self._queue and self._connected:
            info = self._client.publish(self.event_topic, self._queue[0], qos=1)
            if info.rc != 0:  # paho's queue is full, or the connection just went: it waits for the next frame
                return
            self._queue.popleft()
            self._sent.append(info)

    def close(self, keep: bool = True) -> None:
        """Send what waits and "offline" (within MQTT_CLOSE_WAIT_S), then disconnect cleanly (no last will)."""
        if self._closed:
            return
        self._closed = True
        client = self._client
        if self._queue and not self._connected:  # a short run, or a broker just restarting: give it the time events get
            self._up.wait(timeout=config.MQTT_CLOSE_WAIT_S)
        if self._connected:
            self._hand_over()
            info = client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=config.MQTT_CLOSE_WAIT_S)  # after every event: the broker acknowledges in order
            except (RuntimeError, ValueError):  # the connection went meanwhile: the will says "offline" instead
                pass
        client.disconnect()
        client.loop_stop()
        self.delivered += sum(1 for info in self._sent if info.is_published())
        self.dropped += len(self._queue) + sum(1 for info in self._sent if not info.is_published())  # never acknowledged
        self._queue.clear()
        self._sent.clear()

    def stats(self) -> dict:
        return {"broker": str(self.target), "delivered": self.delivered, "dropped": self.dropped,
                "connections": self.connections, "refused": self.refused}

    def lines(self) -> list[str]:
        return [f"mqtt {self.target}: {self.delivered} events delivered (acknowledged by the broker), {self.dropped} dropped "
                f"(the broker was unreachable: queue of {self._queue.maxlen} full, or events left at the end); "
                f"{self.connections} connection(s)"]

    def warnings(self) -> list[str]:
        if not self.connections and self.refusal is not None:
            return [f"mqtt: {self.target} refused every connection ({self.refusal}): check the user and password (or ${config.MQTT_PASSWORD_ENV})"]
        if not self.connections:
            return [f"mqtt: never connected to {self.target}: is the broker running there?"]
        if self.dropped:
            return [f"mqtt: {self.dropped} events never reached {self.target} (it was down or unreachable)"]
        return []
