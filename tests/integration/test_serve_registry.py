"""The scorer on the real registry: models topic followed live, promotions swapped in, bad schemas refused."""

from __future__ import annotations

import threading
import time

import numpy as np
import orjson
from sklearn.linear_model import LogisticRegression

from streamml.config import Settings
from streamml.kafka.admin import ensure_topic
from streamml.registry import Registry
from streamml.serve import Role, Scorer, ServeOptions, Single
from streamml.serve.registry_source import RegistrySource
from streamml.serve.testing import FRAUD_FEATURES, fraud_events, fraud_frame, produce_events, read_topic


def _fit(seed: int, columns: tuple[str, ...] = FRAUD_FEATURES) -> LogisticRegression:
    df = fraud_frame(3000, seed=seed)
    x = np.column_stack([df[c].to_numpy() if c in df.columns else np.zeros(df.height) for c in columns])
    return LogisticRegression(max_iter=500).fit(x.astype(np.float32), df["is_fraud"].to_numpy())


def _wait(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_scorer_follows_promotions_on_the_models_topic(settings: Settings) -> None:
    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 2)
    reg = Registry(settings)
    v1 = reg.publish(_fit(1), name="fraud", features=list(FRAUD_FEATURES), stage="production")
    scorer = Scorer(settings, Single([Role("fraud")]), RegistrySource(registry=reg),
                    ServeOptions(topic, instance="reg"))
    scorer.start()
    runner = threading.Thread(target=scorer.run, daemon=True)
    runner.start()
    produce_events(settings, topic, fraud_events(1000, seed=1, prefix="a"))
    assert len(read_topic(settings, scorer.output_topic, expect=1000, timeout=30)) == 1000

    bad = reg.publish(_fit(2, FRAUD_FEATURES[:5] + ("ip_risk",)), name="fraud",
                      features=list(FRAUD_FEATURES[:5]) + ["ip_risk"], stage="production")
    _wait(lambda: scorer.stats.refused >= 1)
    v3 = reg.publish(_fit(3), name="fraud", features=list(FRAUD_FEATURES))
    reg.promote("fraud", v3.version, "production")
    _wait(lambda: any(e.kind == "loaded" and e.version == v3.version for e in scorer.host.watcher.events))
    produce_events(settings, topic, fraud_events(1000, seed=2, prefix="b"))
    got = read_topic(settings, scorer.output_topic, expect=2000, timeout=30)
    scorer.stop_event.set()
    runner.join(30)

    assert len(got) == 2000 and len({r.value["event_id"] for r in got}) == 2000
    assert {r.value["model_version"] for r in got if r.value["event_id"].startswith("a")} == {v1.version}
    assert {r.value["model_version"] for r in got if r.value["event_id"].startswith("b")} == {v3.version}
    refused = [e for e in scorer.host.watcher.events if e.kind == "refused"]
    assert [e.version for e in refused] == [bad.version] and "ip_risk" in refused[0].reason

    # the registry's own scorer agrees with the stream's scores
    model = reg.load(v3)
    rows = {orjson.loads(v)["event_id"]: orjson.loads(v) for _, v in fraud_events(1000, seed=2, prefix="b")}
    b = [r for r in got if r.value["event_id"].startswith("b")]
    x = np.array([[rows[r.value["event_id"]][c] for c in FRAUD_FEATURES] for r in b], dtype=np.float32)
    assert np.allclose(model.score(x), [r.value["score"] for r in b], atol=1e-6)


def test_restarted_scorer_serves_the_registry_production_version(settings: Settings) -> None:
    topic = settings.topic("features", "pay")
    ensure_topic(settings, topic, 1)
    reg = Registry(settings)
    for seed in (1, 2):
        reg.publish(_fit(seed), name="fraud", features=list(FRAUD_FEATURES), stage="production")
    reg.publish(_fit(3), name="fraud", features=list(FRAUD_FEATURES), stage="canary")
    produce_events(settings, topic, fraud_events(300, seed=4))
    stats = Scorer(settings, Single([Role("fraud")]), RegistrySource(settings), ServeOptions(topic)).run(
        max_records=300)
    assert stats.versions == {"fraud": 2}
    got = read_topic(settings, settings.topic("predictions", "fraud"), expect=300)
    assert len(got) == 300 and {r.value["model_version"] for r in got} == {2}


def test_rollback_is_followed_only_when_asked(settings: Settings) -> None:
    from streamml.serve import ModelHost

    reg = Registry(settings)
    for seed in (1, 2):
        reg.publish(_fit(seed), name="fraud", features=list(FRAUD_FEATURES), stage="production")
    forward = ModelHost(RegistrySource(registry=reg), [Role("fraud")]).start(wait_for=Role("fraud"), timeout=20)
    follows = ModelHost(RegistrySource(registry=reg), [Role("fraud")], follow_rollback=True).start(
        wait_for=Role("fraud"), timeout=20)
    assert forward.get("fraud").version == follows.get("fraud").version == 2
    reg.rollback("fraud")
    _wait(lambda: any(e.kind == "ignored" for e in forward.watcher.events)
          and any(e.kind == "loaded" and e.reason == "rollback" for e in follows.watcher.events))
    assert follows.swap() == [(Role("fraud"), 2, 1)] and forward.swap() == []
    assert follows.get("fraud").version == 1
    assert forward.get("fraud").version == 2
    assert [e.version for e in forward.watcher.events if e.kind == "ignored"] == [1]
    forward.stop(), follows.stop()
