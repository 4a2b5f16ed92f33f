"""Bridge MQTT topic filters into ``<ns>.raw.<stream>``, the MQTT topic becoming the Kafka key.

The bridge subscribes at QoS 1 with a persistent session (``clean_session=False``) and
acknowledges (PUBACK) each MQTT message only after Kafka acknowledged its record, or its
dead letter. If the bridge dies before that, the MQTT broker delivers the message again
when the bridge reconnects with the same client id: delivery is at least once, never lost
once the device got its PUBACK. A redelivered message may appear twice in Kafka; each
record's ``sm.source`` header carries the MQTT topic and packet id to tell such pairs apart.

Payloads must be JSON objects (validated by the schema when one is given) unless ``raw``
is set, in which case any payload is passed through as it is.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from streamml import headers as H
from streamml.config import Settings
from streamml.errors import ConfigError, StreamMLError
from streamml.extras import require
from streamml.ingest.writer import IngestCounts, RecordWriter
from streamml.schema.codec import codec_for, schema_headers
from streamml.schema.core import Schema, parse_timestamp_ms
from streamml.schema.registry import SchemaRegistry

__all__ = ["MqttOptions", "MqttBridge", "bridge_mqtt", "COMPONENT"]

COMPONENT = "ingest.mqtt"


@dataclass(frozen=True)
class MqttOptions:
    """Where the MQTT broker is and what to subscribe to."""

    host: str = "127.0.0.1"
    port: int = 1883
    topics: tuple[str, ...] = ("#",)
    qos: int = 1
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    keepalive: int = 30
    schema: Schema | None = None
    raw: bool = False
    wire_format: str = "json"
    partitions: int = 3


class MqttBridge:
    """A running bridge; :meth:`start`, then :meth:`stop` (or use it as a context manager)."""

    def __init__(self, settings: Settings, stream: str, options: MqttOptions | None = None) -> None:
        mqtt = require("paho.mqtt.client", "the MQTT bridge", extra="mqtt")

        self.options = opts = options or MqttOptions()
        if opts.qos not in (0, 1, 2):
            raise ConfigError(f"MQTT QoS must be 0, 1 or 2, got {opts.qos}")
        if not opts.topics:
            raise ConfigError("give at least one MQTT topic filter", hint="e.g. --topic 'sensors/#'")
        self.stream = stream
        self.schema = SchemaRegistry.for_settings(settings).register(stream, opts.schema) if opts.schema else None
        self.codec = codec_for(opts.wire_format, self.schema)
        self.writer = RecordWriter(settings, stream, COMPONENT, partitions=opts.partitions, linger_ms=5)
        self.counts = IngestCounts()
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.connect_error: str | None = None

        self._const = H.lineage(component=COMPONENT)
        self._const += schema_headers(self.schema, opts.wire_format)
        client_id = opts.client_id or f"streamml-{settings.namespace}-{stream}"
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False, manual_ack=True)
        if opts.username:
            self.client.username_pw_set(opts.username, opts.password)
        if opts.tls:
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="streamml-mqtt-poll", daemon=True)

    # -- life cycle -------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "MqttBridge":
        """Connect, subscribe and wait until the broker confirmed the subscriptions."""
        self._poller.start()
        try:
            self.client.connect(self.options.host, self.options.port, keepalive=self.options.keepalive)
        except OSError as exc:
            self._stop.set()
            raise ConfigError(f"cannot connect to the MQTT broker at {self.options.host}:{self.options.port}: "
                              f"{exc.strerror or exc}", hint="check --mqtt-host and --mqtt-port") from None
        self.client.loop_start()
        if not self.subscribed.wait(timeout):
            self.stop()
            raise StreamMLError(f"MQTT broker did not confirm the subscription within {timeout:.0f}s"
                                + (f": {self.connect_error}" if self.connect_error else ""))
        return self

    def stop(self, timeout: float = 30.0) -> IngestCounts:
        """Stop taking messages, wait for Kafka to acknowledge what is in flight, disconnect."""
        self.client.loop_stop()
        self.writer.producer.flush(timeout)
        self._stop.set()
        if self._poller.is_alive():
            self._poller.join(5)
        # acks queued by the last delivery reports go out before the connection closes
        self.client.loop_start()
        time.sleep(0.2)
        self.client.disconnect()
        self.client.loop_stop()
        return self.counts

    def __enter__(self) -> "MqttBridge":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.writer.producer.poll(0.05)

    # -- MQTT callbacks ---------------------------------------------------------------
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            self.connect_error = str(reason_code)
            return
        client.subscribe([(t, self.options.qos) for t in self.options.topics])

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        if any(getattr(rc, "is_failure", False) for rc in reason_codes):
            self.connect_error = "subscription refused: " + ", ".join(map(str, reason_codes))
            return
        self.subscribed.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.counts.records_in += 1
        payload: bytes = msg.payload
        source = f"mqtt:{msg.topic}#{msg.mid}"
        reason, record = None, None
        if not self.options.raw:
            try:
                payload.decode("utf-8")
                record = orjson.loads(payload)
                if not isinstance(record, dict):
                    reason = f"expected a JSON object, got {type(record).__name__}"
            except UnicodeDecodeError as exc:
                reason = f"invalid UTF-8 at byte {exc.start}"
            except orjson.JSONDecodeError as exc:
                reason = f"malformed JSON: {exc}"
            if reason is None and self.schema is not None:
                errs = self.schema.errors(record)
                reason = "; ".join(errs) if errs else None
        eid = (record.get("event_id") if isinstance(record, dict) and isinstance(record.get("event_id"), str)
               else None) or uuid.uuid4().hex
        etime = int(time.time() * 1000)
        if reason is None and isinstance(record, dict) and record.get("event_time") is not None:
            try:
                etime = parse_timestamp_ms(record["event_time"])
            except (ValueError, TypeError, OverflowError):
                reason = "field 'event_time' is not a timestamp"
        value = payload
        if reason is None and record is not None and self.codec.format != "json":
            value = self.codec.encode(record)
        key = msg.topic.encode()
        hdrs = [(H.EVENT_ID, eid.encode()), (H.EVENT_TIME, str(etime).encode()),
                (H.SOURCE, source.encode())] + self._const
        if reason is None and not self.writer.fits(value, key, hdrs):
            reason = self.writer.too_large_reason(value, key, hdrs)
        ack = self._acker(msg.mid, msg.qos, dead=reason is not None)
        if reason is None:
            self.writer.produce(value, key, hdrs, on_delivery=ack)
        else:
            with self._lock:
                self.counts.reasons[reason.split(":")[0]] += 1
            self.writer.dead_letter(payload, source, reason, event_id=eid, on_delivery=ack)

    def _acker(self, mid: int, qos: int, dead: bool) -> Callable[[Any, Any], None]:
        def done(err: Any, _msg: Any) -> None:
            with self._lock:
                if err is not None:
                    self.counts.failed += 1
                    return          # no PUBACK: the broker redelivers after a reconnect
                if dead:
                    self.counts.dead_lettered += 1
                else:
                    self.counts.accepted += 1
            if qos > 0:
                self.client.ack(mid, qos)
        return done


def bridge_mqtt(settings: Settings, stream: str, options: MqttOptions | None = None, *,
                duration: float | None = None, max_messages: int | None = None,
                on_ready: Callable[[MqttBridge], None] | None = None,
                on_tick: Callable[[IngestCounts], None] | None = None) -> IngestCounts:
    """Run a bridge until ``duration`` seconds passed, ``max_messages`` arrived, or Ctrl-C."""
    bridge = MqttBridge(settings, stream, options).start()
    if on_ready is not None:
        on_ready(bridge)
    end = time.monotonic() + duration if duration else None
    try:
        while True:
            time.sleep(0.2)
            if on_tick is not None:
                on_tick(bridge.counts)
            if end is not None and time.monotonic() >= end:
                break
            if max_messages is not None and bridge.counts.records_in >= max_messages:
                break
    except KeyboardInterrupt:
        pass
    return bridge.stop()
