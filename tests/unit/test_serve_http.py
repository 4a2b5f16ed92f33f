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

    def problem(r, status: int, kind: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["status"] == status and body["type"] == f"urn:streamml:problem:{kind}" and body["title"]
        return body  # type: ignore[no-any-return]

    r = client.post("/v1/models/nope/predict", json={"instances": [row]})
    assert "does not serve nope" in problem(r, 404, "unknown-model")["detail"]
    r = client.post("/v1/models/other/predict", json={"instances": [row]})
    assert "no version of other" in problem(r, 503, "model-not-loaded")["detail"]
    problem(client.post("/v1/models/fraud/predict", json={"rows": []}), 400, "bad-request")
    r = client.post("/v1/models/fraud/predict", json={"instances": [row, 7]})
    assert problem(r, 400, "bad-request")["rows"] == [1]
    bad = [row, {**row, "amount": None}, {k: v for k, v in row.items() if k != "hour"}, {**row, "hour": "noon"}]
    r = client.post("/v1/models/fraud/predict", json={"instances": bad})
    detail = problem(r, 422, "invalid-input")
    assert [e["row"] for e in detail["errors"]] == [1, 2, 3] and detail["inputs"] == list(FRAUD_FEATURES)
    assert "amount is null" in detail["errors"][0]["reason"] and "hour" in detail["errors"][1]["reason"]
    r = client.post("/v1/models/fraud/predict", json={"instances": [row] * (MAX_INSTANCES + 1)})
    problem(r, 413, "too-many-instances")
    r = client.post("/v1/models/fraud/predict", content=b"{nope", headers={"content-type": "application/json"})
    assert problem(r, 422, "validation-error")["errors"][0]["type"] == "json_invalid"
    r = client.post("/v1/models/fraud/predict", json={"instances": {"amount": [1.0, 2.0], "hour": [3]}})
    assert "not all as long" in problem(r, 400, "bad-request")["detail"]
    r = client.get("/v1/nowhere")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "about:blank" and r.json()["title"] == "Not Found"


def test_columnar_and_bare_list_bodies_score_like_rows(setup) -> None:  # type: ignore[no-untyped-def]
    client, _, _, _ = setup
    rows = fraud_frame(5, seed=3).select(FRAUD_FEATURES).to_dicts()
    by_rows = client.post("/v1/models/fraud/predict", json={"instances": rows}).json()["predictions"]
    columnar = {c: [r[c] for r in rows] for c in FRAUD_FEATURES}
    r = client.post("/v1/models/fraud/predict", json={"instances": columnar})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == by_rows
    assert client.post("/v1/models/fraud/predict", json=rows).json()["predictions"] == by_rows


def _resolve(doc: dict, schema: dict) -> dict:  # type: ignore[type-arg]
    ref = schema.get("$ref")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema  # type: ignore[no-any-return]


def test_openapi_documents_predict_and_one_error_shape(setup) -> None:  # type: ignore[no-untyped-def]
    client, _, _, _ = setup
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/models/{name}/predict"]["post"]
    body = op["requestBody"]["content"]["application/json"]
    request = _resolve(doc, body["schema"])
    forms = [_resolve(doc, s) for s in request["anyOf"]]
    instances = next(f for f in forms if "instances" in f.get("properties", {}))["properties"]["instances"]
    assert {s["type"] for s in instances["anyOf"]} == {"array", "object"}  # rows, columnar
    assert any("features" in f.get("properties", {}) for f in forms) and any(f.get("type") == "array" for f in forms)
    for example in body["examples"].values():  # every documented example is accepted
        r = client.post("/v1/models/fraud/predict", json=example["value"])
        assert r.status_code == 200, (example, r.text)
    response = _resolve(doc, op["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"model", "version", "stage", "latency_ms", "predictions"} <= set(response["required"])
    assert {"400", "404", "413", "422", "503"} <= set(op["responses"])
    errors = 0
    for path, item in doc["paths"].items():
        for method, o in item.items():
            assert o.get("summary"), (method, path)
            assert "200" in o["responses"]
            for status, resp in o["responses"].items():
                if status[0] in "45":
                    errors += 1
                    assert list(resp["content"]) == ["application/problem+json"], (path, status)
                    schema = resp["content"]["application/problem+json"]["schema"]
                    for s in schema.get("oneOf", [schema]):
                        props = _resolve(doc, s)["properties"]
                        assert {"type", "title", "status", "detail"} <= set(props), (path, status)
    assert errors >= 8
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_liveness_and_readiness(setup) -> None:  # type: ignore[no-untyped-def]
    client, _, host, _ = setup
    assert client.get("/livez").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["loading"] == ["other"]
    strict = TestClient(create_app(host, ready_roles=host.roles))  # every role must be loaded
    r = strict.get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["loading"] == ["other"] and "other" in r.json()["detail"]
    assert strict.get("/healthz").status_code == 503 and strict.get("/livez").status_code == 200


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
    assert client.get("/healthz").json()["models"] == {"fraud": 2}  # /healthz: the readiness answer
