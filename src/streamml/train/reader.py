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
        return sum(map(len, filter(None, self.values)))


def _partitions(settings: Settings, topic: str, timeout: float) -> list[int]:
    from streamml.kafka.admin import metadata

    md = metadata(clients.admin(settings), timeout, topic)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise ConfigError(f"topic {topic} does not exist",
                          hint="check the name (streamml kafka status lists topics)")
    return sorted(t.partitions)


def _list_offsets(settings: Settings, specs: dict[TopicPartition, OffsetSpec], timeout: float) -> dict[tuple[str, int], int]:
    from streamml.kafka.admin import list_offsets

    return list_offsets(clients.admin(settings), specs, timeout=timeout)


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
    with_offsets: bool = True,
) -> Iterator[RawBatch]:
    """Replay ``ranges`` in order (topic, partition, offset), ``batch_rows`` values at a time.

    All partitions are fetched at once (one consumer, every range assigned); batches are
    still emitted partition by partition, later partitions buffering and pausing when
    they get ahead, so memory stays near ``2 * batch_rows`` values per partition.

    ``headers``: ``"all"`` inspects every record's headers for schema versions and
    pipeline hashes, ``"sample"`` the first and last record of each consumed batch,
    ``"none"`` skips them. ``on_progress(records, bytes)`` is called per consumed batch.
    ``with_records`` also returns each record's key and headers, and keeps tombstones
    (``None`` values), which are otherwise skipped. ``with_offsets=False`` leaves
    ``RawBatch.offsets`` empty (one call per record less).
    Raises :class:`KafkaError` when a partition stops short of its range for
    ``idle_timeout`` seconds (data deleted by retention, or a transaction left open).
    """
    todo = [r for r in sorted(ranges) if len(r) > 0]
    if not todo:
        return
    c = clients.consumer(settings, f"streamml-dataset-{uuid.uuid4().hex[:12]}",
                         enable_partition_eof=True, fetch_max_bytes=64 * 1024 * 1024,
                         max_partition_fetch_bytes=16 * 1024 * 1024,
                         queued_max_messages_kbytes=128 * 1024)
    try:
        while todo:  # waves of distinct partitions (a partition listed twice is read twice, in order)
            wave, seen, rest = [], set(), []
            for r in todo:
                (rest if (r.topic, r.partition) in seen else wave).append(r)
                seen.add((r.topic, r.partition))
            todo = rest
            yield from _read_wave(c, wave, batch_rows, with_timestamps, headers, on_progress, idle_timeout,
                                  with_records, with_offsets)
    finally:
        c.close()


class _Part:
    """One partition's read state and buffered values."""

    def __init__(self, r: TopicRange, with_ts: bool, with_records: bool, headers: str, with_offsets: bool,
                 count_bytes: bool) -> None:
        self.r, self.with_ts, self.with_records, self.headers = r, with_ts, with_records, headers
        self.with_offsets, self.count_bytes = with_offsets, count_bytes
        self.pos = r.start
        self.done = False
        self.paused = False
        self.values: list[Any] = []
        self.offsets: list[int] = []
        self.stamps: list[int] = []
        self.keys: list[Any] = []
        self.hdrs: list[Any] = []
        self.schemas: set[str] = set()
        self.hashes: set[str] = set()

    def eof(self, offset: int) -> None:
        self.pos = max(self.pos, offset)
        if offset >= self.r.end:
            self.done = True

    def add(self, msgs: list[Any]) -> int:
        if self.done:
            return 0
        if msgs[0].offset() < self.pos:  # re-fetched after a seek
            msgs = [m for m in msgs if m.offset() >= self.pos]
            if not msgs:
                return 0
        if msgs[-1].offset() >= self.r.end:
            msgs = [m for m in msgs if m.offset() < self.r.end]
            self.done = True
            if not msgs:
                return 0
        vals = [m.value() for m in msgs]
        self.pos = max(self.pos, msgs[-1].offset() + 1)
        if not self.with_records and None in vals:  # tombstones carry no row
            msgs = [m for m, v in zip(msgs, vals) if v is not None]
            vals = [v for v in vals if v is not None]
        if self.pos >= self.r.end:
            self.done = True
        if not msgs:
            return 0
        self.values.extend(vals)
        if self.with_offsets:
            self.offsets.extend([m.offset() for m in msgs])
        if self.with_ts:
            self.stamps.extend([m.timestamp()[1] for m in msgs])
        if self.with_records:
            self.keys.extend([m.key() for m in msgs])
            self.hdrs.extend([m.headers() for m in msgs])
        if self.headers != "none":
            _scan_headers(msgs if self.headers == "all" else (msgs[0], msgs[-1]), self.schemas, self.hashes)
        return sum(map(len, filter(None, vals))) if self.count_bytes else 0

    def take(self, n: int | None = None) -> RawBatch:
        n = len(self.values) if n is None else n
        b = RawBatch(self.r.topic, self.r.partition, self.values[:n], self.offsets[:n],
                     self.stamps[:n] if self.with_ts else None, self.schemas, self.hashes,
                     self.keys[:n] if self.with_records else None, self.hdrs[:n] if self.with_records else None)
        del self.values[:n], self.offsets[:n], self.stamps[:n], self.keys[:n], self.hdrs[:n]
        self.schemas, self.hashes = set(), set()
        return b


def _read_wave(c: Any, wave: list[TopicRange], batch_rows: int, with_ts: bool, headers: str,
               on_progress: Callable[[int, int], None] | None, idle_timeout: float,
               with_records: bool, with_offsets: bool = True) -> Iterator[RawBatch]:
    parts = {(r.topic, r.partition): _Part(r, with_ts, with_records, headers, with_offsets, on_progress is not None)
             for r in wave}
    single = wave[0] if len(wave) == 1 else None
    one_topic = len({r.topic for r in wave}) == 1
    by_key: dict[Any, _Part] = {(k[1] if one_topic else k): p for k, p in parts.items()}
    order = [parts[(r.topic, r.partition)] for r in wave]
    c.assign([TopicPartition(r.topic, r.partition, r.start) for r in wave])
    k = 0
    last = time.monotonic()
    cap = 2 * batch_rows
    try:
        while k < len(order):
            cur = order[k]
            while len(cur.values) >= batch_rows:
                yield cur.take(batch_rows)
            if cur.done:
                if cur.values:
                    yield cur.take()
                k += 1
                if k < len(order) and order[k].paused:
                    nxt = order[k]
                    tp = TopicPartition(nxt.r.topic, nxt.r.partition, nxt.pos)
                    c.resume([tp])
                    c.seek(tp)
                    nxt.paused = False
                continue
            msgs = c.consume(20_000, timeout=0.02)
            if not msgs:
                if time.monotonic() - last > idle_timeout:
                    raise KafkaError(f"{cur.r.key()}: no data past offset {cur.pos} (range ends at {cur.r.end}) "
                                     f"for {idle_timeout:.0f}s",
                                     hint="the records were deleted by retention, or a transaction is still open")
                continue
            last = time.monotonic()
            if single is not None:
                part = parts[(single.topic, single.partition)]
                good = [m for m in msgs if m.error() is None]
                errs = [m for m in msgs if m.error() is not None] if len(good) != len(msgs) else []
                for m in errs:
                    if m.error().code() != CKError._PARTITION_EOF:
                        raise classify(KafkaException(m.error()), f"reading {single.key()}: ")
                nbytes = part.add(good) if good else 0
                for m in errs:
                    part.eof(m.offset())
                if on_progress is not None and good:
                    on_progress(len(good), nbytes)
                continue
            run: list[Any] = []
            run_key: Any = None
            nbytes = nrec = 0
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() != CKError._PARTITION_EOF:
                        raise classify(KafkaException(err), f"reading {m.topic()}/{m.partition()}: ")
                    part = by_key.get(m.partition() if one_topic else (m.topic(), m.partition()))
                    if part is not None:
                        if run:
                            nbytes += by_key[run_key].add(run)
                            nrec += len(run)
                            run, run_key = [], None
                        part.eof(m.offset())
                    continue
                key = m.partition() if one_topic else (m.topic(), m.partition())
                if key != run_key:
                    if run:
                        nbytes += by_key[run_key].add(run)
                        nrec += len(run)
                    run, run_key = [], key
                run.append(m)
            if run:
                nbytes += by_key[run_key].add(run)
                nrec += len(run)
            if on_progress is not None and nrec:
                on_progress(nrec, nbytes)
            for p in order[k + 1:]:
                if not p.paused and not p.done and len(p.values) >= cap:
                    c.pause([TopicPartition(p.r.topic, p.r.partition)])
                    p.paused = True
    finally:
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
