"""The web dashboard in headless Chromium: live data in every chart, tables from real topics, a screenshot."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
import polars as pl
import pytest
from test_monitor_drift import produce_features

from streamml.config import Settings
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.kafka.transactions import next_offsets
from streamml.monitor.dashboard import DashboardState, serve
from streamml.monitor.drift import DriftDetector, Reference
from streamml.monitor.metrics import Metrics
from streamml.monitor.publish import SnapshotPublisher
from streamml.monitor.quality import QualityTracker
from streamml.registry.registry import Registry
from streamml.train.job import TrainingJob
from streamml.train.trainers import SklearnClassifier

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _seed(settings: Settings) -> int:
    """A model with lineage, dead letters, a retrain command and a lagging consumer group; returns its lag."""
    topic = settings.topic("features", "payments")
    ensure_topic(settings, topic, 2)
    produce_features(settings, topic, 1500, 0, drifted=False, seed=7)
    TrainingJob("fraud", topic, SklearnClassifier(), features=["amount", "velocity"]).run(settings, Registry(settings))
    dlq = settings.topic("dlq")
    ensure_topic(settings, dlq, 1)
    control = settings.topic("control")
    ensure_topic(settings, control, 1)
    p = clients.producer(settings)
    for i in range(3):
        p.produce(dlq, b'{"amount": "lots"', headers=[("sm.component", b"ingest.http"),
                                                        ("sm.source", f"request {i}".encode()),
                                                        ("sm.reason", b"amount: 'lots' is not a number")])
    p.produce(control, orjson.dumps({"command": "retrain", "model": "fraud", "reason": "drift: psi(amount)=0.41>0.2",
                                     "at": int(time.time() * 1000)}), b"fraud")
    assert p.flush(10) == 0
    c = clients.consumer(settings, f"{settings.namespace}.scorer-test")
    c.subscribe([topic])
    msgs: list = []
    deadline = time.monotonic() + 20
    while len(msgs) < 500 and time.monotonic() < deadline:
        msgs += c.consume(500 - len(msgs), timeout=1)
    committed = next_offsets(msgs)
    c.commit(offsets=committed, asynchronous=False)
    lag = sum(c.get_watermark_offsets(tp, timeout=10)[1] - tp.offset for tp in committed)
    c.close()
    return lag


def _feed(settings: Settings, stop: threading.Event) -> SnapshotPublisher:
    """Components recording batches, and a monitor-style report with real drift and quality figures."""
    rng = np.random.default_rng(0)
    m = Metrics()
    ref = Reference.from_frame(pl.DataFrame({"amount": rng.normal(50, 15, 3000), "velocity": rng.normal(2, 1, 3000)}))
    drift = DriftDetector(ref, window=1000, min_samples=200)
    quality = QualityTracker(window=1000)
    step = [0]

    def extra() -> dict:
        return {"monitor": {"model": "fraud", "version": "1", "drift": drift.evaluate().as_dict(),
                            "quality": {k: v for k, v in quality.evaluate().items() if k != "by_version"}}}

    pub = SnapshotPublisher(settings, m, instance="pipeline-1", interval=0.25, extra=extra)

    def run() -> None:
        while not stop.is_set():
            i = step[0]
            shift = 0.0 if i < 12 else 25.0
            n = int(rng.integers(400, 900))
            m.observe_batch("ingest.payments", n, rng.exponential(3, n))
            m.observe_batch("stream.features", n, rng.exponential(12, n) + 5)
            m.observe_batch("serve.fraud", n, rng.exponential(25, n) + 20)
            # as the monitor records predictions: event time -> prediction far behind (a source whose
            # events reach ingest late), ingest -> prediction the pipeline's own ~200 ms
            m.observe_batch("pipeline.fraud", n, rng.normal(7500, 150, n))
            m.observe_latency("pipeline.fraud", rng.exponential(60, n) + 120, stage="ingest")
            y = rng.random(n) < 0.1
            s = np.clip(y * 0.45 + rng.random(n) * 0.6, 0, 1)
            ids = [f"b{i}-{j}" for j in range(n)]
            quality.add_predictions(ids, s, version=1)
            quality.add_labels(ids, y.astype(int))
            drift.update(pl.DataFrame({"amount": rng.normal(50 + shift, 15, n), "velocity": rng.normal(2, 1, n)}))
            m.observe_predictions("fraud", s)
            pub.publish_once()
            step[0] += 1
            time.sleep(0.15)

    threading.Thread(target=run, daemon=True).start()
    return pub


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/system-deps.sh installs it)")
def test_dashboard_shows_live_data_in_headless_chromium(settings: Settings) -> None:
    from playwright.sync_api import sync_playwright

    _seed(settings)
    stop = threading.Event()
    _feed(settings, stop)
    state = DashboardState(settings, refresh=0.5)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with serve(settings, port=0, state=state) as dash:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1440, "height": 1250})
                console_errors: list[str] = []
                page.on("pageerror", lambda e: console_errors.append(str(e)))
                page.goto(dash.url, wait_until="load")
                page.wait_for_function(
                    """() => window.streamml && ['chart-rate','chart-latency','chart-event-lag','chart-lag',
                                                  'chart-drift','chart-quality']
                         .every(id => window.streamml.charts[id] && window.streamml.charts[id].data[0].length >= 20)""",
                    timeout=60_000)
                page.wait_for_function("() => document.querySelector('#kpi-psi').textContent !== '–'", timeout=20_000)
                page.wait_for_timeout(2500)   # one more poll: tables and DLQ filled, charts at rest
                info = page.evaluate("""() => {
                    const out = {};
                    for (const [id, c] of Object.entries(window.streamml.charts))
                        out[id] = {n: c.data[0].length, series: c.series.slice(1).map(s => s.label),
                                   nonnull: c.data.slice(1).map(
                                       ys => ys.filter(v => v !== null && v !== undefined).length),
                                   last: c.data.slice(1).map(ys => ys[ys.length - 1])};
                    return out; }""")
                text = page.inner_text("body")
                kpi = page.evaluate("""() => Object.fromEntries(['kpi-p95', 'kpi-p95-unit', 'kpi-event-lag',
                    'kpi-event-lag-unit'].map(id => [id, document.getElementById(id).textContent]))""")
                headings = page.evaluate("""() => Object.fromEntries(['chart-latency', 'chart-event-lag'].map(
                    id => [id, document.getElementById(id).parentElement.querySelector('h2').textContent]))""")
                page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
                api = httpx.get(dash.url + "api/series", timeout=10).json()
                prom = httpx.get(dash.url + "metrics", timeout=10).text
                browser.close()
    finally:
        stop.set()
    assert not console_errors, console_errors
    for chart in ("chart-rate", "chart-latency", "chart-event-lag", "chart-lag", "chart-drift", "chart-quality"):
        assert info[chart]["n"] >= 20 and all(k > 0 for k in info[chart]["nonnull"]), (chart, info[chart])
    assert info["chart-rate"]["series"][:1] == ["total"]
    assert {"ingest.payments", "stream.features", "serve.fraud"} <= set(info["chart-rate"]["series"])
    assert info["chart-drift"]["series"] == ["amount", "velocity", "threshold"]
    # the headline latency is ingest -> prediction (what the pipeline controls), the event-time lag
    # its own figure: the headline card and the main latency chart show the ingest stage's ~200 ms,
    # the lag card and chart the ~7.8 s behind event time
    assert kpi["kpi-p95-unit"] == "ms, ingest → prediction", kpi
    assert kpi["kpi-event-lag-unit"] == "ms, event time → prediction", kpi
    assert headings["chart-latency"].startswith("Pipeline latency") and "ingest → prediction" in headings[
        "chart-latency"], headings
    assert headings["chart-event-lag"].startswith("Event-time lag"), headings
    head_p95 = float(kpi["kpi-p95"].replace(",", ""))
    lag_p95 = float(kpi["kpi-event-lag"].replace("k", "e3").replace(",", ""))
    assert 120 < head_p95 < 1000 and lag_p95 > 7000, kpi
    assert info["chart-latency"]["series"] == ["p50", "p95", "p99"]
    assert info["chart-event-lag"]["series"] == ["lag p50", "lag p95", "lag p99"]
    assert all(v < 1000 for v in info["chart-latency"]["last"]), info["chart-latency"]
    assert all(v > 7000 for v in info["chart-event-lag"]["last"]), info["chart-event-lag"]
    assert max(v for v in api["p95"] if v is not None) < 1000
    assert min(v for v in api["event_lag"]["p95"] if v is not None) > 7000
    # the drift injected after 12 batches shows: amount's PSI is over the threshold, velocity's is not
    amount_psi, velocity_psi = info["chart-drift"]["last"][0], info["chart-drift"]["last"][1]
    assert amount_psi > 0.2 > velocity_psi
    assert 0.0 <= info["chart-quality"]["last"][0] <= 1.0
    # charts show what the API serves, and the API's totals are the sum of the components
    n = len(api["ts"])
    assert n >= info["chart-rate"]["n"]
    i = info["chart-rate"]["n"] - 1
    comps = [v[i] for k, v in api["components"].items() if not k.startswith("monitor.")]
    assert api["rate"][i] == pytest.approx(sum(x for x in comps if x is not None), abs=0.01)
    # tables: lineage, DLQ reasons, control messages, lag
    assert "fraud" in text and "v1" in text and "production" in text
    assert f"{settings.namespace}.features.payments[0]" in text
    assert "amount: 'lots' is not a number" in text
    assert "drift: psi(amount)=0.41>0.2" in text
    assert f"{settings.namespace}.scorer-test" in text
    assert 'streamml_records_total{component="serve.fraud",worker="pipeline-1"}' in prom
    assert 'streamml_latency_seconds_bucket{component="serve.fraud",le="+Inf",stage="e2e",worker="pipeline-1"}' in prom
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 20_000
