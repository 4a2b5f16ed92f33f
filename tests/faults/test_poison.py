"""Poison records at 1% of the input: the exactly-once stream workers dead-letter exactly the
injected records, each with its reason and source, and every valid record exactly once.
(Throughput against the clean run is measured in benchmarks/bench_faults.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamml.chaos import AckedProducer, Procs, wait_until, write_app
from streamml.config import Settings
from streamml.kafka.admin import ensure_topic
from streamml.verify import read_topic, verify

pytestmark = pytest.mark.faults


def test_one_percent_poison_lands_exactly_in_the_dlq(settings3: Settings, tmp_path: Path) -> None:
    settings3.home.mkdir(parents=True, exist_ok=True)
    raw, out, dlq = settings3.topic("raw", "poison"), settings3.topic("features", "poison"), settings3.topic("dlq")
    ensure_topic(settings3, raw, 3)
    procs = Procs(settings3, tmp_path)
    procs.start("workers", ["run", str(write_app(tmp_path, "poison", "poison")), "--workers", "2"])
    producer = AckedProducer(settings3, raw, 10_000, rate=2000, poison_every=100)
    producer.start()
    producer.join(300)
    valid = set(producer.events)
    try:
        assert wait_until(lambda: len(read_topic(settings3, out, 30)) >= len(valid), 180), procs.log("workers")
        assert wait_until(lambda: len(read_topic(settings3, dlq, 30)) >= len(producer.poison), 60)
    finally:
        procs.stop_all()
    assert len(producer.poison) == 100 and len(producer.acked) == 10_000
    report = verify(settings3, [raw], [out], expected=lambda r: r.header("sm.event_id") in valid)
    assert report.ok, report.summary()
    dead = read_topic(settings3, dlq, 30)
    assert sorted(r.header("sm.event_id") for r in dead) == sorted(producer.poison)
    assert all(r.header("sm.reason") and r.header("sm.source") for r in dead)
    assert all(r.value and r.value.startswith(b'{"event_id": "') for r in dead)  # original bytes kept
    print(f"{len(valid)} valid records out once each; {len(dead)} poison records dead-lettered; "
          f"reasons: {sorted({r.header('sm.reason') for r in dead})}")
