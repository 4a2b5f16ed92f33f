"""Reading exact offset ranges out of Kafka, committed data only, a batch at a time.

A :class:`TopicRange` is one partition's half-open offset interval ``[start, end)``.
:func:`resolve_ranges` pins the ranges of whole topics (by offsets or by record
timestamps, resolved through ``ListOffsets`` to exact offsets, with ``end`` at the
last stable offset so no open transaction is ever waited for), and :func:`read_ranges`
replays them in a fixed order: topic, partition, offset. Aborted transactional
records are never returned (the consumer is ``read_committed``); their offsets, and the
transaction markers, are simply gaps.

>>> r = TopicRange("ml.features.pay", 0, 10, 25)
>>> len(r), r.key()
(15, 'ml.features.pay/0')
>>> r.split_at(0.4)
(TopicRange(topic='ml.features.pay', partition=0, start=10, end=16), TopicRange(topic='ml.features.pay', partition=0, start=16, end=25))
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from confluent_kafka import KafkaError as CKError
from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from streamml.config import Settings
from streamml.errors import ConfigError, KafkaError
from streamml.kafka import clients
from streamml.kafka.errors import classify

__all__ = ["TopicRange", "RawBatch", "resolve_ranges", "read_ranges", "PIPELINE_HASH_HEADERS"]

#: Header names a features record may use to carry the hash of the pipeline that made it.
PIPELINE_HASH_HEADERS = ("sm.pipeline_hash", "sm.pipeline")
_SCHEMA_VERSION = "sm.schema_version"
_SCHEMA = "sm.schema"


@dataclass(frozen=True, order=True)
class TopicRange:
    """Offsets ``[start, end)`` of one partition."""

    topic: str
    partition: int
    start: int
    end: int

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    def key(self) -> str:
        return f"{self.topic}/{self.partition}"

    def split_at(self, fraction: float) -> tuple["TopicRange", "TopicRange"]:
        """Cut at ``fraction`` of the offsets (gaps from markers are not counted out)."""
        cut = self.start + int(round(len(self) * fraction))
        return (TopicRange(self.topic, self.partition, self.start, cut),
                TopicRange(self.topic, self.partition, cut, self.end))

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TopicRange":
        return cls(str(d["topic"]), int(d["partition"]), int(d["start"]), int(d["end"]))


@dataclass
class RawBatch:
    """Values read from one partition, in offset order, plus what the headers said."""

    topic: str
    partition: int
    values: list[bytes]
    offsets: list[int]
    timestamps: list[int] | None = None
    schema_versions: set[str] = field(default_factory=set)
    pipeline_hashes: set[str] = field(default_factory=set)
    keys: list[bytes | None] | None = None
    headers: list[Any] | None = None

    @property
    def nbytes(self) -> int:
        return sum(map(len, self.values))


def _partitions(settings: Settings, topic: str, timeout: float) -> list[int]:
    c = clients.admin(settings)
    try:
        md = c.list_topics(topic, timeout=timeout)
    except KafkaException as exc:
        raise classify(exc, f"cannot describe topic {topic}: ") from None
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise ConfigError(f"topic {topic} does not exist",
                          hint="check the name (streamml kafka status lists topics)")
    return sorted(t.partitions)


def _list_offsets(settings: Settings, specs: dict[TopicPartition, OffsetSpec], timeout: float) -> dict[tuple[str, int], int]:
    from confluent_kafka import IsolationLevel

    if not specs:
        return {}
    client = clients.admin(settings)
    try:
        futs = client.list_offsets(specs, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout)
        return {(tp.topic, tp.partition): fut.result().offset for tp, fut in futs.items()}
    except KafkaException as exc:
        raise classify(exc, "cannot list offsets: ") from None


def resolve_ranges(
    settings: Settings,
    topics: Sequence[str],
    *,
    partitions: Iterable[int] | None = None,
    start_time_ms: int | None = None,
    end_time_ms: int | None = None,
    timeout: float = 30.0,
) -> list[TopicRange]:
    """Pin the current contents of ``topics`` to exact offset ranges.

    Without times, each partition's range runs from its earliest offset to its last stable
    offset (the committed end). With ``start_time_ms``/``end_time_ms`` (record timestamps,
    ms), the bounds are the first offsets whose timestamp is at or after those times.
    """
    wanted = None if partitions is None else set(partitions)
    tps = [TopicPartition(t, p) for t in topics for p in _partitions(settings, t, timeout)
           if wanted is None or p in wanted]
    earliest = _list_offsets(settings, {tp: OffsetSpec.earliest() for tp in tps}, timeout)
    latest = _list_offsets(settings, {tp: OffsetSpec.latest() for tp in tps}, timeout)
    lo = dict(earliest)
    hi = dict(latest)
    if start_time_ms is not None:
        found = _list_offsets(settings, {tp: OffsetSpec.for_timestamp(int(start_time_ms)) for tp in tps}, timeout)
        lo = {k: (v if v >= 0 else hi[k]) for k, v in found.items()}
    if end_time_ms is not None:
        found = _list_offsets(settings, {tp: OffsetSpec.for_timestamp(int(end_time_ms)) for tp in tps}, timeout)
        hi = {k: (min(v, latest[k]) if v >= 0 else latest[k]) for k, v in found.items()}
    out = []
    for tp in tps:
        k = (tp.topic, tp.partition)
        start = max(lo[k], earliest[k])
        out.append(TopicRange(tp.topic, tp.partition, start, max(start, hi[k])))
    return sorted(out)


def read_ranges(
    settings: Settings,
    ranges: Sequence[TopicRange],
    *,
    batch_rows: int = 100_000,
    with_timestamps: bool = False,
    headers: str = "sample",
    on_progress: Callable[[int, int], None] | None = None,
    idle_timeout: float = 30.0,
    with_records: bool = False,
) -> Iterator[RawBatch]:
    """Replay ``ranges`` in order (topic, partition, offset), ``batch_rows`` values at a time.

    ``headers``: ``"all"`` inspects every record's headers for schema versions and
    pipeline hashes, ``"sample"`` the first and last record of each consumed batch,
    ``"none"`` skips them. ``on_progress(records, bytes)`` is called per consumed batch.
    ``with_records`` also returns each record's key and headers, and keeps tombstones
    (``None`` values), which are otherwise skipped.
    Raises :class:`KafkaError` when a partition stops short of its range for
    ``idle_timeout`` seconds (data deleted by retention, or a transaction left open).
    """
    todo = [r for r in sorted(ranges) if len(r) > 0]
    if not todo:
        return
    c = clients.consumer(settings, f"streamml-dataset-{uuid.uuid4().hex[:12]}",
                         enable_partition_eof=True, fetch_max_bytes=64 * 1024 * 1024,
                         max_partition_fetch_bytes=16 * 1024 * 1024,
                         queued_max_messages_kbytes=256 * 1024, fetch_wait_max_ms=10)
    try:
        for r in todo:
            yield from _read_one(c, r, batch_rows, with_timestamps, headers, on_progress, idle_timeout,
                                 with_records)
    finally:
        c.close()


def _read_one(c: Any, r: TopicRange, batch_rows: int, with_ts: bool, headers: str,
              on_progress: Callable[[int, int], None] | None, idle_timeout: float,
              with_records: bool = False) -> Iterator[RawBatch]:
    c.assign([TopicPartition(r.topic, r.partition, r.start)])
    values: list[bytes] = []
    offsets: list[int] = []
    stamps: list[int] = []
    keys: list[bytes | None] = []
    hdrs: list[Any] = []
    schemas: set[str] = set()
    hashes: set[str] = set()
    done = False
    last_progress = time.monotonic()
    position = r.start

    def flush() -> RawBatch:
        nonlocal values, offsets, stamps, schemas, hashes, keys, hdrs
        b = RawBatch(r.topic, r.partition, values, offsets, stamps if with_ts else None, schemas, hashes,
                     keys if with_records else None, hdrs if with_records else None)
        values, offsets, stamps, schemas, hashes, keys, hdrs = [], [], [], set(), set(), [], []
        return b

    while not done:
        msgs = c.consume(min(batch_rows, 20_000), timeout=0.02)
        if not msgs:
            if time.monotonic() - last_progress > idle_timeout:
                raise KafkaError(f"{r.key()}: no data past offset {position} (range ends at {r.end}) "
                                 f"for {idle_timeout:.0f}s",
                                 hint="the records were deleted by retention, or a transaction is still open")
            continue
        last_progress = time.monotonic()
        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.code() == CKError._PARTITION_EOF:
                position = max(position, m.offset())
                if m.offset() >= r.end:
                    done = True
            else:
                raise classify(KafkaException(err), f"reading {r.key()}: ")
        if good and good[-1].offset() >= r.end:
            good = [m for m in good if m.offset() < r.end]
            done = True
        if good:
            vals = [m.value() for m in good]
            if not with_records and None in vals:  # tombstones carry no row
                position = max(position, good[-1].offset() + 1)
                done = done or position >= r.end
                good = [m for m, v in zip(good, vals) if v is not None]
                vals = [v for v in vals if v is not None]
        if with_records and good:
            keys.extend([m.key() for m in good])
            hdrs.extend([m.headers() for m in good])
        if good:
            values.extend(vals)
            offs = [m.offset() for m in good]
            offsets.extend(offs)
            position = offs[-1] + 1
            if with_ts:
                stamps.extend([m.timestamp()[1] for m in good])
            if headers != "none":
                sample = good if headers == "all" else (good[0], good[-1])
                _scan_headers(sample, schemas, hashes)
            if on_progress is not None:
                on_progress(len(good), sum(map(len, filter(None, vals))))
            if position >= r.end:
                done = True
        if len(values) >= batch_rows or (done and values):
            yield flush()
    c.unassign()


def _scan_headers(msgs: Iterable[Any], schemas: set[str], hashes: set[str]) -> None:
    for m in msgs:
        hs = m.headers()
        if not hs:
            continue
        name = ver = None
        for k, v in hs:
            if k == _SCHEMA_VERSION:
                ver = v.decode() if isinstance(v, bytes) else str(v)
            elif k == _SCHEMA:
                name = v.decode() if isinstance(v, bytes) else str(v)
            elif k in PIPELINE_HASH_HEADERS and v:
                hashes.add(v.decode() if isinstance(v, bytes) else str(v))
        if ver is not None:
            schemas.add(f"{name}:{ver}" if name else ver)
