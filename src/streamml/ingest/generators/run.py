"""Run a generator into Kafka: events to ``<ns>.raw.<stream>``, labels later to ``<ns>.labels.<stream>``.

Labels are held back until the generator's event time passes their ``label_time``, so a
reader sees the ground truth arrive after the events, as it would in production. At the
end of a run every label still held back is published (``flush_labels=True``), so a finite
run leaves a complete labelled data set.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import orjson

from streamml import headers as H
from streamml.config import Settings
from streamml.errors import ConfigError, KafkaError
from streamml.ingest.generators.sensors import sensors
from streamml.ingest.generators.transactions import Event, transactions
from streamml.kafka import produce
from streamml.kafka.admin import TopicSpec, ensure_topics
from streamml.kafka.clients import producer as make_producer

__all__ = ["GenerateReport", "run_generator", "generate_transactions", "generate_sensors"]


@dataclass
class GenerateReport:
    """What a generator run wrote."""

    stream: str
    topic: str
    labels_topic: str
    events: int
    labels: int
    positives: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "topic": self.topic, "labels_topic": self.labels_topic,
                "events": self.events, "labels": self.labels, "positives": self.positives,
                "seconds": round(self.seconds, 3)}


def run_generator(settings: Settings, events: Iterator[Event], stream: str, *, component: str,
                  label_field: str, rate: float | None = None, duration: float | None = None,
                  count: int | None = None, partitions: int = 3, flush_labels: bool = True,
                  on_progress: Callable[[int], None] | None = None) -> GenerateReport:
    """Produce ``events`` (and their delayed labels) at up to ``rate`` per second."""
    if rate is not None and rate <= 0:
        raise ConfigError("--rate must be positive")
    if count is None and duration is None:
        raise ConfigError("give a count or a duration (or both)",
                          hint="e.g. count=10000 (streamml generate: --max-records 10000)")
    topic, labels_topic = settings.topic("raw", stream), settings.topic("labels", stream)
    ensure_topics(settings, [TopicSpec(topic, partitions), TopicSpec(labels_topic, partitions)])
    producer = make_producer(settings)

    const = H.lineage(component=component)
    held: list[tuple[int, str, bytes, list[tuple[str, bytes]]]] = []
    n_events = n_labels = positives = 0
    t0 = time.monotonic()
    end = t0 + duration if duration else None
    step = max(1, int(rate // 50)) if rate else 1000

    def send(topic_: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        produce.send(producer, topic_, value, key, headers=headers)

    def release(until: int | None) -> None:
        nonlocal n_labels
        while held and (until is None or held[0][0] <= until):
            _, eid, value, headers = heapq.heappop(held)
            send(labels_topic, value, eid.encode(), headers)
            n_labels += 1

    for ev in events:
        if count is not None and n_events >= count:
            break
        rec, label = ev.record, ev.label
        eid, etime = rec["event_id"], rec["event_time"]
        release(etime)
        hdrs = [(H.EVENT_ID, eid.encode()), (H.EVENT_TIME, str(etime).encode())] + const
        send(topic, orjson.dumps(rec), ev.key.encode(), hdrs)
        lh = [(H.EVENT_ID, eid.encode()), (H.EVENT_TIME, str(label["label_time"]).encode())] + const
        heapq.heappush(held, (label["label_time"], eid, orjson.dumps(label), lh))
        positives += int(bool(label.get(label_field)))
        n_events += 1
        if n_events % step == 0:
            producer.poll(0)
            if on_progress is not None:
                on_progress(n_events)
            now = time.monotonic()
            if rate:
                ahead = t0 + n_events / rate - now
                if ahead > 0:
                    time.sleep(ahead)
                    now = time.monotonic()
            if end is not None and now >= end:
                break
    if flush_labels:
        release(None)
    remaining = producer.flush(60)
    if remaining:
        raise KafkaError(f"{remaining} generated record(s) unacknowledged after 60s",
                         hint="check that the brokers are reachable")
    return GenerateReport(stream, topic, labels_topic, n_events, n_labels, positives, time.monotonic() - t0)


def _start_ms(start_ms: int | None) -> int:
    return int(time.time() * 1000) if start_ms is None else start_ms


def generate_transactions(settings: Settings, *, stream: str = "transactions", count: int | None = None,
                          duration: float | None = None, rate: float | None = None, seed: int = 0,
                          start_ms: int | None = None, fraud_rate: float = 0.004,
                          new_pattern_at: int | None = None, label_delay_ms: int = 5_000,
                          n_cards: int = 2000, n_merchants: int = 300, partitions: int = 3,
                          on_progress: Callable[[int], None] | None = None, **kw: Any) -> GenerateReport:
    """Card payments with fraud into ``<ns>.raw.<stream>``, labels into ``<ns>.labels.<stream>``.

    Record and label fields: see :mod:`streamml.ingest.generators.transactions`. Event time
    starts at ``start_ms`` (default: now) and advances at ``rate`` events per second (50
    when no rate is given), so with ``rate`` it follows the wall clock. ``new_pattern_at``
    injects the new fraud pattern from that event on.
    """
    events = transactions(seed, start_ms=_start_ms(start_ms), events_per_second=rate or 50.0,
                          fraud_rate=fraud_rate, new_pattern_at=new_pattern_at, label_delay_ms=label_delay_ms,
                          n_cards=n_cards, n_merchants=n_merchants, **kw)
    return run_generator(settings, events, stream, component="generate.transactions", label_field="is_fraud",
                         rate=rate, duration=duration, count=count, partitions=partitions,
                         on_progress=on_progress)


def generate_sensors(settings: Settings, *, stream: str = "sensors", count: int | None = None,
                     duration: float | None = None, rate: float | None = None, seed: int = 0,
                     start_ms: int | None = None, machines: int = 20, mean_life: int = 2000,
                     horizon_ms: int | None = None, partitions: int = 3,
                     on_progress: Callable[[int], None] | None = None, **kw: Any) -> GenerateReport:
    """Machine sensor readings into ``<ns>.raw.<stream>``, failure labels into ``<ns>.labels.<stream>``.

    Each machine reports once per ``machines / rate`` seconds of event time (once a second
    without a rate). Fields: see :mod:`streamml.ingest.generators.sensors`.
    """
    interval = int(1000 * machines / rate) if rate else 1000
    events = sensors(seed, start_ms=_start_ms(start_ms), machines=machines, interval_ms=max(1, interval),
                     mean_life=mean_life, horizon_ms=horizon_ms, **kw)
    return run_generator(settings, events, stream, component="generate.sensors", label_field="failure",
                         rate=rate, duration=duration, count=count, partitions=partitions,
                         on_progress=on_progress)
