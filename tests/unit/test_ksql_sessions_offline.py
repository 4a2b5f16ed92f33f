"""``WINDOW SESSION`` statements compiled and run on the TestDriver, with ksqlDB's expected rows.

The two cases are those of ksqlDB's own query-validation tests for session windows
("out of order - no grace period", "out of order - explicit grace period"): a record within the
gap extends its session (a tombstone on the old session's key, then the new row); a record
bridging nothing opens a session; with no GRACE PERIOD the default (24 hours) keeps old
sessions open; with GRACE PERIOD 1 MINUTE a session closes once stream time passes
end + gap + grace, after which records that would have joined it are late (dropped) or open a
new session. WINDOWSTART is the session's first event time, WINDOWEND its last. The key is
the KAFKA-format key followed by the session start and end, 8 bytes big-endian each.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest

from streamml.errors import QueryError
from streamml.query.ksql import parse_ksql
from streamml.query.ksql_compile import Catalog, Query, decode_record
from streamml.query.ksql_keys import decode_window_key
from streamml.query.ksql_pull import table_rows
from streamml.stream import TestDriver

# ksqlDB's tests set each record's ROWTIME; here the column RT is the declared timestamp
DDL = ("CREATE STREAM test (id BIGINT KEY, value BIGINT, rt BIGINT) "
       "WITH (kafka_topic='test_topic', value_format='JSON', timestamp='rt');")
INPUTS = [(0, 0, 0), (0, 1, 70010), (0, 5, 10009), (0, 6, 10010),
          (1, 100, 10009), (1, 101, 10010), (1, 200, 86412022), (1, 200, 60000)]  # (id, value, rowtime)
GRACE_INPUTS = [INPUTS[0], (0, 1, 100010), *INPUTS[2:]]  # ksqlDB's grace-period case


def compiled(window: str, emit: str = "CHANGES") -> Query:
    cat = Catalog()
    cat.execute(DDL)
    return cat.compile(f"CREATE TABLE s2 AS SELECT id, MAX(value) AS max, WINDOWSTART AS ws, WINDOWEND AS we "
                       f"FROM test WINDOW {window} GROUP BY id EMIT {emit};")


def play(q: Query, inputs: list[tuple[int, int, int]], batch: int = 1) -> tuple[list[Any], TestDriver]:
    """Rows as ksqlDB's tests assert them: (id, max, ws, we), or (id, None) for a tombstone.
    Records go in batches of up to ``batch`` consecutive records of one key."""
    d = TestDriver(q.pipeline)
    i = 0
    while i < len(inputs):
        key = inputs[i][0]
        run = [inputs[i]]
        while len(run) < batch and i + len(run) < len(inputs) and inputs[i + len(run)][0] == key:
            run.append(inputs[i + len(run)])
        d.send(*[{"value": v, "rt": t} for _, v, t in run], key=struct.pack(">q", key))
        i += len(run)
    out: list[Any] = []
    for res in d.results:
        for k, v in zip(res.keys, res.values):
            row = decode_record(q, k, v)
            out.append((row["ID"], None) if v is None else (row["ID"], row["MAX"], row["WS"], row["WE"]))
            if v is not None:
                assert (row["WINDOWSTART"], row["WINDOWEND"]) == (row["WS"], row["WE"])
    return out, d


def test_out_of_order_with_the_default_grace_period() -> None:
    out, d = play(compiled("SESSION (30 SECONDS)"), INPUTS)
    assert out == [(0, 0, 0, 0), (0, 1, 70010, 70010),
                   (0, None), (0, 5, 0, 10009),
                   (0, None), (0, 6, 0, 10010),
                   (1, 100, 10009, 10009),
                   (1, None), (1, 101, 10009, 10010),
                   (1, 200, 86412022, 86412022), (1, 200, 60000, 60000)]
    assert d.late == 0


def test_out_of_order_with_an_explicit_grace_period() -> None:
    out, d = play(compiled("SESSION (30 SECONDS, GRACE PERIOD 1 MINUTE)"), GRACE_INPUTS)
    # (0, 5, 10009), (1, 100, 10009) and (1, 200, 60000) are late; (0, 6, 10010) is not, but
    # session [0, 0] closed at stream time 100010 > 0 + 30 s + 1 min: it opens a new session
    assert out == [(0, 0, 0, 0), (0, 1, 100010, 100010), (0, 6, 10010, 10010), (1, 101, 10010, 10010),
                   (1, 200, 86412022, 86412022)]
    assert d.late == 3


def test_the_tombstone_deletes_the_old_session_key() -> None:
    q = compiled("SESSION (30 SECONDS)")
    _, d = play(q, INPUTS[:3])
    res = d.results[-1]                       # (0, 5, 10009) extended session [0, 0] to [0, 10009]
    assert res.values[0] is None and res.keys[0] == struct.pack(">qqq", 0, 0, 0)
    assert res.keys[1] == struct.pack(">qqq", 0, 0, 10009)
    assert decode_window_key(res.keys[1], "BIGINT", "session") == (0, 0, 10009)


@pytest.mark.parametrize("batch", [2, 3, 4])
@pytest.mark.parametrize("window", ["SESSION (30 SECONDS)", "SESSION (30 SECONDS, GRACE PERIOD 1 MINUTE)"])
def test_rows_do_not_depend_on_the_batches(window: str, batch: int) -> None:
    q = compiled(window)
    for inputs in (INPUTS, GRACE_INPUTS):
        assert play(q, inputs, batch)[0] == play(q, inputs)[0]


def test_emit_final_writes_each_closed_session_once() -> None:
    q = compiled("SESSION (30 SECONDS, GRACE PERIOD 1 MINUTE)", emit="FINAL")
    out, d = play(q, GRACE_INPUTS)
    # [0, 0] closes at stream time 100010; the rest when stream time jumps to 86412022
    assert out == [(0, 0, 0, 0), (0, 6, 10010, 10010), (1, 101, 10010, 10010), (0, 1, 100010, 100010)]
    assert d.late == 3


def test_having_on_sessions_and_the_aggregates_of_tumbling_windows() -> None:
    cat = Catalog()
    cat.execute(DDL)
    q = cat.compile("CREATE TABLE s3 AS SELECT id, COUNT(*) AS n, SUM(value) AS total, AVG(value) AS mean, "
                    "MIN(value) AS lo, COUNT_DISTINCT(value) AS distinct_values, STDDEV_SAMP(value) AS sd, "
                    "LATEST_BY_OFFSET(value) AS latest, EARLIEST_BY_OFFSET(value) AS earliest, "
                    "TOPK(value, 2) AS top2, COLLECT_LIST(value) AS all_values FROM test "
                    "WINDOW SESSION (30 SECONDS) GROUP BY id HAVING COUNT(*) > 1 EMIT CHANGES;")
    d = TestDriver(q.pipeline)
    for value, rowtime in [(4, 1000), (6, 2000), (6, 3000)]:
        d.send({"value": value, "rt": rowtime}, key=struct.pack(">q", 7))
    rows = [decode_record(q, k, v) for res in d.results for k, v in zip(res.keys, res.values)]
    assert [r["_tombstone"] for r in rows] == [True, True, False, True, False]  # HAVING fails, then merges
    last = rows[-1]
    assert (last["WINDOWSTART"], last["WINDOWEND"], last["N"], last["TOTAL"], last["LO"]) == (1000, 3000, 3, 16, 4)
    assert (last["DISTINCT_VALUES"], last["LATEST"], last["EARLIEST"], last["TOP2"], last["ALL_VALUES"]) == \
        (2, 6, 4, [6, 6], [4, 6, 6])
    assert last["MEAN"] == pytest.approx(16 / 3) and last["SD"] == pytest.approx(1.1547005383792515)


@pytest.mark.parametrize("window, message", [
    ("SESSION (SIZE 30 SECONDS)", "without SIZE"),
    ("SESSION (30 SECONDS, ADVANCE BY 10 SECONDS)", "expected GRACE PERIOD or RETENTION"),
    ("SESSION (30 SECONDS, GRACE PERIOD 10 SECONDS, RETENTION 20 SECONDS)", "RETENTION .* at least the session gap"),
    ("SESSION ()", "expected a duration"),
])
def test_session_clause_refusals(window: str, message: str) -> None:
    with pytest.raises(QueryError, match=message) as info:
        parse_ksql(f"CREATE TABLE x AS SELECT id, COUNT(*) FROM test WINDOW {window} GROUP BY id EMIT CHANGES")
    assert info.value.hint or "position" in info.value.message


def test_a_materialised_session_table_holds_only_the_live_sessions() -> None:
    q = compiled("SESSION (30 SECONDS)")
    _, d = play(q, INPUTS)
    state = table_rows(q, [(k, v) for res in d.results for k, v in zip(res.keys, res.values)])
    assert state.select("ID", "WINDOWSTART", "WINDOWEND", "MAX").rows() == [
        (0, 0, 10010, 6), (0, 70010, 70010, 1), (1, 10009, 10010, 101), (1, 60000, 60000, 200),
        (1, 86412022, 86412022, 200)]
