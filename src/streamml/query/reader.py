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

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence, Union

import polars as pl
from confluent_kafka import KafkaError as CKError
from confluent_kafka import IsolationLevel, KafkaException, Message, TopicPartition
from confluent_kafka.admin import OffsetSpec

from streamml.config import Settings
from streamml.errors import KafkaError, QueryError, ValidationError
from streamml.kafka import clients
from streamml.kafka.errors import classify

__all__ = ["Span", "Bound", "META_COLUMNS", "as_millis", "partitions", "spans", "read_spans", "frame",
           "decode_values"]

#: Metadata columns added after the value columns, in this order.
META_COLUMNS = ("_topic", "_partition", "_offset", "_timestamp", "_key")
META_SCHEMA: dict[str, Any] = {"_topic": pl.String, "_partition": pl.Int32, "_offset": pl.Int64,
                               "_timestamp": pl.Datetime("ms", "UTC"), "_key": pl.String}

#: A bound: an offset (negative: that many before the end), a time, or per-partition offsets.
Bound = Union[int, datetime, str, Mapping[int, int], None]


@dataclass(frozen=True)
class Span:
    """Offsets ``[start, end)`` of one partition."""

    topic: str
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def as_millis(when: datetime | str | int | float) -> int:
    """A time as milliseconds since the epoch (naive datetimes are UTC)."""
    if isinstance(when, (int, float)):
        return int(when)
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise QueryError(f"not an ISO time: {when!r}", hint="e.g. '2026-01-01T12:00:00Z'") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def partitions(settings: Settings, topic: str, timeout: float = 10.0, client: Any = None) -> list[int]:
    """The partition ids of ``topic``."""
    try:
        md = (client or clients.admin(settings)).list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise classify(exc, "cannot reach Kafka: ") from None
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise QueryError(f"topic {topic} does not exist", hint="list topics with `streamml topics`")
    return sorted(t.partitions)


def _list_offsets(client: Any, specs: dict[TopicPartition, Any], timeout: float) -> dict[int, int]:
    if not specs:
        return {}
    futures = client.list_offsets(specs, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout)
    out = {}
    for tp, fut in futures.items():
        try:
            out[tp.partition] = fut.result().offset
        except KafkaException as exc:
            raise classify(exc, f"cannot list offsets of {tp.topic}: ") from None
    return out


def spans(settings: Settings, topic: str, start: Bound = None, end: Bound = None,
          timeout: float = 15.0) -> list[Span]:
    """Pin the spans of every partition of ``topic`` between ``start`` and ``end``.

    ``start``/``end``: ``None`` (the beginning / the last stable offset now), an offset
    (the same for every partition; a negative one counts back from the end), a
    ``datetime`` or ISO string (the first record at or after that time), or a mapping
    partition -> offset.
    """
    client = clients.admin(settings)
    parts = partitions(settings, topic, timeout, client)
    tps = [TopicPartition(topic, p) for p in parts]
    low = _list_offsets(client, {tp: OffsetSpec.earliest() for tp in tps}, timeout)
    high = _list_offsets(client, {tp: OffsetSpec.latest() for tp in tps}, timeout)

    def at(bound: Bound, default: dict[int, int]) -> dict[int, int]:
        if bound is None:
            return dict(default)
        if isinstance(bound, Mapping):
            return {p: int(bound.get(p, default[p])) for p in parts}
        if isinstance(bound, bool):
            raise QueryError("an offset bound must be a number, a time or a mapping")
        if isinstance(bound, int):
            return {p: (high[p] + bound if bound < 0 else bound) for p in parts}
        ms = as_millis(bound)
        found = _list_offsets(client, {tp: OffsetSpec.for_timestamp(ms) for tp in tps}, timeout)
        return {p: (found[p] if found[p] >= 0 else high[p]) for p in parts}

    s, e = at(start, low), at(end, high)
    return [Span(topic, p, max(low[p], min(s[p], high[p])), max(low[p], min(e[p], high[p]))) for p in parts]


def read_spans(settings: Settings, spans_: Sequence[Span], timeout: float = 60.0,
               limit_per_partition: int | None = None) -> list[Message]:
    """Read the records of ``spans_`` (committed ones only), in partition then offset order."""
    todo = [s for s in spans_ if s.size > 0]
    if not todo:
        return []
    c = clients.consumer(settings, f"streamml-query-{uuid.uuid4().hex[:12]}", enable_partition_eof=True,
                         fetch_wait_max_ms=10)
    ends = {(s.topic, s.partition): s.end for s in todo}
    if limit_per_partition is not None:
        ends = {k: min(v, next(s.start for s in todo if (s.topic, s.partition) == k) + limit_per_partition)
                for k, v in ends.items()}
    got: dict[tuple[str, int], list[Message]] = {k: [] for k in ends}
    open_ = set(ends)
    try:
        c.assign([TopicPartition(s.topic, s.partition, s.start) for s in todo])
        deadline = time.monotonic() + timeout
        while open_:
            if time.monotonic() > deadline:
                raise KafkaError(f"reading a snapshot timed out after {timeout:.0f}s "
                                 f"({len(open_)} partition(s) unfinished)", code="_TIMED_OUT")
            for m in c.consume(5000, timeout=0.05):
                key = (m.topic(), m.partition())
                err = m.error()
                if err is not None:
                    if err.code() == CKError._PARTITION_EOF:
                        open_.discard(key)
                        continue
                    raise classify(KafkaException(err), "while reading a snapshot: ")
                if key not in open_:
                    continue
                if m.offset() < ends[key]:
                    got[key].append(m)
                if m.offset() >= ends[key] - 1:
                    open_.discard(key)
    finally:
        c.close()
    return [m for k in sorted(got) for m in got[k]]


def _json_decoder() -> Any:
    try:
        from streamml.schema.batch import decode_json
    except ImportError:  # pragma: no cover - the codec module is part of the package
        decode_json = None
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
