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


def test_sql_server_command_serves_the_endpoints(settings: Settings) -> None:
    """``streamml sql-server`` as a user runs it: statements and queries over HTTP, Ctrl-C stops it."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    topic = f"{settings.namespace}-srv"
    ensure_topic(settings, topic, 1)
    p = clients.producer(settings)
    for card, amount in [("a", 2.0), ("a", 3.0)]:
        p.produce(topic, orjson.dumps({"card": card, "amount": amount}), card.encode(), partition=0)
    assert p.flush(30) == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    env.update(STREAMML_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "", STREAMML_NAMESPACE=settings.namespace,
               STREAMML_HOME=str(settings.home))
    init = f"CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE) WITH (kafka_topic='{topic}');"
    proc = subprocess.Popen([sys.executable, "-m", "streamml", "sql-server", "--no-auth", "--port", str(port),
                             "--init", init], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        table = "TOT_" + uuid.uuid4().hex[:6].upper()
        r = httpx.post(base + "/ksql", json={"ksql": f"CREATE TABLE {table} AS SELECT card, SUM(amount) AS total "
                                                     f"FROM pay GROUP BY card EMIT CHANGES;"}, timeout=60)
        assert r.status_code == 200, r.text
        rows: list[object] = []
        while time.monotonic() < deadline:
            r = httpx.post(base + "/query", json={"ksql": f"SELECT total FROM {table} WHERE card = 'a';"}, timeout=60)
            rows = r.json()[1:] if r.status_code == 200 else []
            if rows == [{"row": {"columns": [5.0]}}]:
                break
            time.sleep(0.3)
        assert rows == [{"row": {"columns": [5.0]}}]
        shown = httpx.post(base + "/ksql", json={"ksql": "SHOW QUERIES;"}, timeout=30).json()
        assert [row["status"] for row in shown[0]["rows"]] == ["RUNNING"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
