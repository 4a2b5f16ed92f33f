"""Where every source writes: the stream's raw topic, and the dead-letter topic for the rest.

Each source counts what it takes in, what the broker acknowledged, and what went to the
dead-letter topic ``<ns>.dlq``. The invariant every source keeps, checked by its tests::

    records_in == accepted + dead_lettered + failed

``failed`` counts records neither stored nor dead-lettered because Kafka refused them
(the caller was told so: an HTTP 503, an MQTT message left unacknowledged); it stays 0
whenever the broker is healthy.

A dead letter keeps the original bytes as its value (a truncated copy when the original
is larger than the topic allows) and says why in its headers: ``sm.source`` (file:line,
HTTP request id and index, MQTT topic), ``sm.reason``, ``sm.component``, ``sm.stream``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from confluent_kafka import Producer

from streamml import headers as H
from streamml.config import Settings
from streamml.errors import KafkaError
from streamml.kafka.admin import TopicSpec, ensure_topics, topic_config
from streamml.kafka.clients import producer as make_producer
from streamml.kafka.produce import send

__all__ = ["IngestCounts", "RecordWriter", "STREAM_HEADER", "TRUNCATED_HEADER", "DLQ_PREVIEW_BYTES",
           "record_size"]

STREAM_HEADER = "sm.stream"
TRUNCATED_HEADER = "sm.original_size"
DLQ_PREVIEW_BYTES = 64 * 1024
_RECORD_OVERHEAD = 128          # record batch + record framing, generously


def record_size(value: bytes | None, key: bytes | None, headers: list[tuple[str, bytes]] | None) -> int:
    """An upper bound of a record's size on the wire, before compression."""
    n = _RECORD_OVERHEAD + (len(value) if value else 0) + (len(key) if key else 0)
    for k, v in headers or ():
        n += len(k) + (len(v) if v else 0) + 4
    return n


@dataclass
class IngestCounts:
    """What a source took in and where it went.

    >>> c = IngestCounts(records_in=5, accepted=3, dead_lettered=2)
    >>> c.balanced
    True
    """

    records_in: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def balanced(self) -> bool:
        return self.records_in == self.accepted + self.dead_lettered + self.failed

    def add(self, other: "IngestCounts") -> None:
        self.records_in += other.records_in
        self.accepted += other.accepted
        self.dead_lettered += other.dead_lettered
        self.failed += other.failed
        self.reasons.update(other.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {"records_in": self.records_in, "accepted": self.accepted, "dead_lettered": self.dead_lettered,
                "failed": self.failed, "reasons": dict(self.reasons)}


class RecordWriter:
    """Produce accepted records to ``<ns>.raw.<stream>`` and rejected ones to ``<ns>.dlq``.

    The raw and dead-letter topics are created when missing. ``max_bytes`` is the largest
    record the raw topic accepts (its ``max.message.bytes``); :meth:`fits` checks a record
    before it is produced, so an oversized record is dead-lettered instead of failing the
    producer. With ``transactional_id`` the producer is transactional and the caller drives
    the transactions.
    """

    def __init__(self, settings: Settings, stream: str, component: str, *, partitions: int = 3,
                 transactional_id: str | None = None, producer: Producer | None = None,
                 admin_timeout: float = 30.0, **producer_overrides: Any) -> None:
        self.settings = settings
        self.stream = stream
        self.component = component
        self.topic = settings.topic("raw", stream)
        self.dlq_topic = settings.topic("dlq")
        ensure_topics(settings, [TopicSpec(self.topic, partitions), TopicSpec(self.dlq_topic, 3)],
                      timeout=admin_timeout)
        self.max_bytes = min(_max_message_bytes(settings, self.topic), _max_message_bytes(settings, self.dlq_topic))
        self.counts = IngestCounts()
        overrides = {"message.max.bytes": max(self.max_bytes, 1_000_000) + 1024, **producer_overrides}
        self.producer = producer or make_producer(settings, transactional_id=transactional_id, **overrides)
        self._dlq_base = [(H.COMPONENT, component.encode()), (STREAM_HEADER, stream.encode())]

    # -- checks -----------------------------------------------------------------------
    def fits(self, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None) -> bool:
        return record_size(value, key, headers) <= self.max_bytes

    def too_large_reason(self, value: bytes, key: bytes | None = None,
                         headers: list[tuple[str, bytes]] | None = None) -> str:
        return (f"record too large: {record_size(value, key, headers):,} bytes with framing, over the topic "
                f"limit of {self.max_bytes:,} bytes (max.message.bytes)")

    # -- producing --------------------------------------------------------------------
    def produce(self, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]] | None,
                on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        """Produce one record to the raw topic, waiting for queue space when the buffer is full."""
        send(self.producer, self.topic, value, key, headers=headers, on_delivery=on_delivery)

    def dead_letter(self, original: bytes, source: str, reason: str, *, event_id: str | None = None,
                    on_delivery: Callable[[Any, Any], None] | None = None) -> None:
        """Produce a dead letter: the original bytes (truncated when too large) with why and where."""
        headers = self._dlq_base + [(H.SOURCE, source.encode("utf-8", "replace")),
                                    (H.REASON, reason.encode("utf-8", "replace")[:4096]),
                                    (H.INGEST_TIME, str(int(time.time() * 1000)).encode())]
        if event_id:
            headers.append((H.EVENT_ID, event_id.encode()))
        value = original
        if not self.fits(value, None, headers):
            value = original[:DLQ_PREVIEW_BYTES]
            headers.append((TRUNCATED_HEADER, str(len(original)).encode()))
        key = self.stream.encode()
        send(self.producer, self.dlq_topic, value, key, headers=headers, on_delivery=on_delivery)

    def flush(self, timeout: float = 60.0) -> None:
        """Wait until every produced record is acknowledged or failed."""
        remaining = self.producer.flush(timeout)
        if remaining:
            raise KafkaError(f"{remaining} record(s) still unacknowledged after {timeout:.0f}s",
                             hint="check that the brokers are reachable")


def _max_message_bytes(settings: Settings, topic: str) -> int:
    try:
        return int(topic_config(settings, topic).get("max.message.bytes") or 1_048_588)
    except (KafkaError, ValueError):
        return 1_000_000
