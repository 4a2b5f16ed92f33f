"""Chunk decoding for file ingest: the fast (whole chunk) and slow (line by line) paths agree."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from streamml.ingest.decode import RecordSpec, decode_csv, decode_jsonl, decode_table
from streamml.schema import Field, Schema, codec_for

S = Schema("p", [Field("id", int), Field("amount", float, min=0), Field("cur", str, enum=["EUR", "USD"]),
                 Field("note", str, required=False)])


def _lines(rows: list[object]) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def test_clean_jsonl_chunk_takes_whole_chunk_and_keeps_original_bytes() -> None:
    chunk = _lines([{"id": i, "amount": i / 2, "cur": "EUR", "ts": 1000 + i} for i in range(100)])
    d = decode_jsonl(chunk, 10, RecordSpec(S, key="cur", time="ts"))
    assert d.ok.all() and len(d) == 100
    assert d.values == chunk.split(b"\n")[:-1]
    assert list(d.positions) == list(range(10, 110))
    assert d.keys == [b"EUR"] * 100 and d.times == [1000 + i for i in range(100)]


def test_poisoned_jsonl_chunk_names_every_bad_line_and_keeps_the_rest() -> None:
    rows = [{"id": 1, "amount": 1.0, "cur": "EUR"}, b'{"id": 2, "amount": ', {"id": "3", "amount": 1.0, "cur": "EUR"},
            b'{"id": 4, "amount": 1.0, "cur": "\xff"}', {"id": 5, "cur": "EUR"}, b"", b"[1, 2]",
            {"id": 6, "amount": -1.0, "cur": "EUR"}, {"id": 7, "amount": 2.0, "cur": "USD", "note": None}]
    d = decode_jsonl(_lines(rows), 1, RecordSpec(S))
    assert d.positions == [1, 2, 3, 4, 5, 7, 8, 9]          # the blank line 6 is not a record
    assert d.ok.tolist() == [True, False, False, False, False, False, False, True]
    assert d.reasons[1].startswith("malformed JSON")
    assert d.reasons[2] == "field 'id': expected int, got str"
    assert d.reasons[3] == "invalid UTF-8 at byte 33"
    assert d.reasons[4] == "missing required field 'amount'"
    assert d.reasons[5] == "expected a JSON object, got an array"
    assert d.reasons[6] == "field 'amount': -1.0 is below the minimum 0"


def test_fast_and_slow_jsonl_paths_decide_alike() -> None:
    rows = [{"id": i, "amount": (i % 7) - 1.0, "cur": ["EUR", "USD", "GBP"][i % 3]} for i in range(60)]
    clean = decode_jsonl(_lines(rows), 1, RecordSpec(S))                 # fast path (valid JSON, Arrow types)
    poisoned = decode_jsonl(_lines(rows + [b"{oops"]), 1, RecordSpec(S))  # forces the line-by-line path
    assert clean.ok.tolist() == poisoned.ok.tolist()[:60]
    assert clean.reasons == {i: r for i, r in poisoned.reasons.items() if i < 60}
    expected = [not S.errors(r) for r in rows]
    assert clean.ok.tolist() == expected


def test_csv_conversion_and_malformed_lines() -> None:
    chunk = b"1,2.5,EUR,hi\n2,x,EUR,\n3,1.0\n4,1.0,USD,\"a,b\"\n5,1.0,EUR,\xff\n6,-2,EUR,\n"
    d = decode_csv(chunk, 2, ["id", "amount", "cur", "note"], RecordSpec(S))
    assert d.positions == [2, 3, 4, 5, 6, 7]
    assert d.ok.tolist() == [True, False, False, True, False, False]
    assert d.reasons[1] == "field 'amount': 'x' is not a valid float"
    assert d.reasons[2] == "malformed CSV line: expected 4 fields, got 2"
    assert d.reasons[4].startswith("invalid UTF-8")
    assert d.reasons[5] == "field 'amount': -2.0 is below the minimum 0"
    assert json.loads(d.values[0]) == {"id": 1, "amount": 2.5, "cur": "EUR", "note": "hi"}
    assert json.loads(d.values[3])["note"] == "a,b"
    assert d.originals[2] == b"3,1.0"


def test_clean_csv_fast_path_matches_slow_path() -> None:
    body = b"".join(b"%d,%d.5,EUR,n%d\n" % (i, i, i) for i in range(50))
    fast = decode_csv(body, 2, ["id", "amount", "cur", "note"], RecordSpec(S))
    slow = decode_csv(body + b"\xff\n", 2, ["id", "amount", "cur", "note"], RecordSpec(S))
    assert fast.values == slow.values[:50] and fast.ok.all() and not slow.ok[50]


def test_parquet_tables_and_avro_wire_format() -> None:
    table = pa.table({"id": [1, 2, 3], "amount": [1.0, -1.0, 2.0], "cur": ["EUR", "EUR", "XXX"]})
    avro = codec_for("avro", S)
    d = decode_table(table, 100, RecordSpec(S, codec=avro))
    assert d.positions == [100, 101, 102] and d.ok.tolist() == [True, False, False]
    assert avro.decode(d.values[0]) == {"id": 1, "amount": 1.0, "cur": "EUR", "note": None}
    assert json.loads(d.originals[1]) == {"id": 2, "amount": -1.0, "cur": "EUR"}


def test_event_time_column_must_parse() -> None:
    chunk = _lines([{"id": 1, "amount": 1.0, "cur": "EUR", "ts": "2024-01-01T00:00:00Z"},
                    {"id": 2, "amount": 1.0, "cur": "EUR", "ts": "soon"},
                    {"id": 3, "amount": 1.0, "cur": "EUR"}])
    d = decode_jsonl(chunk, 1, RecordSpec(S, time="ts"))
    assert d.ok.tolist() == [True, False, False]
    assert d.times is not None and d.times[0] == 1704067200000
    assert np.all([("event-time column 'ts'" in d.reasons[i]) for i in (1, 2)])
