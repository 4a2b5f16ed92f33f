"""GROUP BY a column that is not the key of a 3-partition stream, against a real broker.

The query runs as two stages (re-key into the engine-managed repartition topic, then the
windowed aggregation over it), deployed as one query: the deployed rows equal the preview's
and a recomputation in Python (no group split across partitions), the repartition topic has
the input's partition count and each card in one of its partitions, SHOW QUERIES lists one
query, and DROP TABLE ... DELETE TOPIC removes the output and the repartition topic.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import orjson
import polars as pl
import pytest
from helpers import drain

import streamml.query as q
from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.kafka.admin import list_topics, topic_config
from streamml.query.ksql_compile import rows
from streamml.query.ksql_run import compile_query

T0 = 1_700_000_040_000
M = 60_000
CARDS = ["c0", "c1", "c2", "c3", "c4"]


def _produce(settings: Settings, topic: str, recs: list[tuple[int, int, dict[str, object]]]) -> None:
    p = clients.producer(settings)
    for part, key, value in recs:
        p.produce(topic, orjson.dumps(value), struct.pack(">q", key), partition=part)
    assert p.flush(30) == 0


def _until(cond: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_group_by_non_key_column_repartitions(settings: Settings) -> None:
    q.use(settings)
    topic = f"{settings.namespace}-pay-by-id"
    ensure_topic(settings, topic, 3)
    data = [(i % 3, i, {"card": CARDS[i % 5], "amount": float(i), "ts": T0 + i * 7_000}) for i in range(36)]
    _produce(settings, topic, data)  # every card on every input partition, keyed by id
    src = "PAY_" + uuid.uuid4().hex[:8].upper()
    q.sql(f"CREATE STREAM {src} (id BIGINT KEY, card VARCHAR, amount DOUBLE, ts BIGINT) "
          f"WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');")
    name = "T_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE TABLE {name} AS SELECT card, COUNT(*), SUM(amount) FROM {src} "
            f"WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY card EMIT FINAL;")
    query = compile_query(stmt, settings)
    internal = f"{settings.namespace}.changelog.ksql-{name.lower()}-repartition"
    assert query.repartition is not None and query.source.topic == internal
    expect: dict[tuple[str, int], list[float]] = {}
    for _, _, v in data:
        expect.setdefault((str(v["card"]), int(v["ts"]) // M * M), []).append(float(v["amount"]))  # type: ignore
    want = sorted((c, ws, ws + M, len(a), sum(a)) for (c, ws), a in expect.items())
    # flush: a record 25 hours later (the default grace is 24 h) on each partition of the internal topic
    flush_cards = [next(c for c in (f"z{i}" for i in range(100)) if zlib.crc32(c.encode()) % 3 == p) for p in range(3)]
    flush = [(0, 1000 + j, {"card": c, "amount": 0.0, "ts": T0 + 25 * 60 * M}) for j, c in enumerate(flush_cards)]

    d = q.deploy(stmt, max_batch=5)
    try:
        assert len(d.workers) == 2 and [w.pipeline.name for w in d.workers] == [
            f"ksql-{name.lower()}-repartition", f"ksql-{name.lower()}"]
        _until(lambda: d.stage_stats[1]["in"] >= len(data))  # every record re-keyed before the flush
        assert d.stats["out"] == 0  # EMIT FINAL, within the grace period
        shown = q.sql("SHOW QUERIES;")
        mine = shown.filter(pl.col("sink") == name)
        assert mine.height == 1 and mine["status"][0] == "RUNNING" and mine["sink_topic"][0] == name
        _produce(settings, topic, flush)
        d.wait(len(want), timeout=60)
    finally:
        d.stop()
    recs = drain(settings, name, expect=len(want))
    deployed = rows(query, [(r["key"], r["value"]) for r in recs])
    cols = ["CARD", "WINDOWSTART", "WINDOWEND", "KSQL_COL_1", "KSQL_COL_2"]
    assert sorted(deployed.select(cols).rows()) == want  # one row per card and window: no group split
    preview = q.sql(stmt)
    assert sorted(preview.select(cols).rows()) == want
    assert sorted(deployed.rows()) == sorted(preview.select(deployed.columns).rows())
    # the internal topic: the input's partition count, no time-based retention, each card in one partition
    topics = list_topics(settings)
    assert topics[internal] == 3
    config = topic_config(settings, internal)
    assert config["retention.ms"] == "-1" and config["cleanup.policy"] == "delete"
    c = clients.consumer(settings, f"verify-{time.time_ns()}")
    c.subscribe([internal])
    seen: list[tuple[bytes, int, int, dict[str, object]]] = []
    deadline = time.monotonic() + 30
    while len(seen) < len(data) + len(flush) and time.monotonic() < deadline:
        seen += [(m.key(), m.partition(), m.timestamp()[1], orjson.loads(m.value()))
                 for m in c.consume(100, timeout=0.3) if not m.error()]
    c.close()
    assert len(seen) == len(data) + len(flush)
    assert all(len({p for k2, p, _, _ in seen if k2 == k}) == 1 for k, _, _, _ in seen)
    assert all(ts == v["TS"] for _, _, ts, v in seen)  # the record timestamp is the event time
    assert {k for k, _, _, _ in seen} == {c.encode() for c in CARDS + flush_cards}
    # one query; DROP ... DELETE TOPIC removes the output and the repartition topic
    qid = d.query_id
    assert qid is not None and qid.startswith(f"CTAS_{name}_")
    q.sql(f"TERMINATE {qid};")
    assert q.sql("SHOW QUERIES;").filter(pl.col("sink") == name).height == 0
    q.sql(f"DROP TABLE {name} DELETE TOPIC;")
    _until(lambda: not {name, internal} & set(list_topics(settings)), timeout=30)


def test_cli_file_deploy_runs_both_stages_in_two_workers(settings: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    env.update(STREAMML_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "", STREAMML_NAMESPACE=settings.namespace,
               STREAMML_HOME=str(settings.home), COLUMNS="200", PYTHONPATH=os.pathsep.join(sys.path))
    topic = f"{settings.namespace}-pay-cli"
    ensure_topic(settings, topic, 3)
    data = [(i % 3, i, {"card": CARDS[i % 5], "amount": float(i), "ts": T0 + i * 7_000}) for i in range(30)]
    _produce(settings, topic, data)
    tag = uuid.uuid4().hex[:8].upper()
    f = tmp_path / "features.sql"
    f.write_text(f"CREATE STREAM pay_{tag} (id BIGINT KEY, card VARCHAR, amount DOUBLE, ts BIGINT)\n"
                 f"  WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');\n"
                 f"CREATE TABLE n_{tag} AS SELECT card, COUNT(*) AS n FROM pay_{tag}\n"
                 f"  WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY card EMIT CHANGES;\n")
    r = subprocess.run([sys.executable, "-m", "streamml", "sql", "--file", str(f)], capture_output=True, text=True,
                       env=env, timeout=120)  # the preview reads the input, not the internal topic
    assert r.returncode == 0 and "no preview" not in r.stderr, r.stderr
    assert f"TABLE N_{tag} -> N_{tag}" in " ".join(r.stdout.split())
    r = subprocess.run([sys.executable, "-m", "streamml", "sql", "--file", str(f), "--deploy", "--workers", "2",
                        "--idle", "8"], capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    internal = f"{settings.namespace}.changelog.ksql-n_{tag.lower()}-repartition"
    flat = " ".join(r.stderr.split())
    assert f"as pipeline ksql-n_{tag.lower()}-repartition + ksql-n_{tag.lower()}: {topic} via {internal}" in flat
    assert r.stderr.count(f"ksql-n_{tag.lower()}: stopped") == 2 and "Traceback" not in r.stderr
    assert list_topics(settings)[internal] == 3
    q.use(settings)
    query = compile_query(f.read_text(), settings)
    got = rows(query, [(x["key"], x["value"]) for x in drain(settings, f"N_{tag}", expect=len(data))])
    want = q.sql(f.read_text())
    cols = ["CARD", "WINDOWSTART", "N"]  # EMIT CHANGES: a row per record, counts 1..k per card and window
    assert sorted(got.select(cols).rows()) == sorted(want.select(cols).rows())
    counts: dict[tuple[str, int], int] = {}
    for _, _, v in data:
        w = (str(v["card"]), int(v["ts"]) // M * M)  # type: ignore[call-overload]
        counts[w] = counts.get(w, 0) + 1
    assert sorted(got.select(cols).rows()) == sorted((c, ws, n) for (c, ws), k in counts.items()
                                                     for n in range(1, k + 1))


def test_push_query_groups_by_a_non_key_column_in_memory(settings: Settings) -> None:
    q.use(settings)
    topic = f"{settings.namespace}-pay-push"
    ensure_topic(settings, topic, 3)
    data = [(i % 3, i, {"card": CARDS[i % 5], "amount": 1.0, "ts": T0 + i}) for i in range(15)]
    _produce(settings, topic, data)
    src = "PAY_" + uuid.uuid4().hex[:8].upper()
    q.sql(f"CREATE STREAM {src} (id BIGINT KEY, card VARCHAR, amount DOUBLE, ts BIGINT) "
          f"WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');")
    live = q.sql(f"SET 'auto.offset.reset' = 'earliest'; "
                 f"SELECT card, COUNT(*) AS n FROM {src} GROUP BY card EMIT CHANGES LIMIT 15;")
    live.timeout = 30
    try:
        got = list(live.frames())[-1]  # the growing frame, once LIMIT rows came
    finally:
        q.sql("SET 'auto.offset.reset' = 'latest'")
    assert sorted(got.select("CARD", "N").rows()) == sorted((c, n) for c in CARDS for n in (1, 2, 3))
    assert f"{settings.namespace}.changelog" not in " ".join(list_topics(settings))  # nothing written


def test_the_aggregation_purges_the_repartition_records_it_committed(settings: Settings,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import streamml.query.ksql_repartition as kr

    monkeypatch.setattr(kr, "PURGE_INTERVAL_S", 0.0)  # every committed batch (the default waits 30 s)
    q.use(settings)
    topic = f"{settings.namespace}-pay-purge"
    ensure_topic(settings, topic, 3)
    data = [(i % 3, i, {"card": CARDS[i % 5], "amount": 1.0, "ts": T0 + i}) for i in range(30)]
    _produce(settings, topic, data)
    src = "PAY_" + uuid.uuid4().hex[:8].upper()
    q.sql(f"CREATE STREAM {src} (id BIGINT KEY, card VARCHAR, amount DOUBLE, ts BIGINT) "
          f"WITH (kafka_topic='{topic}', value_format='JSON', timestamp='ts');")
    name = "P_" + uuid.uuid4().hex[:6].upper()
    stmt = f"CREATE TABLE {name} AS SELECT card, COUNT(*) AS n FROM {src} GROUP BY card EMIT CHANGES;"
    query = compile_query(stmt, settings)
    assert query.pipeline.purge_source == 0.0
    c = clients.consumer(settings, f"verify-{time.time_ns()}")

    def low() -> list[int]:
        from confluent_kafka import TopicPartition

        return [c.get_watermark_offsets(TopicPartition(query.source.topic, p), timeout=10)[0] for p in range(3)]

    with q.deploy(stmt, max_batch=4) as d:
        d.wait(len(data), timeout=60)
        _until(lambda: sum(low()) >= len(data), timeout=30)  # every re-keyed record deleted once committed
    c.close()
    got = rows(query, [(x["key"], x["value"]) for x in drain(settings, name, expect=len(data))])
    assert sorted(got.group_by("CARD").agg(pl.col("N").max()).rows()) == [(card, 6) for card in CARDS]
