"""A whole-batch JSON codec: many Kafka message values <-> one Polars DataFrame in one call.

Python pays per message; this codec pays per batch. ``decode_json`` joins the values
with newlines and lets Polars' Rust NDJSON reader parse them at once; ``encode_json``
writes NDJSON from Rust and splits it back into one ``bytes`` per row.

>>> df = decode_json([b'{"a": 1, "b": "x"}', b'{"a": 2}'])
>>> df.to_dicts()
[{'a': 1, 'b': 'x'}, {'a': 2, 'b': None}]
>>> encode_json(df)
[b'{"a":1,"b":"x"}', b'{"a":2,"b":null}']
>>> bad_rows([b'{"a": 1}', b'{oops', b'7'])
[1, 2]
"""

from __future__ import annotations

import io
from typing import Any, Mapping, Sequence

import orjson
import polars as pl

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
        joined = b"\n".join(orjson.dumps(orjson.loads(v)) for v in values)
    try:
        df = pl.read_ndjson(io.BytesIO(joined), schema=dict(schema) if schema else None,
                            infer_schema_length=None)
    except Exception as exc:  # polars raises ComputeError / SchemaError variants
        raise ValidationError(f"batch is not valid JSON lines: {str(exc).splitlines()[0]}",
                              hint="use bad_rows(values) to find the offending records") from None
    if df.height != len(values):
        raise ValidationError(f"decoded {df.height} rows from {len(values)} values")
    return df


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
    text = df.write_ndjson()
    data = text.encode() if isinstance(text, str) else text
    out = data.split(b"\n")
    if out and out[-1] == b"":
        out.pop()
    return out
