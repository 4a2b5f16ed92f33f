"""A real Prometheus server (Debian's package) scrapes streamml's /metrics endpoints."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from prom_conventions import problems

from streamml.config import Settings
from streamml.monitor.dashboard import DashboardState, serve
from streamml.monitor.metrics import Metrics, serve_metrics
from streamml.monitor.publish import SnapshotPublisher

PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _query(base: str, q: str) -> list[dict]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": q}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


@pytest.mark.skipif(PROMETHEUS is None,
                    reason="the prometheus binary is not installed "
                           "(apt-get install prometheus; scripts/system-deps.sh)")
def test_prometheus_scrapes_component_and_dashboard_metrics(settings: Settings, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    m = Metrics()
    lat = rng.exponential(40, 5000)
    m.observe_batch("serve.fraud", 5000, lat)
    m.observe_dlq("ingest.http", 4, ["bad json"] * 4)
    m.set_model("serve.fraud", "fraud", 7)
    m.set_lag("g", "t", 0, 123)
    server, mport = serve_metrics(m)
    SnapshotPublisher(settings, m, instance="worker-a").publish_once()
    dash = serve(settings, port=0, state=DashboardState(settings, refresh=0.3))
    pport = _free_port()
    (tmp_path / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: streamml
    static_configs: [{{targets: ["127.0.0.1:{mport}"]}}]
  - job_name: dashboard
    static_configs: [{{targets: ["127.0.0.1:{dash.port}"]}}]
""")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{pport}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    base = f"http://127.0.0.1:{pport}"
    try:
        deadline = time.monotonic() + 60
        ups: list[dict] = []
        while time.monotonic() < deadline:
            try:
                ups = _query(base, "up")
                recs = _query(base, 'streamml_records_total{component="serve.fraud",job="streamml"}')
                inst = _query(base,
                              'streamml_records_total{worker="worker-a",component="serve.fraud",job="dashboard"}')
                if len(ups) == 2 and all(u["value"][1] == "1" for u in ups) and recs and inst:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            log = (tmp_path / "prometheus.log").read_text()[-2000:]
            pytest.fail(f"prometheus did not scrape both targets: {ups}\n{log}")
        assert float(recs[0]["value"][1]) == 5000
        assert float(inst[0]["value"][1]) == 5000
        dlq = _query(base, 'streamml_dlq_records_total{component="ingest.http",job="streamml"}')
        assert float(dlq[0]["value"][1]) == 4 and dlq[0]["metric"]["reason"] == "bad json"
        lag = _query(base, 'streamml_consumer_lag{group="g",job="streamml"}')
        assert float(lag[0]["value"][1]) == 123
        # the dashboard job also exports this process's global metrics
        ver = _query(base, 'streamml_model_info{model="fraud",job="streamml"}')
        assert ver[0]["metric"]["version"] == "7" and float(ver[0]["value"][1]) == 1
        dver = _query(base, 'streamml_model_info{model="fraud",worker="worker-a",job="dashboard"}')
        assert dver[0]["metric"]["version"] == "7" and float(dver[0]["value"][1]) == 1
        # Prometheus' own quantile over our buckets (in seconds) agrees with the data to within one
        # bucket, from the component and from the dashboard's re-export of the snapshot alike
        true = float(np.median(lat)) / 1000
        assert 0.02 <= true <= 0.05
        for job, extra in (("streamml", ""), ("dashboard", ',worker="worker-a"')):
            median = (f'histogram_quantile(0.5, streamml_latency_seconds_bucket'
                      f'{{component="serve.fraud",stage="e2e",job="{job}"{extra}}})')
            q = float(_query(base, median)[0]["value"][1])
            assert 0.02 <= q <= 0.05, (job, q)
        # what Prometheus scraped, checked against the naming guide
        for name, port in (("component", mport), ("dashboard", dash.port)):
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            assert problems(text, f"{name} /metrics: ") == []
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        dash.close()
        server.shutdown()
