"""The request/response endpoint: same models, same validation, clear 4xx errors."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from streamml.serve import MemorySource, ModelHost, Role
from streamml.serve.http import MAX_INSTANCES, create_app
from streamml.serve.testing import FRAUD_FEATURES, fraud_frame, onnx_candidate, onnx_model, train_fraud_onnx


@pytest.fixture(scope="module")
def setup() -> tuple[TestClient, MemorySource, ModelHost, bytes]:
    data = train_fraud_onnx(seed=1)
    src = MemorySource()
    src.publish(onnx_candidate("fraud", 1, data))
    host = ModelHost(src, [Role("fraud"), Role("other")]).start(wait_for=Role("fraud"), timeout=10)
    return TestClient(create_app(host)), src, host, data


def test_predict_matches_the_model(setup) -> None:  # type: ignore[no-untyped-def]
    client, _, _, data = setup
    df = fraud_frame(20, seed=9)
    rows = df.select(FRAUD_FEATURES).to_dicts()
    r = client.post("/v1/models/fraud/predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    body = r.json()
    expected = onnx_model("fraud", 1, data).predict(df.select(FRAUD_FEATURES).to_numpy().astype(np.float32))
    assert body["model"] == "fraud" and body["version"] == 1 and len(body["predictions"]) == 20
    assert np.allclose([p["score"] for p in body["predictions"]], expected.score, atol=1e-6)
    assert [p["label"] for p in body["predictions"]] == expected.label.tolist()
    one = client.post("/v1/models/fraud/predict", json={"features": rows[3]}).json()
    assert one["predictions"][0]["score"] == pytest.approx(float(expected.score[3]), abs=1e-6)


def test_errors_are_clear_4xx(setup) -> None:  # type: ignore[no-untyped-def]
    client, _, _, _ = setup
    row = {c: 1.0 for c in FRAUD_FEATURES}
    r = client.post("/v1/models/nope/predict", json={"instances": [row]})
    assert r.status_code == 404 and "does not serve nope" in r.json()["detail"]["message"]
    r = client.post("/v1/models/other/predict", json={"instances": [row]})
    assert r.status_code == 503 and r.json()["detail"]["error"] == "model_not_loaded"
    r = client.post("/v1/models/fraud/predict", json={"rows": []})
    assert r.status_code == 400
    r = client.post("/v1/models/fraud/predict", json={"instances": [row, 7]})
    assert r.status_code == 400 and r.json()["detail"]["rows"] == [1]
    bad = [row, {**row, "amount": None}, {k: v for k, v in row.items() if k != "hour"}, {**row, "hour": "noon"}]
    r = client.post("/v1/models/fraud/predict", json={"instances": bad})
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert [e["row"] for e in detail["errors"]] == [1, 2, 3]
    assert "amount is null" in detail["errors"][0]["reason"] and "hour" in detail["errors"][1]["reason"]
    r = client.post("/v1/models/fraud/predict", json={"instances": [row] * (MAX_INSTANCES + 1)})
    assert r.status_code == 413
    r = client.post("/v1/models/fraud/predict", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_answers_from_the_newest_swapped_version(setup) -> None:  # type: ignore[no-untyped-def]
    client, src, host, _ = setup
    src.publish(onnx_candidate("fraud", 2, train_fraud_onnx(seed=2)))
    for _ in range(200):
        if host.slots[Role("fraud")].newest == 2:
            break
        import time
        time.sleep(0.02)
    r = client.post("/v1/models/fraud/predict", json={"instances": [{c: 0.5 for c in FRAUD_FEATURES}]})
    assert r.json()["version"] == 2
    assert client.get("/v1/models/fraud").json()["inputs"] == list(FRAUD_FEATURES)
    assert client.get("/healthz").json()["models"] == {"fraud": 2}
