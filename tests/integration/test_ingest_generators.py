"""Generators into the real broker: events and delayed labels, keyed and traceable, as the pure generator says."""

from __future__ import annotations

import json
import time
from typing import Any

from streamml import headers as H
from streamml.config import Settings
from streamml.ingest import generate_sensors, generate_transactions, transactions
from streamml.kafka import clients


def drain(settings: Settings, topic: str, expect: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    c = clients.consumer(settings, f"verify-{time.time_ns()}")
    c.subscribe([topic])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < expect and time.monotonic() < deadline:
        out += [{"key": m.key(), "value": m.value(), "headers": H.as_dict(m.headers()), "partition": m.partition(),
                 "offset": m.offset()} for m in c.consume(5000, timeout=0.3) if not m.error()]
    c.close()
    return out


def test_transactions_and_delayed_labels_in_kafka(settings: Settings) -> None:
    n, start = 4000, 1_750_000_000_000
    report = generate_transactions(settings, count=n, seed=4, start_ms=start, fraud_rate=0.01, new_pattern_at=2000)
    assert (report.events, report.labels) == (n, n)
    expected = list(transactions(4, count=n, start_ms=start, fraud_rate=0.01, new_pattern_at=2000,
                                 events_per_second=50.0))
    assert report.positives == sum(e.label["is_fraud"] for e in expected) > 0

    events = drain(settings, report.topic, n)
    labels = drain(settings, report.labels_topic, n)
    assert len(events) == len(labels) == n
    by_id = {json.loads(m["value"])["event_id"]: m for m in events}
    assert [by_id[e.record["event_id"]]["value"] for e in expected] == [json.dumps(e.record, separators=(",", ":"))
                                                                        .encode() for e in expected]
    for e in expected:
        m = by_id[e.record["event_id"]]
        assert m["key"] == e.record["card_id"].encode()
        assert m["headers"][H.EVENT_ID] == e.record["event_id"]
        assert m["headers"][H.EVENT_TIME] == str(e.record["event_time"])
        assert m["headers"][H.COMPONENT] == "generate.transactions"
    got_labels = {m["key"].decode(): json.loads(m["value"]) for m in labels}
    assert got_labels == {e.record["event_id"]: e.label for e in expected}
    # a label is written only once the stream's event time passed its label time
    event_pos = {e.record["event_id"]: i for i, e in enumerate(expected)}
    times = [e.record["event_time"] for e in expected]
    label_order = sorted(labels, key=lambda m: (m["partition"], m["offset"]))
    for m in label_order[:200]:
        lab = json.loads(m["value"])
        assert lab["label_time"] > times[event_pos[lab["event_id"]]]


def test_sensors_rate_and_duration(settings: Settings) -> None:
    t0 = time.monotonic()
    report = generate_sensors(settings, duration=1.5, rate=400, machines=4, seed=1)
    elapsed = time.monotonic() - t0
    assert 300 <= report.events <= 400 * 1.5 + 50 and elapsed >= 1.4
    events = drain(settings, report.topic, report.events)
    assert len(events) == report.events
    assert {m["key"] for m in events} == {f"machine-{i:03d}".encode() for i in range(4)}
    labels = drain(settings, report.labels_topic, report.labels)
    assert report.labels == report.events == len(labels)
    assert {m["key"] for m in labels} == {json.loads(m["value"])["event_id"].encode() for m in events}
    per_machine = [sum(1 for m in events if m["key"] == f"machine-{i:03d}".encode()) for i in range(4)]
    assert max(per_machine) - min(per_machine) <= 1                 # machines report in turn


def test_a_live_generator_keeps_event_time_on_the_wall_clock(settings: Settings) -> None:
    # many fraud episodes (their extra events, due seconds later, are what put event time behind):
    # paced by the number of events, event time fell ~0.5 s behind the wall clock over these 6 s
    report = generate_transactions(settings, duration=6.0, rate=300, seed=9, fraud_rate=0.2)
    c = clients.consumer(settings, f"verify-{time.time_ns()}")
    c.subscribe([report.topic])
    rows: list[tuple[int, int]] = []          # (broker timestamp, event_time) in event-time order
    deadline = time.monotonic() + 30
    while len(rows) < report.events and time.monotonic() < deadline:
        rows += [(m.timestamp()[1], int(H.as_dict(m.headers())[H.EVENT_TIME]))
                 for m in c.consume(5000, timeout=0.3) if not m.error()]
    c.close()
    assert len(rows) == report.events > 1500
    rows.sort(key=lambda r: r[1])
    lag = [ts - et for ts, et in rows]
    tenth = len(lag) // 10
    first, last = sorted(lag[:tenth])[tenth // 2], sorted(lag[-tenth:])[tenth // 2]
    assert min(lag) >= -5, min(lag)               # no event is written before its event time
    assert last < 250 and last - first < 100, (first, last)
    assert report.event_clock == "wall" and report.clock_note == "event time: wall clock"


def test_the_cli_says_which_clock_event_time_followed(settings: Settings) -> None:
    import calendar
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    env.update(STREAMML_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "", STREAMML_NAMESPACE=settings.namespace,
               STREAMML_HOME=str(settings.home), COLUMNS="200")

    def sm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "streamml", *args], capture_output=True, text=True, env=env,
                              timeout=120)

    live = sm("generate", "sensors", "-s", "clock-live", "-n", "60", "--rate", "300")
    assert live.returncode == 0, live.stderr
    assert "event time: wall clock" in live.stdout, live.stdout
    before = int(time.time() * 1000)
    hist = sm("generate", "transactions", "-s", "clock-history", "-n", "60", "--format", "json")
    assert hist.returncode == 0, hist.stderr
    rep = json.loads(hist.stdout.strip().splitlines()[-1])
    assert rep["events"] == 60 and rep["event_clock"] == "synthetic"
    first = calendar.timegm(time.strptime(rep["first_event_time"], "%Y-%m-%dT%H:%M:%SZ"))
    assert before / 1000 - 60 <= first <= time.time() + 1    # a synthetic history from now
