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
>>> [(part.start, part.end) for part in r.split_at(0.4)]
[(10, 16), (16, 25)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from streamml.config import Settings
from streamml.kafka.message import tp_of
from streamml.kafka.read import RangeReader, TopicRange, pin

__all__ = ["TopicRange", "RawBatch", "resolve_ranges", "read_ranges", "PIPELINE_HASH_HEADERS"]

#: Header names a features record may use to carry the hash of the pipeline that made it.
PIPELINE_HASH_HEADERS = ("sm.pipeline_hash", "sm.pipeline")
_SCHEMA_VERSION = "sm.schema_version"
_SCHEMA = "sm.schema"


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
    ms), the bounds are the first offsets whose timestamp is at or after those times
    (see :func:`streamml.kafka.read.pin`).
    """
    return pin(settings, list(topics), start=start_time_ms, end=end_time_ms, by_time=True,
               partitions_=partitions, timeout=timeout)


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

    All partitions are fetched at once (one :class:`~streamml.kafka.read.RangeReader`, every
    range assigned); batches are still emitted partition by partition, later partitions
    buffering and pausing when they get ahead, so memory stays near ``2 * batch_rows``
    values per partition.

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
    while todo:  # waves of distinct partitions (a partition listed twice is read twice, in order)
        wave: list[TopicRange] = []
        rest: list[TopicRange] = []
        seen: set[tuple[str, int]] = set()
        for r in todo:
            (rest if (r.topic, r.partition) in seen else wave).append(r)
            seen.add((r.topic, r.partition))
        todo = rest
        with RangeReader(settings, wave, idle_timeout=idle_timeout, context="reading",
                         group_prefix="dataset", fetch_wait_max_ms=50) as reader:
            yield from _read_wave(reader, wave, batch_rows, with_timestamps, headers, on_progress,
                                  with_records, with_offsets)


class _Buffer:
    """One partition's buffered values."""

    def __init__(self, r: TopicRange, with_ts: bool, with_records: bool, headers: str, with_offsets: bool,
                 count_bytes: bool) -> None:
        self.r, self.with_ts, self.with_records, self.headers = r, with_ts, with_records, headers
        self.with_offsets, self.count_bytes = with_offsets, count_bytes
        self.paused = False
        self.values: list[Any] = []
        self.offsets: list[int] = []
        self.stamps: list[int] = []
        self.keys: list[Any] = []
        self.hdrs: list[Any] = []
        self.schemas: set[str] = set()
        self.hashes: set[str] = set()

    def add(self, msgs: list[Any]) -> int:
        vals = [m.value() for m in msgs]
        if not self.with_records and None in vals:  # tombstones carry no row
            msgs = [m for m, v in zip(msgs, vals) if v is not None]
            vals = [v for v in vals if v is not None]
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


def _read_wave(reader: RangeReader, wave: list[TopicRange], batch_rows: int, with_ts: bool, headers: str,
               on_progress: Callable[[int, int], None] | None, with_records: bool,
               with_offsets: bool = True) -> Iterator[RawBatch]:
    bufs = {(r.topic, r.partition): _Buffer(r, with_ts, with_records, headers, with_offsets, on_progress is not None)
            for r in wave}
    order = [bufs[(r.topic, r.partition)] for r in wave]
    single = order[0] if len(order) == 1 else None
    k = 0
    cap = 2 * batch_rows
    while k < len(order):
        cur = order[k]
        while len(cur.values) >= batch_rows:
            yield cur.take(batch_rows)
        if reader.done(cur.r.topic, cur.r.partition):
            if cur.values:
                yield cur.take()
            k += 1
            if k < len(order) and order[k].paused:
                reader.resume(order[k].r.topic, order[k].r.partition)
                order[k].paused = False
            continue
        runs = reader.poll(20_000, timeout=0.02)
        if not runs:
            continue
        nbytes = nrec = 0
        for run in runs:
            buf = single if single is not None else bufs[tp_of(run[0])]
            nbytes += buf.add(run)
            nrec += len(run)
        if on_progress is not None and nrec:
            on_progress(nrec, nbytes)
        for b in order[k + 1:]:
            if not b.paused and len(b.values) >= cap and not reader.done(b.r.topic, b.r.partition):
                reader.pause(b.r.topic, b.r.partition)
                b.paused = True


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
