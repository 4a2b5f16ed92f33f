"""Monitoring building blocks without a broker: metrics, drift, quality, alerts."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from streamml.monitor.alerts import Alerter
from streamml.monitor.drift import DriftDetector, Reference, ks_statistic, psi
from streamml.monitor.metrics import LATENCY_BUCKETS_MS, LATENCY_BUCKETS_SECONDS, Metrics
from streamml.monitor.quality import QualityTracker


def _samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(m.exposition().decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_latency_histogram_matches_an_independent_count() -> None:
    rng = np.random.default_rng(1)
    m = Metrics()
    batches = [rng.exponential(80, size=n) for n in (1000, 1, 2500, 0)]
    for b in batches:
        m.observe_batch("serve.fraud", len(b), b)
    allv = np.concatenate(batches)
    s = _samples(m)
    assert s[("streamml_records_total", (("component", "serve.fraud"),))] == len(allv)
    assert s[("streamml_batches_total", (("component", "serve.fraud"),))] == 4
    # recorded in milliseconds, exposed in seconds (Prometheus' base unit)
    for le_ms, le_s in zip(LATENCY_BUCKETS_MS, LATENCY_BUCKETS_SECONDS):
        key = ("streamml_latency_seconds_bucket", (("component", "serve.fraud"), ("le", repr(float(le_s))),
                                                   ("stage", "e2e")))
        assert s[key] == int((allv <= le_ms).sum()), le_s
    inf = ("streamml_latency_seconds_bucket", (("component", "serve.fraud"), ("le", "+Inf"), ("stage", "e2e")))
    assert s[inf] == len(allv)
    assert s[("streamml_latency_seconds_count", (("component", "serve.fraud"), ("stage", "e2e")))] == len(allv)
    assert s[("streamml_latency_seconds_sum", (("component", "serve.fraud"), ("stage", "e2e")))] == \
        pytest.approx(allv.sum() / 1000)


def test_snapshot_percentiles_dlq_models_predictions_lag() -> None:
    m = Metrics()
    lat = np.arange(1, 101, dtype=float)
    m.observe_batch("stream.features", 100, lat)
    m.observe_dlq("ingest.file", 3, ["bad json", "missing amount", "bad json"])
    m.observe_errors("serve.fraud", 2, kind="decode")
    m.set_model("serve.fraud", "fraud", 3)
    m.observe_predictions("fraud", [0.05, 0.5, 0.95, 1.0])
    m.set_lag("g1", "ns.features.pay", 0, 42)
    snap = m.snapshot()
    c = snap["components"]["stream.features"]
    assert c["latency_ms"]["p50"] == pytest.approx(np.percentile(lat, 50))
    assert c["latency_ms"]["p99"] == pytest.approx(np.percentile(lat, 99))
    assert snap["components"]["ingest.file"]["dlq_reasons"] == {"bad json": 2, "missing amount": 1}
    assert snap["components"]["serve.fraud"]["errors"] == 2
    assert snap["models"] == [{"component": "serve.fraud", "model": "fraud", "version": "3"}]
    counts = snap["predictions"]["fraud"]["counts"]
    assert sum(counts) == 4 and counts[0] == 1 and counts[4] == 1 and counts[9] == 2
    assert snap["lag"] == [{"group": "g1", "topic": "ns.features.pay", "partition": 0, "lag": 42}]
    s = _samples(m)
    assert s[("streamml_consumer_lag", (("group", "g1"), ("partition", "0"), ("topic", "ns.features.pay")))] == 42
    assert s[("streamml_dlq_records_total", (("component", "ingest.file"), ("reason", "bad json")))] == 2
    assert s[("streamml_model_info", (("component", "serve.fraud"), ("model", "fraud"), ("version", "3")))] == 1
    # percentiles are per snapshot interval: the next snapshot has no latencies
    assert m.snapshot()["components"]["stream.features"]["latency_ms"] == {}


def test_psi_against_a_direct_formula() -> None:
    e = np.array([0.1, 0.2, 0.3, 0.4])
    a = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(e, a) == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert psi(e * 100, a * 7) == pytest.approx(psi(e, a))  # counts are normalised


def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 1, 700), rng.normal(0.3, 1.2, 900)
    assert ks_statistic(x, y) == pytest.approx(stats.ks_2samp(x, y).statistic)


def test_reference_round_trip_and_categorical_drift() -> None:
    rng = np.random.default_rng(3)
    df = pl.DataFrame({"amount": rng.lognormal(3, 1, 4000), "mcc": rng.choice(["grocery", "fuel", "web"], 4000)})
    ref = Reference.from_frame(df)
    back = Reference.from_dict(ref.as_dict())
    assert back == ref
    assert sum(ref.features["amount"].shares) == pytest.approx(1.0)
    det = DriftDetector(back, window=1000, min_samples=300)
    det.update(pl.DataFrame({"amount": rng.lognormal(3, 1, 1000), "mcc": ["web"] * 1000}))
    rep = det.evaluate()
    assert rep.drifted == ["mcc"]
    assert "psi(mcc)=" in rep.reason()


def test_sliding_window_forgets_old_values() -> None:
    rng = np.random.default_rng(4)
    ref = Reference.from_frame(pl.DataFrame({"x": rng.normal(0, 1, 5000)}))
    det = DriftDetector(ref, window=1000, min_samples=1000)
    det.update(pl.DataFrame({"x": rng.normal(0, 1, 400)}))
    assert det.evaluate().features == {}                       # too few values to judge
    det.update(pl.DataFrame({"x": rng.normal(5, 1, 1000)}))
    assert det.evaluate().drifted == ["x"]
    for _ in range(3):                                         # 3 x 400 in-distribution values push it out
        det.update(pl.DataFrame({"x": rng.normal(0, 1, 400)}))
    assert det.evaluate().drifted == []
    assert det.values("x").size == 1000


def test_quality_join_matches_sklearn_and_handles_late_labels() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    ids = [f"e{i}" for i in range(n)]
    y = rng.random(n) < 0.1
    score = np.clip(y * 0.5 + rng.random(n) * 0.6, 0, 1)
    q = QualityTracker(window=2000, threshold=0.5)
    q.add_labels(ids[:100], y[:100].astype(int))                 # some labels before their predictions
    q.add_predictions(ids, score, version=1)
    q.add_labels(ids[100:], y[100:].astype(int))
    r = q.evaluate()
    ys, ss = y[-2000:], score[-2000:]
    assert r["n"] == 2000 and r["pending"] == 0 and r["labelled_total"] == n
    assert r["precision"] == pytest.approx(precision_score(ys, ss >= 0.5))
    assert r["recall"] == pytest.approx(recall_score(ys, ss >= 0.5))
    assert r["auc"] == pytest.approx(roc_auc_score(ys, ss))
    assert r["by_version"]["1"]["n"] == 2000


def test_quality_expires_unlabelled_predictions() -> None:
    q = QualityTracker(max_pending=1.0)
    q.add_predictions(["a", "b"], [0.1, 0.9], now_ms=0)
    q.add_labels(["c"], [1], now_ms=5000)
    assert q.pending == 0 and q.evaluate()["n"] == 0


def test_alerter_one_retrain_per_episode_with_cooldown() -> None:
    now = [1000.0]
    sent: list[dict] = []
    a = Alerter("fraud", send=sent.append, cooldown=60, retrain_timeout=30, clear_after=2, clock=lambda: now[0])
    assert a.check("drift", True, "psi(amount)=0.5>0.2")["command"] == "retrain"
    for _ in range(10):
        assert a.check("drift", True, "x") is None
    assert a.check("quality", True, "recall=0.2<0.5")["suppressed"] == "retrain pending"
    a.model_changed(2)
    now[0] += 10
    assert a.check("drift", True, "again")["suppressed"] == "cool-down"   # a new episode, but within cool-down
    a.check("drift", False)
    assert "drift" in a.active                                             # one clear check is not enough
    a.check("drift", False)
    assert "drift" not in a.active
    now[0] += 100
    assert a.check("drift", True, "later")["command"] == "retrain"
    assert [s["reason"] for s in sent] == ["drift: psi(amount)=0.5>0.2", "drift: later"]
    assert a.retrains_sent == 2


def test_alerter_retries_after_a_retrain_that_never_lands() -> None:
    now = [0.0]
    sent: list[dict] = []
    a = Alerter("m", send=sent.append, cooldown=10, retrain_timeout=20, clear_after=1, clock=lambda: now[0])
    a.check("drift", True, "a")
    a.check("drift", False)
    now[0] = 15
    assert a.check("drift", True, "b")["suppressed"] == "retrain pending"
    a.check("drift", False)
    now[0] = 25
    assert a.check("drift", True, "c")["command"] == "retrain"
    assert len(sent) == 2


def test_discrete_features_get_one_bin_per_value() -> None:
    rng = np.random.default_rng(6)
    flags = (rng.random(20000) < 0.002).astype(int)          # a rare flag in training
    ref = Reference.from_frame(pl.DataFrame({"flag": flags}))
    assert ref.features["flag"].edges == (-0.5, 0.5, 1.5)
    det = DriftDetector(ref, window=2000, min_samples=500, ks_threshold=None)
    live = (rng.random(2000) < 0.06).astype(int)              # 30 times as common live
    det.update(pl.DataFrame({"flag": live}))
    e = np.array(ref.features["flag"].shares)
    a = np.array([0.0, (live == 0).mean(), (live == 1).mean(), 0.0])
    assert det.evaluate().features["flag"].psi == pytest.approx(psi(e, a))
    assert det.evaluate().drifted == ["flag"]


def test_alerter_confirm_waits_for_a_persistent_condition() -> None:
    now = [0.0]
    sent: list[dict] = []
    a = Alerter("m", send=sent.append, confirm=10, clock=lambda: now[0])
    assert a.check("drift", True, "blip") is None
    now[0] = 5
    a.check("drift", False)                      # the blip ends before it is confirmed
    now[0] = 6
    assert a.check("drift", True, "again") is None
    now[0] = 15
    assert a.check("drift", True, "still") is None   # 9 s of firing so far
    now[0] = 16
    assert a.check("drift", True, "confirmed")["command"] == "retrain"
    assert len(sent) == 1


def test_a_value_never_seen_in_training_is_drift() -> None:
    ref = Reference.from_frame(pl.DataFrame({"round_amount": np.zeros(5000, dtype=int)}))
    det = DriftDetector(ref, window=1000, min_samples=500, psi_threshold=0.1, ks_threshold=None)
    det.update(pl.DataFrame({"round_amount": np.r_[np.zeros(970, dtype=int), np.ones(30, dtype=int)]}))
    f = det.evaluate().features["round_amount"]
    assert f.drifted and f.psi == pytest.approx(psi([0, 1, 0], [0, 0.97, 0.03]))


def test_the_headline_latency_is_ingest_to_prediction_and_the_event_time_lag_its_own_figure() -> None:
    from streamml.monitor.loop import prediction_latencies
    from streamml.monitor.publish import headline_latency

    class Msg:
        def __init__(self, ts: int, event_ms: int, ingest_ms: int | None) -> None:
            self.ts = ts
            self.hdrs = [("sm.event_time", str(event_ms).encode())] + (
                [] if ingest_ms is None else [("sm.ingest_time", str(ingest_ms).encode())])

        def timestamp(self) -> tuple[int, int]:
            return (1, self.ts)

        def headers(self) -> list[tuple[str, bytes]]:
            return self.hdrs

    rng = np.random.default_rng(5)
    n = 400
    event = rng.integers(0, 10_000, n)
    ingest = event + 7_500                       # events reach ingest 7.5 s after they happened
    pred = ingest + rng.integers(100, 300, n)    # the pipeline takes 100-300 ms
    msgs = [Msg(int(p), int(e), int(g) if i % 10 else None) for i, (p, e, g) in enumerate(zip(pred, event, ingest))]
    ing, ev = prediction_latencies(msgs)
    assert ing is not None and ev is not None and len(ev) == n and len(ing) == n - n // 10
    m = Metrics()
    m.observe_batch("pipeline.fraud", n, ev)
    m.observe_latency("pipeline.fraud", ing, stage="ingest")
    m.observe_batch("serve.fraud", n, rng.exponential(20, n))
    c = m.snapshot()["components"]
    assert c["pipeline.fraud"]["records"] == n and c["pipeline.fraud"]["batches"] == 1
    h = headline_latency(c.values())
    has_ingest = np.array([i % 10 != 0 for i in range(n)])
    assert h["ingest"]["p95"] == pytest.approx(np.percentile((pred - ingest)[has_ingest], 95))
    assert h["event_lag"]["p95"] == pytest.approx(np.percentile(pred - event, 95))
    assert 100 <= h["ingest"]["p95"] < 300 < 7_600 <= h["event_lag"]["p95"]
