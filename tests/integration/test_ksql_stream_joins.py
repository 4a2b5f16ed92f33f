"""ksqlDB stream-stream joins (WITHIN) against a real broker: the preview's rows equal the deployed
pipeline's rows, for INNER (pairs within the window) and LEFT (unmatched left records written
with nulls once stream time passes their window and grace)."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from helpers import drain

import streamml.query as q
from streamml import headers as H
from streamml.config import Settings
from streamml.kafka import clients, ensure_topic
from streamml.query.ksql_compile import rows
from streamml.query.ksql_run import compile_query

T = 1_700_000_000_000
S = 1000
# (side, key, value, ts): k1 and k4 match within 10 s; k2's shipment is 19 s late (outside); k3, k9 unmatched
DATA = [("o", "k1", 10.0, T), ("o", "k2", 20.0, T + 1 * S), ("o", "k3", 30.0, T + 2 * S), ("o", "k4", 40.0, T + 5 * S),
        ("s", "k1", "ams", T + 3 * S), ("s", "k2", "ber", T + 20 * S), ("s", "k9", "cph", T + 4 * S),
        ("s", "k4", "dub", T + 6 * S)]
FLUSH = [("o", "zz", 0.0, T + 600 * S), ("s", "zy", "x", T + 600 * S)]  # moves stream time past every window


def _produce(settings: Settings, topics: dict[str, str], records: list[tuple[str, str, object, int]]) -> None:
    p = clients.producer(settings)
    for side, k, v, ts in records:
        value = {"amount": v, "ts": ts} if side == "o" else {"wh": v, "ts": ts}
        p.produce(topics[side], orjson.dumps(value), k.encode(), partition=0, timestamp=ts)
    assert p.flush(30) == 0


def _sorted(rs: list[dict]) -> list[dict]:
    return sorted(rs, key=lambda r: (r["ID"], str(r.get("WH"))))


@pytest.mark.parametrize("how, expected", [
    ("JOIN", [("k1", 10.0, "ams"), ("k4", 40.0, "dub")]),
    ("LEFT JOIN", [("k1", 10.0, "ams"), ("k4", 40.0, "dub"), ("k2", 20.0, None), ("k3", 30.0, None)]),
])
def test_stream_stream_join_preview_equals_deployed(settings: Settings, how: str, expected: list[tuple]) -> None:
    topics = {"o": f"{settings.namespace}-orders", "s": f"{settings.namespace}-ships"}
    for t in topics.values():
        ensure_topic(settings, t, 1)
    q.use(settings)
    o, s = "O_" + uuid.uuid4().hex[:6].upper(), "S_" + uuid.uuid4().hex[:6].upper()
    q.sql(f"CREATE STREAM {o} (id VARCHAR KEY, amount DOUBLE, ts BIGINT) WITH (kafka_topic='{topics['o']}', "
          f"value_format='JSON', timestamp='ts'); "
          f"CREATE STREAM {s} (id VARCHAR KEY, wh VARCHAR, ts BIGINT) WITH (kafka_topic='{topics['s']}', "
          f"value_format='JSON', timestamp='ts');")
    name = "J_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE STREAM {name} AS SELECT o.id AS id, o.amount, s.wh FROM {o} o {how} {s} s "
            f"WITHIN 10 SECONDS GRACE PERIOD 1 MINUTE ON o.id = s.id EMIT CHANGES;")
    query = compile_query(stmt, settings)
    _produce(settings, topics, DATA)
    pairs = 2
    with q.deploy(stmt, max_batch=3) as d:
        d.wait(pairs, timeout=60)  # every data record joined before the flush records arrive
        _produce(settings, topics, FLUSH)
        d.wait(len(expected), timeout=60)
    recs = drain(settings, query.sink, expect=len(expected))
    deployed = rows(query, [(r["key"], r["value"]) for r in recs]).to_dicts()
    preview = q.sql(stmt).to_dicts()
    assert _sorted(deployed) == _sorted(preview)
    assert sorted((r["ID"], r["AMOUNT"], r["WH"]) for r in preview) == sorted(expected, key=str)
    assert sorted(r["key"] for r in recs) == sorted(e[0].encode() for e in expected)
    times = {r["key"]: r["headers"].get(H.EVENT_TIME) for r in recs}
    assert times[b"k1"] == str(T + 3 * S)  # a pair's event time: the later of the two


def test_left_join_restart_restores_buffers_from_the_changelog(settings: Settings) -> None:
    """Stopped after the data (unmatched k2, k3 buffered), its local store deleted, started again:
    the buffers come back from the changelog and the flush writes k2, k3 once, nothing twice."""
    import shutil

    from streamml.stream.state import store_dir

    topics = {"o": f"{settings.namespace}-orders", "s": f"{settings.namespace}-ships"}
    for t in topics.values():
        ensure_topic(settings, t, 1)
    q.use(settings)
    o, s = "O_" + uuid.uuid4().hex[:6].upper(), "S_" + uuid.uuid4().hex[:6].upper()
    q.sql(f"CREATE STREAM {o} (id VARCHAR KEY, amount DOUBLE, ts BIGINT) WITH (kafka_topic='{topics['o']}', "
          f"timestamp='ts'); CREATE STREAM {s} (id VARCHAR KEY, wh VARCHAR, ts BIGINT) "
          f"WITH (kafka_topic='{topics['s']}', timestamp='ts');")
    name = "J_" + uuid.uuid4().hex[:6].upper()
    stmt = (f"CREATE STREAM {name} AS SELECT o.id AS id, o.amount, s.wh FROM {o} o LEFT JOIN {s} s "
            f"WITHIN 10 SECONDS GRACE PERIOD 1 MINUTE ON o.id = s.id EMIT CHANGES;")
    query = compile_query(stmt, settings)
    _produce(settings, topics, DATA)
    with q.deploy(stmt, max_batch=3) as d:
        d.wait(2, timeout=60)
        deadline = time.monotonic() + 60
        while d.stats["in"] < len(DATA) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert d.stats["in"] == len(DATA)
    shutil.rmtree(store_dir(settings, query.pipeline.name), ignore_errors=True)
    _produce(settings, topics, FLUSH)
    with q.deploy(stmt, max_batch=3) as d:
        d.wait(2, timeout=60)
    recs = drain(settings, query.sink, expect=4)
    out = rows(query, [(r["key"], r["value"]) for r in recs]).to_dicts()
    got = sorted((r["ID"], r["AMOUNT"], r["WH"]) for r in out)
    assert got == sorted([("k1", 10.0, "ams"), ("k4", 40.0, "dub"), ("k2", 20.0, None), ("k3", 30.0, None)], key=str)
