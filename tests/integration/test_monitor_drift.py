"""Drift injected into a live features topic: exactly one retrain command, one retraining, one promotion."""

from __future__ import annotations

import threading
import time

import numpy as np
import orjson
from test_kafka_layer import drain

from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.monitor.alerts import control_sender
from streamml.monitor.loop import Monitor, MonitorConfig
from streamml.monitor.metrics import Metrics
from streamml.registry.registry import Registry
from streamml.train.job import Retrainer, TrainingJob
from streamml.train.trainers import SklearnClassifier


def produce_features(settings: Settings, topic: str, n: int, start: int, *, drifted: bool, seed: int) -> None:
    """Card payments. Before the drift, fraud is large amounts; after it, small amounts at high velocity."""
    rng = np.random.default_rng(seed)
    if drifted:
        amount, velocity = rng.normal(20, 6, n), rng.normal(7, 2, n)
        label = (velocity > 8).astype(int)
    else:
        amount, velocity = rng.normal(50, 15, n), rng.normal(2, 1, n)
        label = (amount > 70).astype(int)
    p = clients.producer(settings)
    t0 = int(time.time() * 1000)
    for i in range(n):
        eid = f"e{start + i}"
        rec = {"event_id": eid, "event_time": t0 + i, "amount": round(float(amount[i]), 3),
               "velocity": round(float(velocity[i]), 3), "label": int(label[i])}
        p.produce(topic, orjson.dumps(rec), eid.encode(), headers=[("sm.event_time", str(t0 + i).encode())])
    assert p.flush(30) == 0


def test_drift_triggers_exactly_one_retrain_and_one_promotion(settings: Settings) -> None:
    topic = settings.topic("features", "payments")
    ensure_topic(settings, topic, 3)
    produce_features(settings, topic, 3000, 0, drifted=False, seed=1)
    registry = Registry(settings)
    job = TrainingJob("fraud", topic, SklearnClassifier(), features=["amount", "velocity"], seed=0)
    first = job.run(settings, registry)
    assert first.promoted and first.version == 1

    metrics = Metrics()
    cfg = MonitorConfig(drift_window=1500, drift_min_samples=500, eval_interval=0.3, cooldown=300,
                        publish_interval=1.0, min_recall=None)
    mon = Monitor(settings, "fraud", features_topic=topic, config=cfg, metrics=metrics,
                  send=control_sender(settings))
    retrainer = Retrainer(settings, job, registry=registry, control=True)
    stop = threading.Event()
    results: list = []
    rt = threading.Thread(target=lambda: results.extend(retrainer.run(stop)), daemon=True)
    rt.start()
    mon.start()
    try:
        deadline = time.monotonic() + 30
        while mon.version != "1" or mon.counts["features"] < 3000:      # reference built, history read
            assert time.monotonic() < deadline, (mon.version, mon.counts)
            time.sleep(0.2)
        time.sleep(1.0)
        assert mon.alerter.retrains_sent == 0, mon.alerter.state()   # no drift on the training distribution
        assert mon.last_drift is not None and mon.last_drift.drifted == []

        produce_features(settings, topic, 2000, 3000, drifted=True, seed=2)
        deadline = time.monotonic() + 90
        while mon.version != "2":
            assert time.monotonic() < deadline, (mon.alerter.state(), results)
            time.sleep(0.3)
        # the drift goes on after the swap: still one episode's worth of retraining
        produce_features(settings, topic, 1500, 5000, drifted=True, seed=3)
        time.sleep(4.0)
    finally:
        mon.stop()
        stop.set()
        rt.join(timeout=60)
        retrainer.close()
        mon.close()

    commands = [orjson.loads(v) for _, v in drain(settings, settings.topic("control"), expect=1)]
    retrains = [c for c in commands if c.get("command") == "retrain" and c.get("model") == "fraud"]
    assert len(retrains) == 1, commands
    assert retrains[0]["alert"] == "drift" and "psi(" in retrains[0]["reason"]
    drifted_features = set(retrains[0]["details"]["features"])
    assert drifted_features & {"amount", "velocity"}
    for name in drifted_features:                         # an independent look at the reported PSI
        reported = retrains[0]["details"]["features"][name]
        assert reported["psi"] > 0.2 or reported["ks"] > 0.3

    assert len(results) == 1 and results[0].promoted and results[0].version == 2
    versions = registry.list("fraud")
    assert [d.version for d in versions] == [1, 2]
    assert registry.latest("fraud").version == 2
    assert versions[1].decision["promoted"] is True
    assert versions[1].decision["candidate"] > versions[1].decision["production"]
    suppressed = [h for h in mon.alerter.history if h.get("event") == "alert" and h.get("suppressed")]
    swaps = [h for h in mon.alerter.history if h.get("event") == "swap"]
    assert [s["version"] for s in swaps] == ["2"]
    assert mon.alerter.retrains_sent == 1, suppressed
    assert b"streamml_drift_psi{" in metrics.exposition()


def test_features_read_before_the_reference_arrives_still_count(settings: Settings) -> None:
    """A monitor that reads the features faster than the production model's reference arrives
    (or that starts before the first model) judges drift on what it already read."""
    topic = settings.topic("features", "payments")
    ensure_topic(settings, topic, 2)
    train_topic = settings.topic("features", "history")
    ensure_topic(settings, train_topic, 2)
    produce_features(settings, train_topic, 1500, 0, drifted=False, seed=1)
    produce_features(settings, topic, 1500, 0, drifted=True, seed=2)
    cfg = MonitorConfig(drift_window=1000, drift_min_samples=500, eval_interval=0.3, cooldown=300, min_recall=None)
    mon = Monitor(settings, "fraud", features_topic=topic, config=cfg, metrics=Metrics(),
                  send=control_sender(settings))
    mon.start()
    try:
        deadline = time.monotonic() + 30
        while mon.counts["features"] < 1500:                 # everything read, no model yet
            assert time.monotonic() < deadline, mon.counts
            time.sleep(0.2)
        assert mon.version is None and mon.drift is None
        job = TrainingJob("fraud", train_topic, SklearnClassifier(), features=["amount", "velocity"], seed=0)
        assert job.run(settings, Registry(settings)).promoted
        deadline = time.monotonic() + 30
        while mon.alerter.retrains_sent == 0:                # no new feature arrives after the model
            assert time.monotonic() < deadline, (mon.version, mon.last_drift, mon.alerter.state())
            time.sleep(0.2)
    finally:
        mon.stop()
        mon.close()
    assert mon.counts["features"] == 1500
    assert mon.last_drift is not None and set(mon.last_drift.drifted) & {"amount", "velocity"}
    assert mon.last_drift.features["amount"].n == 1000       # the window holds the newest rows only
