"""Generators: deterministic, ordered, labelled, with the fraud patterns and the drift switch."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from streamml.errors import ConfigError
from streamml.ingest.generators import NEW_PATTERN, PATTERNS, sensors, transactions

FIELDS = {"event_id", "event_time", "card_id", "merchant_id", "merchant_category", "amount", "currency", "country",
          "card_country", "lat", "lon", "channel", "hour"}


def test_transactions_are_deterministic_and_seed_dependent() -> None:
    a = [e.record for e in transactions(seed=11, count=3000)]
    b = [e.record for e in transactions(seed=11, count=3000)]
    c = [e.record for e in transactions(seed=12, count=3000)]
    assert a == b and a != c


def test_transaction_records_and_labels_are_well_formed() -> None:
    evs = list(transactions(seed=3, count=20_000, fraud_rate=0.01))
    ids = [e.record["event_id"] for e in evs]
    times = [e.record["event_time"] for e in evs]
    assert len(set(ids)) == len(ids) == 20_000
    assert times == sorted(times)
    for e in evs:
        r, lab = e.record, e.label
        assert set(r) == FIELDS and e.key == r["card_id"]
        assert r["amount"] > 0 and r["channel"] in ("pos", "online") and 0 <= r["hour"] < 24
        assert r["hour"] == (r["event_time"] // 3_600_000) % 24
        assert lab["event_id"] == r["event_id"] and lab["event_time"] == r["event_time"]
        assert r["event_time"] + 5_000 <= lab["label_time"] <= r["event_time"] + 7_500
        assert lab["is_fraud"] == int(lab["pattern"] is not None)
    patterns = Counter(e.label["pattern"] for e in evs)
    assert set(patterns) == {None, *PATTERNS}
    assert 0.005 < sum(e.label["is_fraud"] for e in evs) / len(evs) < 0.2


def test_fraud_patterns_have_their_signatures() -> None:
    evs = list(transactions(seed=5, count=40_000, fraud_rate=0.01))
    by = {p: [e.record for e in evs if e.label["pattern"] == p] for p in PATTERNS}
    normal = [e.record for e in evs if not e.label["is_fraud"]]
    assert all(r["amount"] <= 3.0 / 0.9 and r["channel"] == "online" for r in by["card_testing"])
    assert all(r["country"] != r["card_country"] and r["merchant_category"] in ("jewelry", "electronics")
               for r in by["high_amount"])
    assert all(r["country"] != r["card_country"] for r in by["geo_jump"])
    med = sorted(r["amount"] for r in normal)[len(normal) // 2]
    hi = sorted(r["amount"] for r in by["high_amount"])
    assert hi[len(hi) // 2] > 5 * med
    assert sum(r["country"] != r["card_country"] for r in normal) / len(normal) < 0.25


def test_new_pattern_appears_only_after_the_switch() -> None:
    evs = list(transactions(seed=9, count=30_000, fraud_rate=0.01, new_pattern_at=15_000))
    before = Counter(e.label["pattern"] for e in evs[:15_000])
    after = Counter(e.label["pattern"] for e in evs[15_100:])
    assert NEW_PATTERN not in before and after[NEW_PATTERN] > 20
    cash = [e.record for e in evs if e.label["pattern"] == NEW_PATTERN]
    assert all(r["merchant_category"] == "gift_cards" and r["channel"] == "pos" and r["country"] == r["card_country"]
               and r["amount"] * (1 if r["currency"] == "EUR" else 0) in (0, 100, 150, 200, 250) for r in cash)
    # the old stream stays the same up to the switch
    base = [e.record for e in transactions(seed=9, count=15_000, fraud_rate=0.01)]
    assert [e.record for e in evs[:14_000]] == base[:14_000]


def test_bad_generator_arguments() -> None:
    with pytest.raises(ConfigError, match="unknown fraud pattern"):
        next(transactions(patterns=["teleport"]))
    with pytest.raises(ConfigError):
        next(sensors(machines=0))


def test_sensors_degrade_before_failures() -> None:
    evs = list(sensors(seed=2, count=40_000, machines=8, mean_life=500))
    assert [e.record for e in evs[:100]] == [e.record for e in sensors(seed=2, count=100, machines=8, mean_life=500)]
    assert len({e.record["event_id"] for e in evs}) == len(evs)
    assert {e.key for e in evs} == {f"machine-{i:03d}" for i in range(8)}
    pre = [e.record for e in evs if e.label["failure"]]
    healthy = [e.record for e in evs if e.label["time_to_failure_ms"] > 3 * 100_000]
    mean = lambda rows, f: sum(r[f] for r in rows) / len(rows)  # noqa: E731
    assert mean(pre, "vibration") > 1.5 * mean(healthy, "vibration")
    assert mean(pre, "temperature") > mean(healthy, "temperature") + 3
    assert mean(pre, "pressure") < mean(healthy, "pressure")
    failures = {(e.label["machine_id"], e.label["failed_at"]) for e in evs}
    assert len(failures) > 8 * 2                     # machines fail and are repaired, repeatedly
    for e in evs:
        lab = e.label
        assert lab["failure"] == int(0 <= lab["time_to_failure_ms"] <= lab["label_time"] - lab["event_time"])
        assert not math.isnan(e.record["rpm"])
