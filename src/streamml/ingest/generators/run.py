"""Run a generator into Kafka: events to ``<ns>.raw.<stream>``, labels later to ``<ns>.labels.<stream>``.

Labels are held back until the generator's event time passes their ``label_time``, so a
reader sees the ground truth arrive after the events, as it would in production. At the
end of a run every label still held back is published (``flush_labels=True``), so a finite
run leaves a complete labelled data set.

Two clocks. A **live** run (``live=True``: the generator started its event time at now and
runs at a rate) sends each event when the wall clock reaches its own ``event_time``, so
event time stays on the wall clock however many extra events the fraud episodes add. A
**synthetic history** (a given start time, or no rate) is paced by the number of events
(``rate`` per second, or as fast as possible) and its event time runs on its own clock; the
report says which (:attr:`GenerateReport.event_clock`).

:func:`pump` is the loop without the Kafka set-up (any producer with ``produce``/``poll``/
``flush``, and a clock and a sleep to inject), for tests without a broker.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass
from datetime import datetime, timezone
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

__all__ = ["GenerateReport", "run_generator", "pump", "generate_transactions", "generate_sensors"]

_MIN_SLEEP_S = 0.001          # a live run sleeps when it is at least this far ahead of an event's time


def _iso(ms: int) -> str:
    """``ms`` since the epoch as ISO 8601 UTC, to the second.

    >>> _iso(1_704_067_200_000)
    '2024-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class GenerateReport:
    """What a generator run wrote, and which clock its event time followed.

    >>> GenerateReport("s", "t", "l", 1, 1, 0, 0.1, event_clock="wall").clock_note
    'event time: wall clock'
    >>> GenerateReport("s", "t", "l", 1, 1, 0, 0.1, first_event_ms=1_704_067_200_000).clock_note
    'event time: synthetic history from 2024-01-01T00:00:00Z'
    """

    stream: str
    topic: str
    labels_topic: str
    events: int
    labels: int
    positives: int
    seconds: float
    event_clock: str = "synthetic"      # "wall": event_time followed the wall clock; "synthetic": a history
    first_event_ms: int | None = None

    @property
    def clock_note(self) -> str:
        if self.event_clock == "wall":
            return "event time: wall clock"
        return "event time: synthetic history" + ("" if self.first_event_ms is None
                                                   else f" from {_iso(self.first_event_ms)}")

    def as_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "topic": self.topic, "labels_topic": self.labels_topic,
                "events": self.events, "labels": self.labels, "positives": self.positives,
                "seconds": round(self.seconds, 3), "event_clock": self.event_clock,
                "first_event_time": None if self.first_event_ms is None else _iso(self.first_event_ms)}


def run_generator(settings: Settings, events: Iterator[Event], stream: str, *, component: str,
                  label_field: str, rate: float | None = None, duration: float | None = None,
                  count: int | None = None, partitions: int = 3, flush_labels: bool = True,
                  live: bool = False, on_progress: Callable[[int], None] | None = None) -> GenerateReport:
    """Produce ``events`` (and their delayed labels) at up to ``rate`` per second.

    ``live=True`` (needs a ``rate``) sends each event once the wall clock reaches its
    ``event_time``; otherwise the events are paced by their number. See the module docstring.
    """
    _check(rate, count, duration, live)
    topic, labels_topic = settings.topic("raw", stream), settings.topic("labels", stream)
    ensure_topics(settings, [TopicSpec(topic, partitions), TopicSpec(labels_topic, partitions)])
    return pump(make_producer(settings), events, topic, labels_topic, component=component, label_field=label_field,
                rate=rate, duration=duration, count=count, flush_labels=flush_labels, live=live,
                on_progress=on_progress, stream=stream)


def _check(rate: float | None, count: int | None, duration: float | None, live: bool) -> None:
    if rate is not None and rate <= 0:
        raise ConfigError("--rate must be positive")
    if count is None and duration is None:
        raise ConfigError("give a count or a duration (or both)",
                          hint="e.g. count=10000 (streamml generate: --max-records 10000)")
    if live and not rate:
        raise ConfigError("a live generator needs a rate", hint="give --rate, or replay a synthetic history")


def pump(producer: Any, events: Iterator[Event], topic: str, labels_topic: str, *, component: str,
         label_field: str, rate: float | None = None, duration: float | None = None, count: int | None = None,
         flush_labels: bool = True, live: bool = False, on_progress: Callable[[int], None] | None = None,
         stream: str = "", clock: Callable[[], float] = time.time,
         sleep: Callable[[float], None] = time.sleep) -> GenerateReport:
    """:func:`run_generator`'s loop on a given ``producer``; ``clock`` (seconds since the epoch)
    and ``sleep`` are the seams a test replaces."""
    _check(rate, count, duration, live)
    const = H.lineage(component=component)
    held: list[tuple[int, str, bytes, list[tuple[str, bytes]]]] = []
    n_events = n_labels = positives = 0
    first_ms: int | None = None
    t0 = clock()
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
        if first_ms is None:
            first_ms = int(etime)
        now = clock()
        if live:                       # not before its time: event time stays on the wall clock
            ahead = etime / 1000.0 - now
            if ahead >= _MIN_SLEEP_S:
                if end is not None and now + ahead >= end:
                    break
                sleep(ahead)
        release(etime)
        now = clock()
        hdrs = [(H.EVENT_ID, eid.encode()), (H.EVENT_TIME, str(etime).encode()),
                (H.INGEST_TIME, str(int(now * 1000)).encode())] + const
        send(topic, orjson.dumps(rec), ev.key.encode(), hdrs)
        lh = [(H.EVENT_ID, eid.encode()), (H.EVENT_TIME, str(label["label_time"]).encode())] + const
        heapq.heappush(held, (label["label_time"], eid, orjson.dumps(label), lh))
        positives += int(bool(label.get(label_field)))
        n_events += 1
        if n_events % step == 0:
            producer.poll(0)
            if on_progress is not None:
                on_progress(n_events)
            if rate and not live:      # a synthetic history: paced by the number of events
                ahead = t0 + n_events / rate - now
                if ahead > 0:
                    sleep(ahead)
                    now = clock()
            if end is not None and now >= end:
                break
    if flush_labels:
        release(None)
    remaining = producer.flush(60)
    if remaining:
        raise KafkaError(f"{remaining} generated record(s) unacknowledged after 60s",
                         hint="check that the brokers are reachable")
    return GenerateReport(stream, topic, labels_topic, n_events, n_labels, positives, clock() - t0,
                          event_clock="wall" if live else "synthetic", first_event_ms=first_ms)


def _from_now(make: Callable[[int], Iterator[Event]]) -> Iterator[Event]:
    """``make(now_ms)``'s events, with now taken when the first one is asked for (after the
    topics exist and the producer is up), so a live run's event time starts on the wall clock."""
    yield from make(int(time.time() * 1000))


def generate_transactions(settings: Settings, *, stream: str = "transactions", count: int | None = None,
                          duration: float | None = None, rate: float | None = None, seed: int = 0,
                          start_ms: int | None = None, fraud_rate: float = 0.004,
                          new_pattern_at: int | None = None, label_delay_ms: int = 5_000,
                          n_cards: int = 2000, n_merchants: int = 300, partitions: int = 3,
                          on_progress: Callable[[int], None] | None = None, **kw: Any) -> GenerateReport:
    """Card payments with fraud into ``<ns>.raw.<stream>``, labels into ``<ns>.labels.<stream>``.

    Record and label fields: see :mod:`streamml.ingest.generators.transactions`. With a
    ``rate`` and no ``start_ms`` the run is live: event time starts now and each payment is
    sent when the wall clock reaches its event time (``rate`` base payments a second; fraud
    episodes add theirs, about 1% more at the default fraud rate). With ``start_ms``, or without a
    rate, it replays a synthetic history: event time starts at ``start_ms`` (default: now)
    and advances at ``rate`` (50 when none is given) payments a second of event time, whatever
    the speed it is written at. ``new_pattern_at`` injects the new fraud pattern from that event on.
    """
    live = start_ms is None and rate is not None

    def make(start: int) -> Iterator[Event]:
        return transactions(seed, start_ms=start, events_per_second=rate or 50.0, fraud_rate=fraud_rate,
                            new_pattern_at=new_pattern_at, label_delay_ms=label_delay_ms, n_cards=n_cards,
                            n_merchants=n_merchants, **kw)

    events = _from_now(make) if start_ms is None else make(start_ms)
    return run_generator(settings, events, stream, component="generate.transactions", label_field="is_fraud",
                         rate=rate, duration=duration, count=count, partitions=partitions, live=live,
                         on_progress=on_progress)


def generate_sensors(settings: Settings, *, stream: str = "sensors", count: int | None = None,
                     duration: float | None = None, rate: float | None = None, seed: int = 0,
                     start_ms: int | None = None, machines: int = 20, mean_life: int = 2000,
                     horizon_ms: int | None = None, partitions: int = 3,
                     on_progress: Callable[[int], None] | None = None, **kw: Any) -> GenerateReport:
    """Machine sensor readings into ``<ns>.raw.<stream>``, failure labels into ``<ns>.labels.<stream>``.

    Each machine reports once per ``machines / rate`` seconds of event time (once a second
    without a rate). Live with a ``rate`` and no ``start_ms`` (each reading sent when the wall
    clock reaches its event time), a synthetic history otherwise, as for
    :func:`generate_transactions`. Fields: see :mod:`streamml.ingest.generators.sensors`.
    """
    live = start_ms is None and rate is not None
    interval = max(1, int(1000 * machines / rate) if rate else 1000)

    def make(start: int) -> Iterator[Event]:
        return sensors(seed, start_ms=start, machines=machines, interval_ms=interval, mean_life=mean_life,
                       horizon_ms=horizon_ms, **kw)

    events = _from_now(make) if start_ms is None else make(start_ms)
    return run_generator(settings, events, stream, component="generate.sensors", label_field="failure",
                         rate=rate, duration=duration, count=count, partitions=partitions, live=live,
                         on_progress=on_progress)
