"""The ksqlDB REST endpoints without a broker: statement errors are RFC 9457 problems with a hint,
the bearer token is enforced, and /query takes exactly one SELECT."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from streamml.config import Settings  # noqa: E402
from streamml.query.ksql_http import create_app  # noqa: E402


@pytest.fixture
def client() -> TestClient:
    s = Settings(bootstrap_servers="127.0.0.1:1", namespace="unit" + __name__[-4:])
    return TestClient(create_app(s, token="secret"))


AUTH = {"Authorization": "Bearer secret"}


def test_token_is_required(client: TestClient) -> None:
    r = client.post("/query", json={"ksql": "SELECT * FROM t WHERE k = 1;"})
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("path, ksql, detail", [
    ("/ksql", "CREATE TABLE t (a INT) WITH (kafka_topic='t')", "needs a PRIMARY KEY"),
    ("/ksql", "SELECT * FROM t WHERE k = 1", "queries are run with POST /query"),
    ("/query", "CREATE STREAM s (a INT) WITH (kafka_topic='t')", "takes one SELECT statement"),
    ("/query", "SELECT * FROM a WHERE k = 1; SELECT * FROM b WHERE k = 1", "takes one SELECT statement"),
    ("/query", "SELECT * FROM nowhere WHERE k = 1", "NOWHERE is not a declared stream or table"),
    ("/query", "SELECT k, COUNT(*) FROM t GROUP BY k", "pull queries do not support GROUP BY"),
    ("/ksql", "SET 'ksql.streams.num.threads' = '4'", "is not supported"),
])
def test_bad_statements_are_problems_with_a_hint(client: TestClient, path: str, ksql: str, detail: str) -> None:
    r = client.post(path, json={"ksql": ksql}, headers=AUTH)
    assert r.status_code == 400, r.text
    body = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert body["type"] == "urn:streamml:problem:bad-statement" and detail in body["detail"]
    assert body["hint"]


def test_set_property_answers_a_status(client: TestClient) -> None:
    r = client.post("/ksql", json={"ksql": "SET 'auto.offset.reset' = 'earliest';"}, headers=AUTH)
    assert r.status_code == 200
    assert r.json()[0]["commandStatus"]["status"] == "SUCCESS"
