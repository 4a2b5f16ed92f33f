"""The scorer on a real broker: at-least-once mode, dead letters, and each strategy end to end."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import orjson

from streamml.config import Settings
from streamml.kafka.admin import ensure_topic
from streamml.serve import (
    Canary,
    Constant,
    LiveQuality,
    MemorySource,
    QualityBased,
    Role,
    Scorer,
    ServeOptions,
    Shadow,
    Single,
    Slow,
    Speculative,
)
from streamml.serve.base import Candidate
from streamml.serve.strategies import bucket
from streamml.serve.testing import (
    FRAUD_FEATURES,
    fraud_events,
    fraud_frame,
    onnx_candidate,
    onnx_model,
    produce_events,
    read_topic,
    train_fraud_onnx,
)


def _topic(settings: Settings, partitions: int = 2) -> str:
    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, partitions)
    return topic


def test_at_least_once_with_dead_letters(settings: Settings) -> None:
    topic = _topic(settings)
    data = train_fraud_onnx(seed=1)
    src = MemorySource()
    src.publish(onnx_candidate("fraud", 1, data))
    events = fraud_events(3000, seed=2)
    row = orjson.loads(events[0][1])
    poison = [(b"p1", b"{not json"), (b"p2", orjson.dumps({**row, "event_id": "p2", "amount": None})),
              (b"p3", orjson.dumps({**row, "event_id": "p3", "hour": "noon"})), (b"p4", b"[1, 2]")]
    produce_events(settings, topic, events[:1500] + poison + events[1500:])
    stats = Scorer(settings, Single([Role("fraud")]), src,
                   ServeOptions(topic, mode="at-least-once", batch_size=700)).run(max_records=3004)
    got = read_topic(settings, settings.topic("predictions", "fraud"), expect=3000)
    dlq = read_topic(settings, settings.topic("dlq"), expect=4)
    assert stats.scored == 3000 and stats.rejected == 4
    assert sorted(r.value["event_id"] for r in got) == sorted(orjson.loads(v)["event_id"] for _, v in events)
    reasons = {r.key: r.headers["sm.reason"] for r in dlq}
    assert set(reasons) == {b"p1", b"p2", b"p3", b"p4"}
    assert "amount is null" in reasons[b"p2"] and "not a number" in reasons[b"p3"]
    assert "not a JSON object" in reasons[b"p1"] and all(r.headers["sm.source"].startswith(topic) for r in dlq)
    # independent recomputation of the scores and the carried lineage
    feats = {orjson.loads(v)["event_id"]: orjson.loads(v) for _, v in events}
    x = np.array([[feats[r.value["event_id"]][c] for c in FRAUD_FEATURES] for r in got], dtype=np.float32)
    expected = onnx_model("fraud", 1, data).predict(x)
    assert np.allclose([r.value["score"] for r in got], expected.score, atol=1e-6)
    assert [r.value["label"] for r in got] == expected.label.tolist()
    assert all(r.headers["sm.event_time"] == str(feats[r.value["event_id"]]["event_time"]) for r in got)
    assert all(r.key == feats[r.value["event_id"]]["card_id"].encode() for r in got)


def test_speculative_stream_answers_with_the_fallback_when_a_model_is_slow(settings: Settings) -> None:
    topic = _topic(settings)
    fast = onnx_candidate("fast", 1, train_fraud_onnx(seed=1))
    slow_data = train_fraud_onnx(seed=2)
    slow = Candidate(onnx_candidate("slow", 1, slow_data).ref,
                     lambda: Slow(onnx_model("slow", 1, slow_data), 2.0))
    src = MemorySource()
    src.publish(slow)
    src.publish(fast)
    # the slow model is preferred, and the only one first: every batch is answered by the fallback in time
    strat = Speculative([Role("slow")], deadline_s=0.1, fallback=Constant("rule", score=0.25, label=0), grace_s=0.25)
    produce_events(settings, topic, fraud_events(2000, seed=3, prefix="a"))
    out1 = settings.topic("predictions", "spec1")
    Scorer(settings, strat, src, ServeOptions(topic, batch_size=500, group="g1", output_topic=out1)).run(
        max_records=2000)
    got = read_topic(settings, settings.topic("predictions", "spec1"), expect=2000)
    assert len(got) == 2000 and {r.value["model"] for r in got} == {"rule"}
    assert all(r.value["fallback"] and r.value["deadline_met"] and r.value["score"] == 0.25 for r in got)
    assert all(r.headers["sm.model"] == "rule" for r in got)
    # with a fast second choice, the fast model answers within the deadline
    strat2 = Speculative([Role("slow"), Role("fast")], deadline_s=0.5, grace_s=0.25)
    out2 = settings.topic("predictions", "spec2")
    Scorer(settings, strat2, src, ServeOptions(topic, batch_size=500, group="g2", output_topic=out2)).run(
        max_records=2000)
    got2 = read_topic(settings, settings.topic("predictions", "spec2"), expect=2000)
    assert len(got2) == 2000 and {r.value["model"] for r in got2} == {"fast"}
    assert all(r.value["deadline_met"] and not r.value["fallback"] for r in got2)
    assert max(r.value["answer_ms"] for r in got2) < 2000  # never waited for the 2 s model


def test_shadow_and_canary_streams(settings: Settings) -> None:
    topic = _topic(settings)
    prod, cand = train_fraud_onnx(seed=1), train_fraud_onnx(seed=2, kind="forest")
    src = MemorySource()
    src.publish(onnx_candidate("fraud", 1, prod))
    src.publish(onnx_candidate("fraud", 2, cand, stage="shadow"))
    src.publish(onnx_candidate("fraud", 3, cand, stage="canary"))
    events = fraud_events(3000, seed=4)
    produce_events(settings, topic, events)
    Scorer(settings, Shadow(Role("fraud"), Role("fraud", "shadow")), src,
           ServeOptions(topic, group="shadow")).run(max_records=3000)
    out = read_topic(settings, settings.topic("predictions", "fraud"), expect=3000)
    shadow = read_topic(settings, settings.topic("predictions", "fraud-shadow"), expect=3000)
    assert {r.value["model_version"] for r in out} == {1} and len(out) == 3000
    assert len(shadow) == 3000 and {r.value["candidate_version"] for r in shadow} == {2}
    feats = {orjson.loads(v)["event_id"]: orjson.loads(v) for _, v in events}
    sh = sorted(shadow, key=lambda r: r.value["event_id"])
    x = np.array([[feats[r.value["event_id"]][c] for c in FRAUD_FEATURES] for r in sh], dtype=np.float32)
    assert np.allclose([r.value["candidate_score"] for r in sh], onnx_model("f", 2, cand).predict(x).score, atol=1e-6)
    assert np.allclose([r.value["score"] for r in sh], onnx_model("f", 1, prod).predict(x).score, atol=1e-6)

    canary_topic = settings.topic("predictions", "canary")
    Scorer(settings, Canary(Role("fraud"), Role("fraud", "canary"), share=0.2), src,
           ServeOptions(topic, group="canary", output_topic=canary_topic)).run(max_records=3000)
    can = read_topic(settings, canary_topic, expect=3000)
    assert len(can) == 3000
    for r in can:
        assert r.value["model_version"] == (3 if bucket(r.key) < 2000 else 1)
        assert r.headers["sm.model_version"] == str(r.value["model_version"])


def test_quality_based_follows_delayed_labels(settings: Settings) -> None:
    topic = _topic(settings, 1)
    labels_topic = settings.topic("labels", "pay")
    ensure_topic(settings, labels_topic, 1)
    src = MemorySource()
    src.publish(onnx_candidate("inverted", 1, train_fraud_onnx(seed=1, flip=True)))
    src.publish(onnx_candidate("good", 1, train_fraud_onnx(seed=2)))
    quality = LiveQuality(window=500).follow(settings, labels_topic)
    strat = QualityBased([Role("inverted"), Role("good")], quality, min_labels=100)
    scorer = Scorer(settings, strat, src, ServeOptions(topic, batch_size=500))
    runner = threading.Thread(target=scorer.run, daemon=True)
    scorer.start()
    runner.start()
    first = fraud_frame(1000, seed=5, prefix="a")
    produce_events(settings, topic, fraud_events(1000, seed=5, prefix="a"))
    read_topic(settings, scorer.output_topic, expect=1000)
    produce_events(settings, labels_topic, [(e.encode(), orjson.dumps({"event_id": e, "label": y}))
                                            for e, y in zip(first["event_id"], first["is_fraud"])])
    deadline = time.monotonic() + 20
    while quality.quality("good")[1] < 500 and time.monotonic() < deadline:
        time.sleep(0.1)
    produce_events(settings, topic, fraud_events(1000, seed=6, prefix="b"))
    got = read_topic(settings, scorer.output_topic, expect=2000)
    scorer.stop_event.set()
    runner.join(20)
    quality.stop()
    by: dict[str, Any] = {}
    for r in got:
        by.setdefault(r.value["event_id"][0], set()).add(r.value["model"])
    assert by == {"a": {"inverted"}, "b": {"good"}}
    assert quality.quality("good")[0] > 0.9 and quality.quality("inverted")[0] < 0.2
