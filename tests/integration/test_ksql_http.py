"""ksqlDB's REST endpoints against a real broker: POST /ksql declares a stream and starts a
CREATE TABLE AS SELECT; POST /query answers pull queries in ksqlDB's header/row shape and streams
a push query's rows (from the beginning with streamsProperties auto.offset.reset=earliest)."""

from __future__ import annotations

import uuid

import orjson
import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from streamml.config import Settings  # noqa: E402
from streamml.kafka import clients, ensure_topic  # noqa: E402
from streamml.query.ksql_http import create_app  # noqa: E402

T0 = 1_700_000_040_000


def test_ksql_and_query_endpoints(settings: Settings) -> None:
    topic = f"{settings.namespace}-payments"
    ensure_topic(settings, topic, 1)
    p = clients.producer(settings)
    for card, amount in [("a", 2.0), ("b", 1.0), ("a", 3.0)]:
        p.produce(topic, orjson.dumps({"card": card, "amount": amount, "ts": T0}), card.encode(), partition=0)
    assert p.flush(30) == 0
    app = create_app(settings)
    client = TestClient(app)
    src, table = "PAY_" + uuid.uuid4().hex[:6].upper(), "TOT_" + uuid.uuid4().hex[:6].upper()
    r = client.post("/ksql", json={"ksql": f"CREATE STREAM {src} (card VARCHAR KEY, amount DOUBLE, ts BIGINT) "
                                           f"WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts'); "
                                           f"CREATE TABLE {table} AS SELECT card, SUM(amount) AS total FROM {src} "
                                           f"GROUP BY card EMIT CHANGES;"})
    assert r.status_code == 200, r.text
    statuses = r.json()
    assert [s["commandStatus"]["status"] for s in statuses] == ["SUCCESS", "SUCCESS"]
    qid = statuses[1]["commandStatus"]["queryId"]
    d = app.state.deployments[qid]
    try:
        d.wait(3, timeout=60)
        r = client.post("/query", json={"ksql": f"SELECT * FROM {table} WHERE card = 'a';"})
        assert r.status_code == 200, r.text
        header, *rows = r.json()
        assert header["header"]["schema"] == "`CARD` STRING KEY, `TOTAL` DOUBLE"
        assert rows == [{"row": {"columns": ["a", 5.0]}}]
        r = client.post("/query", json={"ksql": f"SELECT * FROM {table}"})
        assert r.status_code == 400 and "looks up keys" in r.json()["detail"]
        with client.stream("POST", "/query", json={"ksql": f"SELECT card, amount FROM {src} EMIT CHANGES LIMIT 2;",
                                                   "streamsProperties": {"auto.offset.reset": "earliest"}}) as resp:
            lines = [orjson.loads(x) for x in resp.iter_lines() if x]
        assert lines[0]["header"]["schema"] == "`CARD` STRING KEY, `AMOUNT` DOUBLE"
        assert [x["row"]["columns"] for x in lines[1:]] == [["a", 2.0], ["b", 1.0]]
    finally:
        d.stop()
