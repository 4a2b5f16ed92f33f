"""The scoring endpoint over real HTTP on the real registry: problems for every error path, and
liveness vs readiness while the model is still loading (in process and as ``streamml serve --port``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from sklearn.linear_model import LogisticRegression

from streamml.config import Settings
from streamml.kafka.local import free_port_base
from streamml.registry import Registry
from streamml.serve import ModelHost, Role
from streamml.serve.http import serve_http
from streamml.serve.registry_source import RegistrySource
from streamml.serve.testing import FRAUD_FEATURES, fraud_frame

PROBLEM = "application/problem+json"


def _publish(settings: Settings) -> int:
    df = fraud_frame(2000, seed=1)
    est = LogisticRegression(max_iter=500).fit(df.select(FRAUD_FEATURES).to_numpy().astype(np.float32),
                                               df["is_fraud"].to_numpy())
    return Registry(settings).publish(est, name="fraud", features=list(FRAUD_FEATURES), stage="production").version


def _until(cond: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def _problem(r: httpx.Response, status: int, kind: str) -> dict:  # type: ignore[type-arg]
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["type"] == f"urn:streamml:problem:{kind}" and body["status"] == status and body["detail"]
    return body  # type: ignore[no-any-return]


def test_not_ready_until_the_model_loads_then_problems_for_bad_requests(settings: Settings) -> None:
    host = ModelHost(RegistrySource(settings), [Role("fraud")]).start()  # waits for nothing
    port = free_port_base(1)
    server, thread = serve_http(host, port)
    base = f"http://127.0.0.1:{port}"
    row = {c: 1.0 for c in FRAUD_FEATURES}
    try:
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{base}/livez").json() == {"status": "alive"}
            for probe in ("/readyz", "/healthz"):
                nr = _problem(http.get(f"{base}{probe}"), 503, "not-ready")
                assert nr["loading"] == ["fraud"] and "fraud" in nr["detail"]
            _problem(http.post(f"{base}/v1/models/fraud/predict", json={"instances": [row]}), 503,
                     "model-not-loaded")

            version = _publish(settings)
            assert _until(lambda: http.get(f"{base}/readyz").status_code == 200), http.get(f"{base}/readyz").text
            assert http.get(f"{base}/readyz").json() == {"status": "ready", "models": {"fraud": version},
                                                          "loading": []}
            ok = http.post(f"{base}/v1/models/fraud/predict", json={"instances": [row, row]})
            assert ok.status_code == 200 and ok.json()["version"] == version and len(ok.json()["predictions"]) == 2

            _problem(http.post(f"{base}/v1/models/nope/predict", json={"instances": [row]}), 404, "unknown-model")
            _problem(http.post(f"{base}/v1/models/fraud/predict", json={"rows": [row]}), 400, "bad-request")
            bad = _problem(http.post(f"{base}/v1/models/fraud/predict", json={"instances": [{"amount": "x"}]}), 422,
                           "invalid-input")
            assert bad["errors"][0]["row"] == 0 and bad["inputs"] == list(FRAUD_FEATURES)
            v = _problem(http.post(f"{base}/v1/models/fraud/predict", content=b"[{",
                                   headers={"content-type": "application/json"}), 422, "validation-error")
            assert v["errors"] and v["errors"][0]["loc"][0] == "body"
            q = _problem(http.get(f"{base}/v1/models/fraud", params={"stage": "canary"}), 404, "unknown-model")
            assert "canary" in q["detail"]
            gone = http.delete(f"{base}/v1/models/fraud/predict")
            assert gone.status_code == 405 and gone.headers["content-type"] == PROBLEM
            assert gone.json()["title"] == "Method Not Allowed"
    finally:
        server.should_exit = True
        thread.join(10)
        host.stop()


def test_streamml_serve_http_answers_probes_while_waiting_for_a_model(settings: Settings, tmp_path: Path) -> None:
    port = free_port_base(1)
    env = {**os.environ, "STREAMML_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "streamml", "--bootstrap-servers", settings.bootstrap_servers,
                             "--namespace", settings.namespace, "serve", "--model", "fraud", "--port", str(port),
                             "--wait", "120"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        assert _until(lambda: httpx.get(f"{base}/livez").status_code == 200), "no liveness while loading"
        nr = _problem(httpx.get(f"{base}/readyz"), 503, "not-ready")  # alive, but no traffic yet
        assert nr["loading"] == ["fraud"]
        version = _publish(settings)
        assert _until(lambda: httpx.get(f"{base}/readyz").status_code == 200)
        r = httpx.post(f"{base}/v1/models/fraud/predict", json={"features": {c: 1.0 for c in FRAUD_FEATURES}})
        assert r.status_code == 200 and r.json()["version"] == version
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
