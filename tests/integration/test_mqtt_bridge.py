"""The MQTT bridge against a real mosquitto broker and the real Kafka broker."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import paho.mqtt.client as mqtt
import pytest
from helpers import drain

from streamml import headers as H
from streamml.config import Settings
from streamml.ingest import MqttBridge, MqttOptions
from streamml.kafka import clients
from streamml.schema import Field, Schema

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (make system-deps installs it)")


@pytest.fixture
def mqtt_port(tmp_path: Path) -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n")
    proc = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(10)


def publisher(port: int) -> mqtt.Client:
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{time.time_ns()}")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def test_wildcards_keys_and_dead_letters(settings: Settings, mqtt_port: int) -> None:
    schema = Schema("reading", [Field("temp", float, min=-50, max=150)])
    opts = MqttOptions(port=mqtt_port, topics=("plant/+/temp", "alerts/#"), schema=schema)
    sent: list[tuple[str, bytes]] = []
    with MqttBridge(settings, "iot", opts) as bridge:
        dev = publisher(mqtt_port)
        for i in range(60):
            topic = f"plant/m{i % 4}/temp" if i % 3 else f"alerts/zone{i % 2}/fire"
            payload = json.dumps({"temp": 20.0 + i}).encode()
            dev.publish(topic, payload, qos=1).wait_for_publish(5)
            sent.append((topic, payload))
        dev.publish("plant/m1/pressure", b'{"temp": 1.0}', qos=1).wait_for_publish(5)     # not subscribed
        dev.publish("plant/m1/temp", b"\x00\xffnot json", qos=1).wait_for_publish(5)
        dev.publish("plant/m2/temp", b'{"temp": 999.0}', qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 20
        while bridge.counts.accepted + bridge.counts.dead_lettered < 62 and time.monotonic() < deadline:
            time.sleep(0.05)
        dev.loop_stop()
        dev.disconnect()
    c = bridge.counts
    assert (c.records_in, c.accepted, c.dead_lettered, c.failed) == (62, 60, 2, 0) and c.balanced
    raw = drain(settings, settings.topic("raw", "iot"), expect=60)
    assert sorted((m["key"].decode(), m["value"]) for m in raw) == sorted(sent)
    assert all(m["headers"][H.SOURCE].startswith(f"mqtt:{m['key'].decode()}#") for m in raw)
    dlq = drain(settings, settings.topic("dlq"), expect=2)
    reasons = sorted(m["headers"][H.REASON].split(":")[0] for m in dlq)
    assert reasons == ["field 'temp'", "invalid UTF-8 at byte 1"]
    assert {m["value"] for m in dlq} == {b"\x00\xffnot json", b'{"temp": 999.0}'}
    assert all(m["headers"][H.SOURCE].startswith("mqtt:plant/m") for m in dlq)


def test_messages_are_acknowledged_only_after_kafka_so_none_is_lost(settings: Settings, mqtt_port: int) -> None:
    """Kafka unreachable: no PUBACK, so the MQTT broker redelivers to the next bridge with the same id."""
    opts = MqttOptions(port=mqtt_port, topics=("dev/#",), client_id="bridge-under-test")
    first = MqttBridge(settings, "safe", opts)
    dead = f"127.0.0.1:{_free_port()}"
    first.writer.producer = clients.producer(settings.with_(bootstrap_servers=dead), message_timeout_ms=1500)
    first.start()
    dev = publisher(mqtt_port)
    payloads = [json.dumps({"i": i}).encode() for i in range(25)]
    for i, p in enumerate(payloads):
        dev.publish(f"dev/{i % 5}", p, qos=1).wait_for_publish(5)
    deadline = time.monotonic() + 15
    while first.counts.failed < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.stop(timeout=3)
    # mosquitto stops delivering at 20 unacknowledged messages in flight: the rest wait in the session
    assert 20 <= first.counts.failed == first.counts.records_in and first.counts.accepted == 0

    with MqttBridge(settings, "safe", opts) as second:           # same client id: the session's unacked messages
        deadline = time.monotonic() + 20
        while second.counts.accepted < 25 and time.monotonic() < deadline:
            time.sleep(0.05)
    dev.loop_stop()
    dev.disconnect()
    raw = drain(settings, settings.topic("raw", "safe"), expect=25)
    assert sorted(m["value"] for m in raw) == sorted(payloads)
    assert {m["key"] for m in raw} == {f"dev/{i}".encode() for i in range(5)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
