"""``streamml topics | head | tail | sql`` as a user runs them: real processes, the real broker."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest

from streamml.config import Settings
from streamml.kafka import clients, ensure_topic


def sm(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamml", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    e.update(STREAMML_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "", STREAMML_NAMESPACE=settings.namespace,
             STREAMML_HOME=str(settings.home), COLUMNS="200")
    return e


def _produce(settings: Settings, topic: str, rows: list[dict[str, Any]]) -> None:
    p = clients.producer(settings)
    for r in rows:
        p.produce(topic, orjson.dumps(r), r["card_id"].encode())
    assert p.flush(30) == 0


def test_query_commands(settings: Settings, env: dict[str, str]) -> None:
    topic = settings.topic("raw", "payments")
    ensure_topic(settings, topic, 2)
    rows = [{"card_id": f"c{i % 4}", "amount": i * 2.5} for i in range(40)]
    _produce(settings, topic, rows)

    r = sm("topics", env=env)
    assert r.returncode == 0, r.stderr
    assert topic in r.stdout and "40" in r.stdout

    r = sm("head", "nope", "-n", "3", "-f", "json", env=env)
    assert r.returncode == 1 and "no topic named 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = sm("head", "payments", "-n", "3", "-f", "json", env=env)
    assert r.returncode == 0, r.stderr
    got = [orjson.loads(line) for line in r.stdout.splitlines()]
    assert len(got) == 3 and all(g["_topic"] == topic for g in got)

    r = sm("sql", "SELECT card_id, sum(amount) AS s, count(*) AS n FROM payments GROUP BY 1 ORDER BY 1", "-f", "csv",
           env=env)
    assert r.returncode == 0, r.stderr
    table = {row["card_id"]: (float(row["s"]), int(row["n"])) for row in csv.DictReader(io.StringIO(r.stdout))}
    expected: dict[str, tuple[float, int]] = {}
    for row in rows:
        s, n = expected.get(row["card_id"], (0.0, 0))
        expected[row["card_id"]] = (s + row["amount"], n + 1)
    assert table == expected

    r = sm("tail", "payments", "--from", "beginning", "--where", "amount >= 90", "--max-records", "4", env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(orjson.loads(line)["amount"] for line in r.stdout.splitlines()) == [90.0, 92.5, 95.0, 97.5]

    r = sm("sql", "--deploy", "big", "SELECT card_id, amount * 2 AS a2 FROM payments WHERE amount > 60 EMIT CHANGES",
           "--idle", "2", env=env)
    assert r.returncode == 0, r.stderr
    assert "out=15" in r.stderr
    r = sm("sql", "SELECT a2 FROM features.big ORDER BY a2", "-f", "json", "--max-records", "100", env=env)
    assert [orjson.loads(x)["a2"] for x in r.stdout.splitlines()] == [x["amount"] * 2 for x in rows if x["amount"] > 60]

    r = sm("sql", "SELECT card_id, count(*) FROM payments GROUP BY card_id EMIT CHANGES", env=env)
    assert r.returncode == 1 and "needs a window" in r.stderr and "Traceback" not in r.stderr


def test_tail_command_stops_on_ctrl_c(settings: Settings, env: dict[str, str]) -> None:
    topic = settings.topic("raw", "clicks")
    ensure_topic(settings, topic, 1)
    proc = subprocess.Popen([sys.executable, "-m", "streamml", "tail", "clicks"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        line = ""
        while "following" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()  # type: ignore[union-attr]
        _produce(settings, topic, [{"card_id": "a", "amount": 1.0}, {"card_id": "b", "amount": 2.0}])
        first = proc.stdout.readline()  # type: ignore[union-attr]
        second = proc.stdout.readline()  # type: ignore[union-attr]
        assert [orjson.loads(x)["card_id"] for x in (first, second)] == ["a", "b"]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "2 record(s)" in err and "Traceback" not in err


def test_sql_runs_ksqldb_statements_and_push_queries(settings: Settings, env: dict[str, str]) -> None:
    """One invocation declares a stream; a push query with LIMIT prints its rows as JSON lines and
    ends; a pull query on a table that is not deployed is one error (and its hint), no traceback."""
    topic = f"{settings.namespace}-ksql-pay"
    ensure_topic(settings, topic, 1)
    _produce(settings, topic, [{"card_id": "a", "amount": 1.0}, {"card_id": "b", "amount": 50.0},
                               {"card_id": "c", "amount": 70.0}])
    ddl = f"CREATE STREAM p (card_id VARCHAR KEY, amount DOUBLE) WITH (kafka_topic='{topic}');"
    res = sm("sql", ddl + "SET 'auto.offset.reset' = 'earliest'; "
             "SELECT card_id, amount FROM p WHERE amount > 10 EMIT CHANGES LIMIT 2;", "-f", "json", env=env)
    assert res.returncode == 0, res.stderr
    assert [orjson.loads(x) for x in res.stdout.splitlines()] == [{"CARD_ID": "b", "AMOUNT": 50.0},
                                                                 {"CARD_ID": "c", "AMOUNT": 70.0}]
    res = sm("sql", ddl + "CREATE TABLE t AS SELECT card_id, COUNT(*) AS n FROM p GROUP BY card_id EMIT CHANGES;"
             "SELECT * FROM t WHERE card_id = 'a';", env=env)
    assert res.returncode != 0
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 2 and "Traceback" not in res.stderr
    assert lines[0].startswith("error: ") and "not materialised" in lines[0] and lines[1].startswith("hint: deploy")
