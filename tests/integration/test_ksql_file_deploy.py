"""``streamml sql --file features.sql --deploy --workers 2`` as a user runs it, against the real
broker: every persistent query of the file runs as a supervised pipeline in two worker
processes, and each output topic holds exactly the rows the preview shows for the same input.
A bad file is one error naming the statement, and nothing starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from helpers import drain

import streamml.query as q
from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.kafka.admin import list_topics
from streamml.query.ksql_compile import Query, rows
from streamml.query.ksql_file import plan
from streamml.query.ksql_run import catalog, preview

T0 = 1_700_000_040_000  # a minute boundary
M = 60_000


def sm(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamml", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    e.update(STREAMML_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "", STREAMML_NAMESPACE=settings.namespace,
             STREAMML_HOME=str(settings.home), COLUMNS="200", PYTHONPATH=os.pathsep.join(sys.path))
    return e


def _payments(settings: Settings) -> str:
    """Two partitions: cards a, b on 0 and c, d on 1; records out of order, a late one, and the
    records that close most windows."""
    topic = f"{settings.namespace}-payments"
    ensure_topic(settings, topic, 2)
    p = clients.producer(settings)
    recs = [("a", 5_000, 10.0), ("b", 7_000, 1.0), ("c", 9_000, 4.0), ("a", 50_000, 20.0), ("d", 12_000, 6.0),
            ("a", 20_000, 5.0), ("c", 30_000, 0.5), ("a", M + 25_000, 7.0), ("b", M + 12_000, 2.0),
            ("d", M + 40_000, 3.0), ("a", 10_000, 100.0), ("c", 2 * M + 1_000, 9.0), ("a", 3 * M, 8.0),
            ("d", 3 * M + 5_000, 2.5)]
    for card, t, amount in recs:
        p.produce(topic, orjson.dumps({"card": card, "amount": amount, "ts": T0 + t}), card.encode(),
                  partition=0 if card in "ab" else 1)
    assert p.flush(30) == 0
    return topic


def _sorted(df: pl.DataFrame) -> list[dict[str, Any]]:
    return sorted(df.to_dicts(), key=lambda r: orjson.dumps(r, option=orjson.OPT_SORT_KEYS))


def _written(settings: Settings, query: Query, expect: int) -> pl.DataFrame:
    recs = drain(settings, query.sink, expect=expect)  # an independent read_committed consumer
    return rows(query, [(r["key"], r["value"]) for r in recs])


def test_a_file_deploys_every_query_in_two_workers_and_writes_the_preview_rows(
        settings: Settings, env: dict[str, str], tmp_path: Path) -> None:
    topic = _payments(settings)
    tag = uuid.uuid4().hex[:8].upper()
    text = (f"-- features, as a ksqlDB user writes them\n"
            f"CREATE STREAM pay_{tag} (card VARCHAR KEY, amount DOUBLE, ts BIGINT)\n"
            f"  WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');\n\n"
            f"CREATE STREAM big_{tag} AS SELECT card, amount * 2 AS a2, ts FROM pay_{tag}\n"
            f"  WHERE amount > 1 EMIT CHANGES;\n\n"
            f"CREATE TABLE w_{tag} AS SELECT card, COUNT(*) AS n, SUM(a2) AS total, MAX(a2) AS hi\n"
            f"  FROM big_{tag} WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS)\n"
            f"  GROUP BY card EMIT FINAL;\n")
    f = tmp_path / "features.sql"
    f.write_text(text)

    r = sm("sql", "--file", str(f), env=env)  # the preview: the first query's rows, the chained one later
    assert r.returncode == 0, r.stderr
    assert f"STREAM BIG_{tag} -> BIG_{tag}" in " ".join(r.stdout.split())
    assert f"no preview, its input BIG_{tag}" in r.stderr

    r = sm("sql", "--file", str(f), "--deploy", "--workers", "2", "--idle", "8", env=env)
    assert r.returncode == 0, r.stderr
    assert "running 2 worker(s)" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count(f"ksql-w_{tag.lower()}: stopped") == 2  # both workers ran the table's pipeline

    q.use(settings)
    p = plan(text, catalog(settings), str(f))
    (_, big), (_, table) = p.queries
    want_big = preview(big, settings)
    assert want_big.height == 12  # the records with amount > 1
    assert _sorted(_written(settings, big, want_big.height)) == _sorted(want_big)
    want_table = preview(table, settings)  # over what the deployed CSAS wrote
    # closed by each card's own later records: a's two windows, c's first, d's two (b's depends on
    # which cards share its partition of BIG_); a's record at 10 s after its 1m25s is late: dropped
    assert want_table.height >= 5 and 200.0 not in want_table["HI"].to_list()
    got = _written(settings, table, want_table.height)
    assert _sorted(got) == _sorted(want_table)


def test_a_bad_file_starts_nothing_and_one_statement_deploys_by_its_own_name(
        settings: Settings, env: dict[str, str], tmp_path: Path) -> None:
    topic = _payments(settings)
    tag = uuid.uuid4().hex[:8].upper()
    ddl = (f"CREATE STREAM pay_{tag} (card VARCHAR KEY, amount DOUBLE, ts BIGINT) "
           f"WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');\n")
    bad = tmp_path / "bad.sql"
    bad.write_text(ddl + f"CREATE STREAM ok_{tag} AS SELECT card, amount FROM pay_{tag} EMIT CHANGES;\n"
                   f"CREATE STREAM no_{tag} AS SELECT card, amount FROM missing_{tag} EMIT CHANGES;\n")
    r = sm("sql", "--file", str(bad), "--deploy", "--workers", "2", env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {bad}:3: statement 3 (CREATE STREAM no_{tag} AS ")
    assert errors[0].endswith(f"): MISSING_{tag} is not a declared stream or table (known: OK_{tag}, PAY_{tag})")
    assert f"OK_{tag}" not in list_topics(settings)  # nothing started

    stmt = (f"CREATE TABLE n_{tag} AS SELECT card, COUNT(*) AS n FROM pay_{tag} "
            f"WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY card EMIT CHANGES;")
    r = sm("sql", ddl + stmt, "--deploy", "--idle", "5", env=env)
    assert r.returncode == 0, r.stderr
    assert f"as pipeline ksql-n_{tag.lower()}: {topic} -> N_{tag}" in r.stderr and "warning" not in r.stderr
    q.use(settings)
    query = plan(ddl + stmt, catalog(settings)).queries[0][1]
    want = preview(query, settings)
    assert want.height == 14  # one update per record: EMIT CHANGES
    assert _sorted(_written(settings, query, want.height)) == _sorted(want)


def test_deploy_file_from_python_runs_the_queries_in_order_and_registers_them(
        settings: Settings, tmp_path: Path) -> None:
    topic = _payments(settings)
    tag = uuid.uuid4().hex[:8].upper()
    f = tmp_path / "features.sql"
    f.write_text(f"CREATE STREAM pay_{tag} (card VARCHAR KEY, amount DOUBLE, ts BIGINT)\n"
                 f"  WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');\n"
                 f"CREATE STREAM big_{tag} AS SELECT card, amount * 2 AS a2, ts FROM pay_{tag}\n"
                 f"  WHERE amount > 1 EMIT CHANGES;\n"
                 f"CREATE TABLE n_{tag} AS SELECT card, COUNT(*) AS n FROM big_{tag} GROUP BY card EMIT CHANGES;\n")
    q.use(settings)
    deployments = q.deploy_file(f, settings=settings, max_batch=4)
    try:
        big, table = deployments
        assert (big.sink, table.sink) == (f"BIG_{tag}", f"N_{tag}")
        assert big.query_id and big.query_id.startswith(f"CSAS_BIG_{tag}_")
        table.wait(12, timeout=90)
    finally:
        for d in deployments:
            d.stop()
    assert set(q.sql("SHOW QUERIES")["sink"].to_list()) >= {f"BIG_{tag}", f"N_{tag}"}
    assert big.query is not None and table.query is not None
    want = preview(table.query, settings)
    assert want.height == 12
    assert _sorted(_written(settings, table.query, want.height)) == _sorted(want)


def test_sigterm_stops_every_worker_and_pipeline_cleanly(settings: Settings, env: dict[str, str],
                                                         tmp_path: Path) -> None:
    topic = _payments(settings)
    tag = uuid.uuid4().hex[:8].upper()
    f = tmp_path / "features.sql"
    f.write_text(f"CREATE STREAM pay_{tag} (card VARCHAR KEY, amount DOUBLE, ts BIGINT)\n"
                 f"  WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');\n"
                 f"CREATE STREAM big_{tag} AS SELECT card, amount * 2 AS a2, ts FROM pay_{tag}\n"
                 f"  WHERE amount > 1 EMIT CHANGES;\n"
                 f"CREATE TABLE n_{tag} AS SELECT card, COUNT(*) AS n FROM big_{tag} GROUP BY card EMIT CHANGES;\n")
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "streamml", "sql", "--file", str(f), "--deploy",
                                 "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            assert len(drain(settings, f"N_{tag}", expect=12, timeout=90)) == 12  # both queries run
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    text = log.read_text()
    assert "Traceback" not in text and "restarting" not in text
    for pipeline in (f"ksql-big_{tag.lower()}", f"ksql-n_{tag.lower()}"):
        assert text.count(f"{pipeline}: stopped") == 2, text  # each worker stopped each pipeline
