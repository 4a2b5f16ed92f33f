"""Bounded reads of topics: pin offset spans, read them, decode them batch-wise.

A snapshot is pinned when it is asked for: each partition's span is ``[start, end)``
with ``end`` the partition's last stable offset at that moment (``read_committed``: the
offset below which every transaction is decided), so a snapshot never waits for an open
transaction and never grows while it is read. Reading stops for a partition when its
position reaches ``end`` or the consumer reports the partition's end.

Records become one table: the JSON object values become columns (decoded in one call),
then the metadata columns :data:`META_COLUMNS` follow.

>>> Span("ns.raw.p", 0, 5, 9).size
4
>>> as_millis("2026-01-01T00:00:00Z")
1767225600000
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import polars as pl
from confluent_kafka import Message

from streamml.config import Settings
from streamml.errors import ConfigError, QueryError, ValidationError
from streamml.kafka import read
from streamml.kafka.message import tp_of
from streamml.kafka.read import Bound, TopicRange

__all__ = ["Span", "Bound", "META_COLUMNS", "as_millis", "partitions", "spans", "read_spans", "frame",
           "decode_values"]

#: Metadata columns added after the value columns, in this order.
META_COLUMNS = ("_topic", "_partition", "_offset", "_timestamp", "_key")
META_SCHEMA: dict[str, Any] = {"_topic": pl.String, "_partition": pl.Int32, "_offset": pl.Int64,
                               "_timestamp": pl.Datetime("ms", "UTC"), "_key": pl.String}

#: Offsets ``[start, end)`` of one partition (the read layer's range).
Span = TopicRange


def as_millis(when: Any) -> int:
    """A time as milliseconds since the epoch (naive datetimes are UTC)."""
    try:
        return read.as_millis(when)
    except ConfigError as exc:
        raise QueryError(exc.message, hint=exc.hint) from None


def partitions(settings: Settings, topic: str, timeout: float = 10.0, client: Any = None) -> list[int]:
    """The partition ids of ``topic``."""
    return read.partitions(settings, topic, timeout=timeout, admin=client, error=QueryError)


def spans(settings: Settings, topic: str, start: Bound = None, end: Bound = None,
          timeout: float = 15.0) -> list[Span]:
    """Pin the spans of every partition of ``topic`` between ``start`` and ``end``.

    ``start``/``end``: ``None`` (the beginning / the last stable offset now), an offset
    (the same for every partition; a negative one counts back from the end), a
    ``datetime`` or ISO string (the first record at or after that time), or a mapping
    partition -> offset (see :func:`streamml.kafka.read.pin`).
    """
    try:
        return read.pin(settings, topic, start=start, end=end, timeout=timeout, error=QueryError)
    except ConfigError as exc:
        raise QueryError(exc.message, hint=exc.hint) from None


def read_spans(settings: Settings, spans_: Sequence[Span], timeout: float = 60.0,
               limit_per_partition: int | None = None) -> list[Message]:
    """Read the records of ``spans_`` (committed ones only), in partition then offset order."""
    todo = [s for s in spans_ if s.size > 0]
    if limit_per_partition is not None:
        todo = [Span(s.topic, s.partition, s.start, min(s.end, s.start + limit_per_partition)) for s in todo]
    got: dict[tuple[str, int], list[Message]] = {}
    for batch in read.read_ranges(settings, todo, max_messages=5000, timeout=timeout, idle_timeout=timeout,
                                  context="while reading a snapshot"):
        for m in batch:
            got.setdefault(tp_of(m), []).append(m)
    return [m for k in sorted(got) for m in got[k]]


def _json_decoder() -> Any:
    try:
        from streamml.schema.batch import decode_json
    except ImportError:  # pragma: no cover - the codec module is part of the package
        return None
    return decode_json


def decode_values(values: Sequence[bytes | None]) -> pl.DataFrame:
    """JSON object values -> columns, in one call; other values -> one ``_value`` string column.

    >>> decode_values([b'{"a": 1}', None, b'{"a": 2, "b": "x"}']).to_dicts()
    [{'a': 1, 'b': None}, {'a': None, 'b': None}, {'a': 2, 'b': 'x'}]
    >>> decode_values([b'7', b'hello']).to_dicts()
    [{'_value': '7'}, {'_value': 'hello'}]
    """
    if not values:
        return pl.DataFrame()
    filled = [v if v is not None else b"{}" for v in values]
    decode = _json_decoder()
    try:
        df: pl.DataFrame
        if decode is not None:
            df = decode(filled)
        else:  # pragma: no cover
            import io

            df = pl.read_ndjson(io.BytesIO(b"\n".join(filled)), infer_schema_length=None)
        if df.height == len(values):
            return df
    except (ValidationError, pl.exceptions.PolarsError, ValueError):
        pass
    return pl.DataFrame({"_value": [None if v is None else v.decode("utf-8", "replace") for v in values]},
                        schema={"_value": pl.String})


def frame(messages: Iterable[Message]) -> pl.DataFrame:
    """Messages -> one DataFrame: value columns, then :data:`META_COLUMNS`."""
    msgs = list(messages)
    meta = pl.DataFrame({
        "_topic": [m.topic() for m in msgs],
        "_partition": [m.partition() for m in msgs],
        "_offset": [m.offset() for m in msgs],
        "_timestamp": [m.timestamp()[1] for m in msgs],
        "_key": [None if (k := m.key()) is None else k.decode("utf-8", "replace") for m in msgs],
    }, schema={**META_SCHEMA, "_timestamp": pl.Int64})
    meta = meta.with_columns(pl.col("_timestamp").cast(pl.Datetime("ms", "UTC")))
    if not msgs:
        return meta
    values = decode_values([m.value() for m in msgs])
    values = values.drop([c for c in values.columns if c in META_SCHEMA])
    return pl.concat([values, meta], how="horizontal")
