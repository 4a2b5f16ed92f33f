"""The Flink bridge on a local mini-cluster (parallelism 2) against the session's Kafka broker.

Runs only in the Flink venv (``make test-flink``: ``.venv-flink/bin/python -m pytest``), where
PyFlink is installed; the main venv skips it with the reason. Flink's Kafka connector comes from
the streamml cache (fetched from Maven Central the first time).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import orjson
import polars as pl
import pytest

pytest.importorskip("pyflink", reason="the Flink bridge tests run in the Flink venv: make test-flink "
                                      "(.venv-flink, PyFlink pins older numpy/pandas/pyarrow than the main venv)")

from streamml import headers as H  # noqa: E402
from streamml.config import Settings  # noqa: E402
from streamml.flink import register, score_stream, table_env  # noqa: E402
from streamml.kafka import clients  # noqa: E402
from streamml.kafka.admin import ensure_topic  # noqa: E402
from streamml.registry import Registry  # noqa: E402
from streamml.verify import read_topic, verify  # noqa: E402

FEATS = ["amount", "velocity", "distance", "hour"]
T0 = (int(time.time()) // 3600 - 48) * 3_600_000


def fraud_events(n: int, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    rng = np.random.default_rng(seed)
    events, labels = [], []
    for i in range(n):
        amount, velocity, distance = rng.gamma(2, 40), rng.poisson(2), rng.exponential(10)
        logit = -6 + 0.02 * amount + 0.6 * velocity + 0.08 * distance
        labels.append(int(rng.random() < 1 / (1 + np.exp(-logit))))
        events.append({"event_id": f"e{i}", "event_time": T0 + i * 1000, "amount": round(float(amount), 2),
                       "velocity": int(velocity), "distance": round(float(distance), 3), "hour": int(i // 60 % 24)})
    return events, np.array(labels)


def produce(settings: Settings, topic: str, events: list[dict]) -> None:
    p = clients.producer(settings)
    for e in events:
        p.produce(topic, orjson.dumps(e), e["event_id"].encode(), timestamp=e["event_time"])
    assert p.flush(30) == 0


def _wait(cond: Callable[[], bool], timeout: float, job: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        status = job.status()
        if status not in ("RUNNING", "CREATED", "INITIALIZING", "RECONCILING"):
            raise AssertionError(f"the Flink job is {status}")
        time.sleep(1.0)
    raise AssertionError(f"timed out (job {job.status()})")


def test_streamml_score_in_flink_sql_scores_with_the_production_model(settings: Settings) -> None:
    from sklearn.linear_model import LogisticRegression

    events, y = fraud_events(200)
    x = pl.DataFrame(events).select(FEATS).to_numpy().astype(np.float32)
    m = LogisticRegression(max_iter=200).fit(x, y)
    Registry(settings).publish(m, name="fraud", features=FEATS, stage="production")
    tenv = table_env(settings, parallelism=1, conf={"restart-strategy.type": "none"})  # a UDF error fails the query
    register(tenv, settings, models=["fraud"])
    rows = ", ".join(f"({e['amount']}, {e['velocity']}.0, {e['distance']}, {e['hour']}.0)" for e in events[:20])
    res = tenv.execute_sql(f"SELECT r.score, r.model, r.model_version FROM (SELECT streamml_score('fraud', a, v, d, h)"
                           f" AS r FROM (VALUES {rows}) AS t(a, v, d, h))")
    with res.collect() as it:
        got = [tuple(r) for r in it]
    want = m.predict_proba(x[:20])[:, 1]
    assert [(g[1], g[2]) for g in got] == [("fraud", 1)] * 20
    assert np.allclose(sorted(g[0] for g in got), sorted(want), atol=1e-5)


def test_flink_job_scores_exactly_once_and_swaps_without_restart(settings: Settings) -> None:
    from sklearn.linear_model import LogisticRegression

    feats = settings.topic("features", "live")
    ensure_topic(settings, feats, 2)
    events, y = fraud_events(600, seed=3)
    x = pl.DataFrame(events).select(FEATS).to_numpy().astype(np.float32)
    reg = Registry(settings)
    reg.publish(LogisticRegression(max_iter=200).fit(x, y), name="fraud", features=FEATS, stage="production")
    produce(settings, feats, events[:300])
    t0 = time.monotonic()
    job = score_stream(settings, "fraud", feats, parallelism=2, checkpoint_ms=1500)
    out = job.output_topic
    try:
        _wait(lambda: len(read_topic(settings, out)) >= 300, 150, job)
        print(f"first 300 scored {time.monotonic() - t0:.1f}s after submission")
        job_id = job.job_id
        d2 = reg.publish(LogisticRegression(max_iter=200, C=0.01).fit(x, y), name="fraud", features=FEATS,
                         stage="candidate")
        reg.promote("fraud", d2.version, "production")                    # the promotion, in the models topic
        produce(settings, feats, events[300:450])                         # may still meet v1 in a worker
        _wait(lambda: len(read_topic(settings, out)) >= 450, 120, job)
        produce(settings, feats, events[450:])                            # a checkpoint later: v2 everywhere
        _wait(lambda: len(read_topic(settings, out)) >= 600, 120, job)
        assert job.status() == "RUNNING" and job.job_id == job_id         # the same job, never restarted
    finally:
        job.cancel()
    report = verify(settings, [feats], [out])                             # independent, read_committed
    print(report.summary())
    assert report.ok and report.inputs == report.outputs == report.unique_outputs == 600, report.as_dict()
    seen: dict[str, int] = {}
    last: dict[int, int] = {}
    for r in read_topic(settings, out):                                   # offset order per partition
        v = r.json()
        h = {k: (b or b"").decode() for k, b in r.headers}
        assert h[H.MODEL] == "fraud" and int(h[H.MODEL_VERSION]) == v["model_version"]
        assert h[H.EVENT_ID] == v["event_id"] == r.key.decode() and h[H.COMPONENT] == "flink.serve.fraud"
        assert int(h[H.EVENT_TIME]) == v["event_time"] and 0.0 <= v["score"] <= 1.0
        assert v["model_version"] >= last.get(r.partition, 0), "a version went backwards"
        last[r.partition] = v["model_version"]
        seen[v["event_id"]] = v["model_version"]
    assert all(seen[e["event_id"]] == 1 for e in events[:300])            # scored before the promotion: v1
    assert all(seen[e["event_id"]] == 2 for e in events[450:])            # produced well after it: v2
