"""Hot swap on a real broker: ten swaps under load, bad models refused, restarts start at the newest."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import numpy as np
import orjson
import pytest

from streamml.config import Settings
from streamml.kafka.admin import ensure_topic
from streamml.serve import MemorySource, Role, Scorer, ServeOptions, Single
from streamml.serve.testing import (
    FRAUD_FEATURES,
    fraud_events,
    onnx_candidate,
    onnx_model,
    produce_events,
    read_topic,
    train_fraud_onnx,
)


def _scorer_thread(scorer: Scorer, **kw: object) -> threading.Thread:
    t = threading.Thread(target=scorer.run, kwargs=kw, daemon=True)
    t.start()
    return t


def test_ten_swaps_under_load_lose_and_duplicate_nothing(settings: Settings) -> None:
    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 3)
    models = {v: train_fraud_onnx(seed=v) for v in range(1, 12)}
    source = MemorySource()
    source.publish(onnx_candidate("fraud", 1, models[1]))
    scorer = Scorer(settings, Single([Role("fraud")]), source,
                    ServeOptions(topic, mode="exactly-once", instance="swap", batch_size=2000))
    scorer.start()
    runner = _scorer_thread(scorer)

    total, chunks = 30_000, 30
    events = fraud_events(total, seed=3)

    def load() -> None:
        per = total // chunks
        for i in range(chunks):
            produce_events(settings, topic, events[i * per:(i + 1) * per])
            time.sleep(0.15)

    producer = threading.Thread(target=load, daemon=True)
    producer.start()
    def swapped_to(v: int) -> bool:
        return any(e.kind == "swapped" and e.version == v for e in list(scorer.host.watcher.events))

    for v in range(2, 12):  # ten new versions while the load runs, each once the last one is in
        time.sleep(0.4)
        deadline = time.monotonic() + 30
        while v > 2 and not swapped_to(v - 1):  # else a newer version may supersede it before a batch
            assert time.monotonic() < deadline, f"v{v - 1} was not swapped in within 30 s"
            time.sleep(0.02)
        source.publish(onnx_candidate("fraud", v, models[v]))
    producer.join(120)

    got = read_topic(settings, scorer.output_topic, expect=total, timeout=90, quiet_s=2.0)
    scorer.stop_event.set()
    runner.join(30)

    ids = [r.value["event_id"] for r in got]
    assert len(set(ids)) == total, f"lost {total - len(set(ids))}"
    assert len(ids) == total, f"duplicates {len(ids) - len(set(ids))}"
    assert set(ids) == {orjson.loads(v)["event_id"] for _, v in events}

    by_partition: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for r in got:
        by_partition[r.partition].append((r.offset, r.value["model_version"]))
        assert r.headers["sm.model_version"] == str(r.value["model_version"])
        assert r.headers["sm.event_id"] == r.value["event_id"]
    for part, rows in by_partition.items():
        versions = [v for _, v in sorted(rows)]
        assert versions == sorted(versions), f"partition {part} went back in version"
    assert scorer.stats.swaps == 10
    assert {e.version for e in scorer.host.watcher.events if e.kind == "swapped"} == set(range(2, 12))
    assert max(r.value["model_version"] for r in got) == 11

    # every prediction is what its version scores for that event (independent recomputation)
    feats = {orjson.loads(v)["event_id"]: orjson.loads(v) for _, v in events}
    check = defaultdict(list)
    for r in got:
        check[r.value["model_version"]].append(r)
    for version, rows in check.items():
        m = onnx_model("fraud", version, models[version])
        x = np.array([[feats[r.value["event_id"]][c] for c in FRAUD_FEATURES] for r in rows], dtype=np.float32)
        assert np.allclose(m.predict(x).score, [r.value["score"] for r in rows], atol=1e-6)


def test_bad_models_are_refused_while_the_old_one_keeps_serving(settings: Settings) -> None:
    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 2)
    good = train_fraud_onnx(seed=1)
    source = MemorySource()
    source.publish(onnx_candidate("fraud", 1, good))
    scorer = Scorer(settings, Single([Role("fraud")]), source, ServeOptions(topic, instance="bad"))
    scorer.start()
    runner = _scorer_thread(scorer)
    produce_events(settings, topic, fraud_events(1000, seed=1, prefix="a"))
    assert len(read_topic(settings, scorer.output_topic, expect=1000, timeout=30)) == 1000

    other = train_fraud_onnx(seed=2)
    bad = {2: onnx_candidate("fraud", 2, other, sha="0" * 64),                                      # hash
           3: onnx_candidate("fraud", 3, other, columns=FRAUD_FEATURES[:5] + ("ip_risk",)),         # schema
           4: onnx_candidate("fraud", 4, good[: len(good) // 2])}                                   # corrupt
    for cand in bad.values():
        source.publish(cand)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and scorer.stats.refused < 3:
        time.sleep(0.05)
    produce_events(settings, topic, fraud_events(1000, seed=2, prefix="b"))
    got = read_topic(settings, scorer.output_topic, expect=2000, timeout=30)
    reports = read_topic(settings, scorer.metrics_topic, timeout=10)
    scorer.stop_event.set()
    runner.join(30)

    assert scorer.stats.refused == 3 and scorer.stats.swaps == 0
    assert len(got) == 2000 and len({r.value["event_id"] for r in got}) == 2000
    assert {r.value["model_version"] for r in got} == {1}
    refused = {r.value["version"]: r.value["reason"] for r in reports if r.value.get("event") == "model_refused"}
    assert sorted(refused) == [2, 3, 4]
    assert "does not match" in refused[2] and "ip_risk" in refused[3] and "cannot load" in refused[4]


def test_restarted_scorer_starts_with_the_newest_production_version(settings: Settings) -> None:
    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 1)
    source = MemorySource()
    for v in (1, 2, 3):
        source.publish(onnx_candidate("fraud", v, train_fraud_onnx(seed=v)))
    source.publish(onnx_candidate("fraud", 4, train_fraud_onnx(seed=4), stage="canary"))
    produce_events(settings, topic, fraud_events(500, seed=5))
    stats = Scorer(settings, Single([Role("fraud")]), source, ServeOptions(topic, instance="r")).run(
        max_records=500)
    got = read_topic(settings, settings.topic("predictions", "fraud"), expect=500)
    assert stats.versions == {"fraud": 3}
    assert {r.value["model_version"] for r in got} == {3} and len(got) == 500


def test_first_model_is_checked_against_the_features_already_on_the_topic(settings: Settings) -> None:
    from streamml.errors import ModelError

    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 2)
    produce_events(settings, topic, fraud_events(50, seed=1))
    src = MemorySource()
    src.publish(onnx_candidate("fraud", 1, train_fraud_onnx(seed=1), columns=FRAUD_FEATURES[:5] + ("ip_risk",)))
    scorer = Scorer(settings, Single([Role("fraud")]), src, ServeOptions(topic, wait_for_model_s=1.0))
    with pytest.raises(ModelError, match="ip_risk"):
        scorer.start()
    scorer.close()
