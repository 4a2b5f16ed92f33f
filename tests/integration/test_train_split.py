"""A time split inside a time-ranged dataset cuts at quantiles of that range, not of the topic."""

from __future__ import annotations

import time

import orjson

from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.train import Dataset


def test_time_split_within_a_time_range(settings: Settings) -> None:
    topic = settings.topic("features", "split")
    ensure_topic(settings, topic, 1)
    p = clients.producer(settings)
    now = int(time.time() * 1000) - 300_000
    for i in range(200):  # Kafka timestamp = event time: one record per second
        p.produce(topic, orjson.dumps({"event_id": f"e{i}", "event_time": now + i * 1000, "x": i}),
                  timestamp=now + i * 1000)
    p.flush(10)
    ds = Dataset.from_topics(settings, topic, start_time_ms=now + 100_000, end_time_ms=now + 200_000)
    train, test = ds.split(by="time", fractions=(0.8, 0.2))
    tr, te = train.to_polars()["x"].to_list(), test.to_polars()["x"].to_list()
    assert tr == list(range(100, 180)) and te == list(range(180, 200))
    # a split of a split cuts at the quantiles of its own window
    a, b = train.split(by="time", fractions=(0.5, 0.5))
    assert a.to_polars()["x"].to_list() == list(range(100, 140))
    assert b.to_polars()["x"].to_list() == list(range(140, 180))
