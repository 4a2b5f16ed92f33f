"""The generator runner's clocks without a broker: a live run keeps event time on the wall clock.

The runner's loop (:func:`streamml.ingest.generators.run.pump`) is driven with a fake
producer and a fake clock whose ``sleep`` advances it, so the figures are exact and no test
depends on the speed of the machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamml import headers as H
from streamml.errors import ConfigError
from streamml.ingest.generators import sensors, transactions
from streamml.ingest.generators.run import pump

START_S = 1_750_000_000.0


class FakeClock:
    """Epoch seconds that move only when slept, plus a fixed cost per produced record."""

    def __init__(self, cost_s: float = 0.0) -> None:
        self.t = START_S
        self.cost_s = cost_s
        self.slept = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        assert dt > 0
        self.t += dt
        self.slept += dt


class FakeProducer:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.sent: list[tuple[str, bytes, list[tuple[str, bytes]], float]] = []

    def produce(self, topic: str, value: bytes, key: bytes, headers: Any = None) -> None:
        self.clock.t += self.clock.cost_s
        self.sent.append((topic, value, headers or [], self.clock.t))

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def _lags(p: FakeProducer, topic: str = "raw") -> np.ndarray:
    """Produce time minus event time (ms) of each event, in the order they were sent."""
    out = []
    for t, _, headers, at in p.sent:
        if t == topic:
            h = H.as_dict(headers)
            # the ingest time is when it was sent (before the send's own cost)
            assert abs(int(h[H.INGEST_TIME]) - at * 1000) <= 1 + p.clock.cost_s * 1000
            out.append(at * 1000 - int(h[H.EVENT_TIME]))
    return np.array(out)


def _run(live: bool, *, rate: float = 200.0, count: int = 6000, fraud_rate: float = 0.05,
         cost_s: float = 0.0) -> tuple[Any, FakeProducer, FakeClock]:
    clock = FakeClock(cost_s)
    p = FakeProducer(clock)
    events = transactions(3, start_ms=int(START_S * 1000), events_per_second=rate, fraud_rate=fraud_rate)
    rep = pump(p, events, "raw", "labels", component="t", label_field="is_fraud", rate=rate, count=count,
               live=live, clock=clock, sleep=clock.sleep)
    return rep, p, clock


def test_a_live_run_sends_each_event_at_its_event_time_whatever_the_episodes_add() -> None:
    rep, p, clock = _run(live=True)
    lags = _lags(p)
    assert rep.events == len(lags) == 6000 and rep.event_clock == "wall"
    assert rep.clock_note == "event time: wall clock"
    # never before its time, never more than the sleep threshold late, first tenth as last tenth
    assert lags.min() >= -1.0 and lags.max() <= 1.0
    tenth = len(lags) // 10
    assert abs(lags[-tenth:].mean() - lags[:tenth].mean()) <= 1.0
    # the episodes added events beyond the base rate: paced by count, these would have been late
    assert rep.events / (clock.t - START_S) > 200 * 1.05


def test_a_slow_producer_falls_behind_but_catches_up_and_does_not_drift() -> None:
    # each send (event or label) costs 2 ms: 4 ms an event, so 250 events/s at most against about 202
    # asked; a burst may put it behind, but it catches up and the lag does not grow over the run
    rep, p, _ = _run(live=True, cost_s=0.002, fraud_rate=0.01)
    lags = _lags(p)
    tenth = len(lags) // 10
    assert lags.min() >= -1.0
    assert np.median(lags[-tenth:]) <= np.median(lags[:tenth]) + 50


def test_a_synthetic_history_is_paced_by_count_and_its_event_clock_drifts() -> None:
    # today's behaviour, kept for histories: rate events per wall second, event time on its own clock
    rep, p, clock = _run(live=False)
    assert rep.event_clock == "synthetic"
    assert rep.clock_note == "event time: synthetic history from 2025-06-15T15:06:40Z"
    assert clock.t - START_S == pytest.approx(6000 / 200, rel=0.01)
    lags = _lags(p)
    tenth = len(lags) // 10
    # the episodes' extra events put event time behind the wall clock, more and more
    assert lags[-tenth:].mean() - lags[:tenth].mean() > 1000


def test_live_sensors_follow_the_wall_clock_despite_their_jitter() -> None:
    clock = FakeClock()
    p = FakeProducer(clock)
    events = sensors(1, start_ms=int(START_S * 1000), machines=7, interval_ms=int(1000 * 7 / 300))
    rep = pump(p, events, "raw", "labels", component="s", label_field="failure", rate=300, count=3000, live=True,
               clock=clock, sleep=clock.sleep)
    lags = _lags(p)
    assert rep.events == 3000 and lags.min() >= -1.0
    assert lags.max() <= 23 / 10 + 1          # readings jitter within a tenth of the interval, no more
    tenth = len(lags) // 10
    assert abs(lags[-tenth:].mean() - lags[:tenth].mean()) <= 2.0


def test_a_live_run_stops_at_its_duration_and_needs_a_rate() -> None:
    clock = FakeClock()
    p = FakeProducer(clock)
    events = transactions(1, start_ms=int(START_S * 1000), events_per_second=100)
    rep = pump(p, events, "raw", "labels", component="t", label_field="is_fraud", rate=100, duration=5.0,
               live=True, clock=clock, sleep=clock.sleep)
    assert clock.t - START_S <= 5.0 and 400 <= rep.events <= 560
    assert rep.labels == rep.events                      # the held-back labels are flushed at the end
    with pytest.raises(ConfigError, match="needs a rate"):
        pump(p, iter(()), "raw", "labels", component="t", label_field="x", count=1, live=True)
