"""A whole-batch JSON codec: many Kafka message values <-> one Polars DataFrame in one call.

Python pays per message; this codec pays per batch. ``decode_json`` joins the values
with newlines and lets Polars' Rust NDJSON reader parse them at once; ``encode_json``
writes NDJSON from Rust and splits it back into one ``bytes`` per row.

>>> df = decode_json([b'{"a": 1, "b": "x"}', b'{"a": 2}'])
>>> df.to_dicts()
[{'a': 1, 'b': 'x'}, {'a': 2, 'b': None}]
>>> encode_json(df)
[b'{"a":1,"b":"x"}', b'{"a":2,"b":null}']
>>> decode_json([b'{"day": "2024-01-01", "n": 1}', b'{"n": 2.5, "new": true}']).to_dicts()
[{'day': '2024-01-01', 'n': 1.0, 'new': None}, {'day': None, 'n': 2.5, 'new': True}]
>>> bad_rows([b'{"a": 1}', b'{oops', b'7'])
[1, 2]
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.json as pj

from streamml.errors import ValidationError

__all__ = ["decode_json", "encode_json", "bad_rows"]


def decode_json(values: Sequence[bytes], schema: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """Decode JSON object values into one DataFrame (one row per value, in order).

    ``schema`` (column -> Polars dtype) fixes the columns and their types; without it they
    are inferred from the whole batch. Raises :class:`ValidationError` when a value is not
    a JSON object; :func:`bad_rows` tells which ones.
    """
    if not values:
        return pl.DataFrame(schema=dict(schema) if schema else None)
    joined = b"\n".join(values)
    if joined.count(b"\n") != len(values) - 1:  # a pretty-printed value: normalise the slow way
        try:
            joined = b"\n".join(orjson.dumps(orjson.loads(v)) for v in values)
        except orjson.JSONDecodeError:
            raise ValidationError("batch holds values that are not JSON") from None
    df = None if schema else _arrow(joined)
    if df is None:
        try:
            df = pl.read_ndjson(io.BytesIO(joined), schema=dict(schema) if schema else None,
                                infer_schema_length=None)
        except Exception as exc:  # polars raises ComputeError / SchemaError variants
            raise ValidationError(f"batch is not valid JSON lines: {str(exc).splitlines()[0]}",
                                  hint="use bad_rows(values) to find the offending records") from None
    if df.height != len(values):
        raise ValidationError(f"decoded {df.height} rows from {len(values)} values")
    return df


def _arrow(joined: bytes) -> pl.DataFrame | None:
    """Arrow's JSON reader (one block, one thread: the whole batch infers one schema).

    Strings that look like times stay strings (Arrow would make them timestamps); ``None``
    when Arrow cannot read the batch, so that the caller falls back to Polars' reader.
    """
    ro = pj.ReadOptions(use_threads=False, block_size=len(joined) + 1)
    try:
        table = pj.read_json(io.BytesIO(joined), read_options=ro)
        if "timestamp" in str(table.schema):
            stamps = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
            if not stamps:
                return None  # nested timestamps: let Polars read it
            po = pj.ParseOptions(explicit_schema=pa.schema([(n, pa.string()) for n in stamps]),
                                 unexpected_field_behavior="infer")
            order = table.schema.names
            table = pj.read_json(io.BytesIO(joined), read_options=ro, parse_options=po).select(order)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    df = pl.from_arrow(table)
    return df if isinstance(df, pl.DataFrame) else None


def bad_rows(values: Sequence[bytes]) -> list[int]:
    """Indexes of values that are not JSON objects (the slow, per-record check)."""
    out = []
    for i, v in enumerate(values):
        try:
            if not isinstance(orjson.loads(v), dict):
                out.append(i)
        except (orjson.JSONDecodeError, TypeError):
            out.append(i)
    return out


def encode_json(df: pl.DataFrame) -> list[bytes]:
    """Encode each row of ``df`` as one compact JSON object (bytes), in order."""
    if df.height == 0:
        return []
    buf = io.BytesIO()
    df.write_ndjson(buf)
    out = buf.getvalue().split(b"\n")
    if out and out[-1] == b"":
        out.pop()
    return out
