"""Every /metrics endpoint streamml serves, scraped and checked against Prometheus' naming guide.

The endpoints are found in the source (anything that serves or renders prometheus_client
output); a new one fails :func:`test_every_metrics_endpoint_is_covered` until it is scraped here.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prom_conventions import problems
from prometheus_client.parser import text_string_to_metric_families

import streamml
from streamml.cli import cmd_monitor
from streamml.config import Settings
from streamml.monitor.dashboard import create_app
from streamml.monitor.exposition import CORE_NAMES
from streamml.monitor.metrics import LATENCY_BUCKETS_SECONDS, Metrics, serve_metrics

SRC = Path(streamml.__file__).parent
# what serves, renders or pushes a Prometheus exposition
_SERVES = re.compile(r"\b(start_http_server|start_wsgi_server|make_asgi_app|make_wsgi_app|MetricsHandler|"
                     r"generate_latest|push_to_gateway|write_to_textfile)\b")
#: file -> the test below that scrapes what it serves
COVERED = {"monitor/metrics.py": "test_component_metrics_endpoint",
           "monitor/dashboard.py": "test_dashboard_metrics_endpoint"}


def _busy_metrics() -> Metrics:
    """A registry with a value in every family streamml exposes."""
    rng = np.random.default_rng(3)
    m = Metrics()
    m.observe_batch("serve.fraud", 500, rng.exponential(40, 500))
    m.observe_batch("serve.fraud", 10, rng.exponential(5, 10), stage="score")
    m.observe_batch("ingest.http", 20)
    m.observe_errors("serve.fraud", 2, kind="decode")
    m.observe_dlq("ingest.http", 3, ["bad json", "bad json", "missing amount"])
    m.observe_dlq("ingest.file", 1)
    m.set_model("serve.fraud", "fraud", 7)
    m.set_model("serve.shadow", "fraud", "7-rc1")
    m.observe_predictions("fraud", rng.uniform(0, 1, 100))
    m.set_lag("g", "ns.features.pay", 0, 12)
    m.set_gauge("drift_psi", 0.31, model="fraud", feature="amount")
    m.set_gauge("drift_ks", 0.2, model="fraud", feature="amount")
    for k, v in (("precision", 0.8), ("recall", 0.6), ("auc", 0.9)):
        m.set_gauge(f"quality_{k}", v, model="fraud")
    return m


def _families(text: str) -> dict[str, Any]:
    return {(f.name + "_total" if f.type == "counter" else f.name): f for f in text_string_to_metric_families(text)}


def test_every_metrics_endpoint_is_covered() -> None:
    found = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") if _SERVES.search(p.read_text())}
    assert found == set(COVERED), f"a /metrics endpoint without a naming test: {found - set(COVERED)}"


def test_component_metrics_endpoint() -> None:
    m = _busy_metrics()
    server, port = serve_metrics(m, port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"  # loopback unless told otherwise
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
    assert problems(text, "component /metrics: ") == []
    fams = _families(text)
    assert set(CORE_NAMES) <= set(fams)
    assert fams["streamml_latency_seconds"].type == "histogram"
    info = {s.labels["component"]: s for s in fams["streamml_model_info"].samples}
    assert info["serve.fraud"].labels["version"] == "7" and info["serve.fraud"].value == 1
    assert info["serve.shadow"].labels["version"] == "7-rc1" and info["serve.shadow"].value == 1
    assert {"streamml_drift_psi", "streamml_drift_ks", "streamml_quality_recall"} <= set(fams)
    for old in ("streamml_latency_ms", "streamml_model_version", "streamml_monitor_psi", "streamml_group_lag"):
        assert old not in fams


def test_latency_histogram_is_in_seconds() -> None:
    m = Metrics()
    lat_ms = np.array([0.5, 4.0, 12.0, 250.0, 70_000.0])
    m.observe_batch("serve.fraud", len(lat_ms), lat_ms)
    samples = {(s.name, s.labels.get("le")): s.value for f in text_string_to_metric_families(m.exposition().decode())
               if f.name == "streamml_latency_seconds" for s in f.samples}
    assert samples[("streamml_latency_seconds_sum", None)] == pytest.approx(lat_ms.sum() / 1000)
    assert samples[("streamml_latency_seconds_bucket", "0.005")] == 2
    assert samples[("streamml_latency_seconds_bucket", "0.5")] == 4
    assert samples[("streamml_latency_seconds_bucket", "60.0")] == 4
    assert samples[("streamml_latency_seconds_bucket", "+Inf")] == 5
    assert LATENCY_BUCKETS_SECONDS[0] == 0.001 and LATENCY_BUCKETS_SECONDS[-1] == 60.0


class _State:
    """What create_app reads of a DashboardState, without a broker."""

    refreshing = True

    def __init__(self, snapshots: dict[str, dict[str, Any]], lag: list[dict[str, Any]]) -> None:
        self._latest = snapshots
        self.lag = lag
        self.history = type("H", (), {"snapshots": list(snapshots.values())})()

    def latest(self) -> dict[str, dict[str, Any]]:
        return self._latest

    def stop(self) -> None:
        pass


def test_dashboard_metrics_endpoint() -> None:
    a, b = _busy_metrics(), Metrics()
    b.observe_batch("serve.fraud", 40, np.full(40, 30.0))
    snaps = {"worker-a": a.snapshot(), "worker-b": b.snapshot(),
             # a snapshot written before this naming: percentiles only, an old-style gauge name
             "old-1": {"ts": 1, "components": {"serve.fraud": {"records": 9, "latency_ms": {"p95": 3.0}}},
                       "gauges": [{"name": "instance_latency_ms", "labels": {}, "value": 3.0}]}}
    lag = [{"group": "g", "topic": "ns.features.pay", "partition": 0, "lag": 5},
           {"group": "g", "topic": "ns.features.pay", "partition": 1, "lag": 7}]
    app = create_app(Settings.load(config_file=None), state=_State(snaps, lag))  # type: ignore[arg-type]
    with TestClient(app) as client:
        text = client.get("/metrics").text
    assert problems(text, "dashboard /metrics: ") == []
    fams = _families(text)
    assert set(CORE_NAMES) <= set(fams)
    recs = {s.labels["worker"]: s.value for s in fams["streamml_records_total"].samples
            if s.labels["component"] == "serve.fraud"}
    assert recs == {"worker-a": 510, "worker-b": 40, "old-1": 9}
    # the instance's latencies are a histogram, not percentiles: Prometheus computes quantiles
    inf = [s for s in fams["streamml_latency_seconds"].samples
           if s.labels.get("le") == "+Inf" and s.labels["worker"] == "worker-b"]
    assert [s.value for s in inf] == [40]
    # lag is measured once per partition by the dashboard, not repeated per worker
    assert sorted((s.labels["partition"], s.value) for s in fams["streamml_consumer_lag"].samples) == \
        [("0", 5), ("1", 7)]
    assert all("worker" not in s.labels for s in fams["streamml_consumer_lag"].samples)
    assert {s.labels["worker"] for s in fams["streamml_drift_psi"].samples} == {"worker-a"}
    assert all(s.value == 1 for s in fams["streamml_model_info"].samples)
    assert "streamml_instance_latency_ms" not in fams


def test_the_checker_catches_the_old_names() -> None:
    old = """# TYPE streamml_latency_ms histogram
streamml_latency_ms_bucket{le="1.0"} 1
streamml_latency_ms_bucket{le="+Inf"} 1
streamml_latency_ms_count 1
streamml_latency_ms_sum 0.5
# TYPE streamml_model_version gauge
streamml_model_version{model="fraud",version="3"} 3
# TYPE streamml_instance_records gauge
streamml_instance_records{worker="a"} 10
# TYPE streamml_instance_latency_ms gauge
streamml_instance_latency_ms{quantile="p95"} 7.0
# TYPE streamml_requests_total gauge
streamml_requests_total 1
# TYPE streamml_latency summary
streamml_latency_count 1
streamml_latency_sum 1
# TYPE streamml_model_info gauge
streamml_model_info{version="3"} 3
"""
    found = "\n".join(problems(old))
    for what in ("streamml_latency_ms: not in base units", "streamml_model_version: a version label outside",
                 "streamml_instance_records: looks like a cumulative count",
                 "streamml_instance_latency_ms: pre-computed percentiles", "streamml_requests_total: _total on a gauge",
                 "streamml_latency: type summary", "streamml_model_info: an _info sample has the value 1"):
        assert what in found, (what, found)


def test_gauge_names_are_checked_when_set() -> None:
    m = Metrics()
    for bad in ("latency_ms", "lag_total", "model_info", "Drift", "records_total", "latency_seconds_p99x"):
        with pytest.raises(ValueError):
            m.set_gauge(bad, 1.0)


def test_listeners_bind_loopback_by_default() -> None:
    """No listener defaults to every interface; ``monitor --host`` opts in."""
    assert inspect.signature(serve_metrics).parameters["host"].default == "127.0.0.1"
    params = inspect.signature(cmd_monitor.monitor).parameters
    assert params["host"].default.default == "127.0.0.1"
    assert inspect.signature(cmd_monitor.dashboard).parameters["host"].default.default == "127.0.0.1"
    wildcard = [f"{p.relative_to(SRC)}:{n.lineno}" for p in SRC.rglob("*.py")
                for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Constant)
                and n.value in ("0.0.0.0", "::")]
    assert wildcard == []
