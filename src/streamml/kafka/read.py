"""The one read layer: list offsets, pin offset ranges, read pinned ranges to their end.

Every bounded read in streamml (query snapshots, training datasets, pipeline replay,
state restore, the verifier, the serving test reader) goes through this module:

- :func:`partitions`, :func:`watermarks` and :func:`offsets_for_times` list offsets
  through the admin client (read_committed: the high end is the *last stable offset*, below
  which every transaction is decided), retried while leadership moves;
- :func:`pin` turns bounds (offsets, times, per-partition mappings) into exact
  :class:`TopicRange` values ``[start, end)``;
- :class:`RangeReader` reads pinned ranges with a fresh, group-less read_committed consumer
  (``assign()``, never ``subscribe()``, never a commit) and stops on each partition when its
  position reaches ``end``. A read_committed consumer never delivers aborted records nor
  transaction markers, so the record at ``end - 1`` may never arrive: a partition is also
  finished when a later offset arrives, when the consumer reports the end of the partition
  at or past ``end``, or when its position reaches ``end``. :func:`read_ranges` is the
  generator over it.

librdkafka's ``_PARTITION_EOF`` events are handled here and only here (also
:func:`messages`, for live consumers that want the records of a consume call and a
classified error for anything else).

>>> r = TopicRange("ml.features.pay", 0, 10, 25)
>>> len(r), r.size, r.key()
(15, 15, 'ml.features.pay/0')
>>> [(part.start, part.end) for part in r.split_at(0.4)]
[(10, 16), (16, 25)]
>>> as_millis("2026-01-01T00:00:00Z")
1767225600000
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator, Mapping, Sequence, Union

from confluent_kafka import KafkaError as CKError
from confluent_kafka import KafkaException, Message, TopicPartition
from confluent_kafka.admin import OffsetSpec

from streamml.config import Settings
from streamml.errors import ConfigError, KafkaError, StreamMLError
from streamml.kafka.admin import list_offsets, metadata
from streamml.kafka.clients import admin as make_admin
from streamml.kafka.clients import consumer as make_consumer
from streamml.kafka.errors import classify
from streamml.kafka.message import offset_of

__all__ = ["TopicRange", "Bound", "as_millis", "partitions", "watermarks", "offsets_for_times", "pin",
           "RangeReader", "read_ranges", "messages", "READ_CONSUMER_DEFAULTS"]

#: A bound for :func:`pin`: an offset (negative: that many before the end), a time
#: (``datetime``, ISO string, or milliseconds with ``by_time=True``), partition -> offset, or None.
Bound = Union[int, datetime, str, Mapping[int, int], None]

#: Consumer options of a range reader (on top of the client defaults: read_committed, no commits).
READ_CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.partition.eof": True,
    "fetch.wait.max.ms": 10,
    "fetch.max.bytes": 64 * 1024 * 1024,
    "max.partition.fetch.bytes": 16 * 1024 * 1024,
    "queued.max.messages.kbytes": 128 * 1024,
}


@dataclass(frozen=True, order=True)
class TopicRange:
    """Offsets ``[start, end)`` of one partition of one topic."""

    topic: str
    partition: int
    start: int
    end: int

    def __len__(self) -> int:
        return max(0, self.end - self.start)

    @property
    def size(self) -> int:
        """How many offsets the range spans (markers and aborted records included)."""
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
    def from_dict(cls, d: Mapping[str, Any]) -> "TopicRange":
        return cls(str(d["topic"]), int(d["partition"]), int(d["start"]), int(d["end"]))


def as_millis(when: datetime | str | int | float) -> int:
    """A time as milliseconds since the epoch (naive datetimes are UTC).

    >>> as_millis(datetime(2026, 1, 1, tzinfo=timezone.utc)), as_millis(5.9)
    (1767225600000, 5)
    """
    if isinstance(when, (int, float)):
        return int(when)
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"not an ISO time: {when!r}", hint="e.g. '2026-01-01T12:00:00Z'") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


# -- offset listing -----------------------------------------------------------------------

def partitions(settings: Settings, topic: str, *, timeout: float = 30.0, admin: Any = None,
               error: type[StreamMLError] = ConfigError) -> list[int]:
    """The partition ids of ``topic``; raises ``error`` when the topic does not exist."""
    md = metadata(admin or make_admin(settings), timeout, topic)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        raise error(f"topic {topic} does not exist", hint="list topics with `streamml topics`")
    return sorted(t.partitions)


def _tps(settings: Settings, topics: str | Iterable[str] | Iterable[TopicPartition], timeout: float,
         admin: Any, error: type[StreamMLError] = ConfigError) -> list[TopicPartition]:
    if isinstance(topics, str):
        topics = [topics]
    out: list[TopicPartition] = []
    for t in topics:
        if isinstance(t, TopicPartition):
            out.append(TopicPartition(t.topic, t.partition))
        else:
            out.extend(TopicPartition(t, p) for p in partitions(settings, t, timeout=timeout, admin=admin, error=error))
    return out


def watermarks(settings: Settings, topics: str | Iterable[str] | Iterable[TopicPartition], *,
               committed: bool = True, timeout: float = 30.0, admin: Any = None
               ) -> dict[tuple[str, int], tuple[int, int]]:
    """``{(topic, partition): (low, high)}`` for every partition of ``topics`` (names, or
    ``TopicPartition`` values for some partitions only).

    ``high`` is the last stable offset when ``committed`` (the end a read_committed reader
    reaches without waiting for an open transaction), else the high watermark.
    """
    from confluent_kafka import IsolationLevel

    admin = admin or make_admin(settings)
    tps = _tps(settings, topics, timeout, admin)
    iso = IsolationLevel.READ_COMMITTED if committed else IsolationLevel.READ_UNCOMMITTED
    low = list_offsets(admin, {tp: OffsetSpec.earliest() for tp in tps}, isolation=iso, timeout=timeout)
    high = list_offsets(admin, {tp: OffsetSpec.latest() for tp in tps}, isolation=iso, timeout=timeout)
    return {k: (low[k], high[k]) for k in low}


def offsets_for_times(settings: Settings, topics: str | Iterable[str] | Iterable[TopicPartition], ms: int, *,
                      timeout: float = 30.0, admin: Any = None) -> dict[tuple[str, int], int]:
    """``{(topic, partition): offset}`` of the first record whose timestamp is at or after
    ``ms``; ``-1`` where there is none."""
    admin = admin or make_admin(settings)
    tps = _tps(settings, topics, timeout, admin)
    return list_offsets(admin, {tp: OffsetSpec.for_timestamp(int(ms)) for tp in tps}, timeout=timeout)


def pin(settings: Settings, topics: str | Sequence[str], *, start: Bound = None, end: Bound = None,
        by_time: bool = False, partitions_: Iterable[int] | None = None, timeout: float = 30.0,
        admin: Any = None, error: type[StreamMLError] = ConfigError) -> list[TopicRange]:
    """Pin the current contents of ``topics`` to exact ranges, sorted by topic and partition.

    ``start``/``end``: ``None`` (the earliest offset / the last stable offset now), an offset
    (the same for every partition; negative counts back from the end), a time (``datetime``,
    ISO string, or an int of milliseconds when ``by_time``: the first record at or after it,
    the end when there is none) or a mapping partition -> offset. Ranges are clamped to what
    the partition holds and never end before they start. ``partitions_`` keeps only those.
    A topic that does not exist raises ``error``.
    """
    admin = admin or make_admin(settings)
    names = [topics] if isinstance(topics, str) else list(topics)
    wanted = None if partitions_ is None else set(partitions_)
    tps = [tp for tp in _tps(settings, names, timeout, admin, error) if wanted is None or tp.partition in wanted]
    marks = watermarks(settings, tps, timeout=timeout, admin=admin)

    def at(bound: Bound, edge: int) -> dict[tuple[str, int], int]:
        if bound is None:
            return {k: m[edge] for k, m in marks.items()}
        if isinstance(bound, Mapping):
            return {k: int(bound.get(k[1], m[edge])) for k, m in marks.items()}
        if isinstance(bound, bool):
            raise ConfigError("an offset bound must be a number, a time or a mapping")
        if isinstance(bound, int) and not by_time:
            return {k: (m[1] + bound if bound < 0 else bound) for k, m in marks.items()}
        found = offsets_for_times(settings, tps, as_millis(bound), timeout=timeout, admin=admin)
        return {k: (found[k] if found[k] >= 0 else m[1]) for k, m in marks.items()}

    lo, hi = at(start, 0), at(end, 1)
    out = []
    for k, (low, high) in marks.items():
        s = max(low, min(lo[k], high))
        out.append(TopicRange(k[0], k[1], s, max(s, min(hi[k], high))))
    return sorted(out)


# -- reading ----------------------------------------------------------------------------

def messages(batch: Sequence[Message], context: str = "") -> list[Message]:
    """The records of one ``consume()`` result: end-of-partition events are dropped, any
    other error is raised, classified (with ``context``).

    """
    good = [m for m in batch if m.error() is None]
    if len(good) != len(batch):
        for m in batch:
            err = m.error()
            if err is not None and err.code() != CKError._PARTITION_EOF:
                raise classify(KafkaException(err), context)
    return good


class _Part:
    __slots__ = ("range", "pos", "done", "paused")

    def __init__(self, r: TopicRange) -> None:
        self.range, self.pos, self.done, self.paused = r, r.start, False, False

    def take(self, run: list[Message]) -> list[Message]:
        """The messages of ``run`` (one partition, ascending) inside the range; moves on."""
        if self.done:
            return []
        if offset_of(run[0]) < self.pos:  # re-fetched after a seek
            run = [m for m in run if offset_of(m) >= self.pos]
            if not run:
                return []
        end = self.range.end
        last = offset_of(run[-1])
        if last >= end - 1:
            # a record at or past the end: the range is read to its end, even when its last
            # records were aborted ones the consumer skipped (the run then stops short of it)
            self.done, self.pos = True, end
            return [m for m in run if offset_of(m) < end] if last >= end else run
        self.pos = last + 1
        return run

    def reached(self, offset: int) -> None:
        """The consumer is at ``offset`` (end of partition, or its position)."""
        if offset > self.pos:
            self.pos = min(offset, self.range.end)
        if offset >= self.range.end:
            self.done = True


class RangeReader:
    """Read pinned ranges (at most one per partition) with a fresh group-less consumer.

    Use it as a context manager; call :meth:`poll` until :attr:`finished`, or iterate
    :meth:`batches`. Each poll returns *runs*: lists of consecutive records of one partition,
    in offset order, all inside their range. :meth:`pause` and :meth:`resume` hold a
    partition back (resuming continues at its position).

    ``idle_timeout``: seconds without any progress (no record, no partition finished) before
    a :class:`~streamml.errors.KafkaError` says which partition stopped short (records deleted
    by retention, or a transaction still open). ``timeout``: seconds in all (None: no limit).
    ``consumer`` options override :data:`READ_CONSUMER_DEFAULTS` (``_`` for ``.``). The
    consumer's group id, ``<namespace>-<group_prefix>-<random>``, is never joined.
    """

    def __init__(self, settings: Settings, ranges: Iterable[TopicRange], *, idle_timeout: float = 30.0,
                 timeout: float | None = None, context: str = "reading", group_prefix: str = "read",
                 **consumer: Any) -> None:
        todo = [r for r in ranges if len(r) > 0]
        self._parts: dict[Any, _Part] = {}
        self._one_topic = len({r.topic for r in todo}) <= 1
        for r in todo:
            k = r.partition if self._one_topic else (r.topic, r.partition)
            if k in self._parts:
                raise ValueError(f"{r.key()} is listed twice; read_ranges() reads such ranges one after the other")
            self._parts[k] = _Part(r)
        self._open = set(self._parts)
        self.context = context
        self.idle_timeout = idle_timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self._last = time.monotonic()
        self._single = next(iter(self._parts.values())) if len(self._parts) == 1 else None
        self._c: Any = None
        if self._parts:
            conf = dict(READ_CONSUMER_DEFAULTS)
            conf.update({k.replace("_", "."): v for k, v in consumer.items()})
            # a group id is required, never joined nor committed to; it starts with the namespace so
            # that prefix ACLs granted per namespace ("<ns>-") cover it
            group = f"{settings.namespace}-{group_prefix}-{uuid.uuid4().hex[:12]}"
            self._c = make_consumer(settings, group, **conf)
            self._c.assign([TopicPartition(p.range.topic, p.range.partition, p.range.start)
                            for p in self._parts.values()])

    # -- state ----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """True once every range has been read to its end."""
        return not self._open

    @property
    def pending(self) -> list[TopicRange]:
        """The ranges not read to their end yet."""
        return sorted(self._parts[k].range for k in self._open)

    def _part(self, topic: str, partition: int) -> _Part:
        return self._parts[partition if self._one_topic else (topic, partition)]

    def done(self, topic: str, partition: int) -> bool:
        """Whether the range of ``topic``/``partition`` has been read to its end."""
        return self._part(topic, partition).done

    def position(self, topic: str, partition: int) -> int:
        """The next offset of ``topic``/``partition`` this reader would return."""
        return self._part(topic, partition).pos

    def pause(self, topic: str, partition: int) -> None:
        """Stop fetching ``topic``/``partition`` until :meth:`resume`."""
        part = self._part(topic, partition)
        if not part.paused and not part.done:
            self._c.pause([TopicPartition(topic, partition)])
            part.paused = True

    def resume(self, topic: str, partition: int) -> None:
        """Fetch ``topic``/``partition`` again, from its position."""
        part = self._part(topic, partition)
        if part.paused:
            tp = TopicPartition(topic, partition, part.pos)
            self._c.resume([tp])
            self._c.seek(tp)
            part.paused = False
            self._last = time.monotonic()

    # -- reading --------------------------------------------------------------------------
    def poll(self, max_messages: int = 10_000, timeout: float = 0.05) -> list[list[Message]]:
        """One consume call: the runs of in-range records it brought (maybe none)."""
        if not self._open:
            return []
        now = time.monotonic()
        if self._deadline is not None and now > self._deadline:
            raise KafkaError(f"{self.context}: timed out after {self._timeout:.0f}s with "
                             f"{', '.join(r.key() for r in self.pending)} unfinished", code="_TIMED_OUT")
        msgs = self._c.consume(max_messages, timeout=timeout)
        if not msgs:
            self._idle(now)
            return []
        runs = self._single_runs(msgs) if self._single is not None else self._runs(msgs)
        self._settle()
        return runs

    def _single_runs(self, msgs: list[Message]) -> list[list[Message]]:
        part = self._single
        assert part is not None
        good = [m for m in msgs if m.error() is None]
        run = part.take(good) if good else []
        if len(good) != len(msgs):  # the end-of-partition event follows the records before it
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() != CKError._PARTITION_EOF:
                        raise classify(KafkaException(err), f"{self.context} {part.range.key()}: ")
                    part.reached(offset_of(m))
        return [run] if run else []

    def _runs(self, msgs: list[Message]) -> list[list[Message]]:
        runs: list[list[Message]] = []
        run: list[Message] = []
        run_key: Any = None
        one = self._one_topic

        def flush() -> None:
            if run:
                got = self._parts[run_key].take(run)
                if got:
                    runs.append(got)

        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != CKError._PARTITION_EOF:
                    raise classify(KafkaException(err), f"{self.context} {m.topic()}/{m.partition()}: ")
                key = m.partition() if one else (m.topic(), m.partition())
                part = self._parts.get(key)
                if part is not None:
                    if run and run_key == key:
                        flush()
                        run, run_key = [], None
                    part.reached(offset_of(m))
                continue
            key = m.partition() if one else (m.topic(), m.partition())
            if key != run_key:
                flush()
                run, run_key = [], key
            run.append(m)
        flush()
        return runs

    def _settle(self) -> None:
        before = len(self._open)
        self._open = {k for k in self._open if not self._parts[k].done}
        if len(self._open) != before:
            self._last = time.monotonic()

    def _idle(self, now: float) -> None:
        """Nothing arrived: consult the consumer's positions (markers at the end of a range
        move the position without delivering a record), then the idle timeout."""
        live = [self._parts[k] for k in self._open if not self._parts[k].paused]
        if live:
            for tp in self._c.position([TopicPartition(p.range.topic, p.range.partition) for p in live]):
                if tp.offset >= 0:
                    self._part(tp.topic, tp.partition).reached(tp.offset)
        self._settle()
        if live and self._open and now - self._last > self.idle_timeout:
            stuck = min((self._parts[k] for k in self._open), key=lambda p: p.range)
            raise KafkaError(f"{self.context} {stuck.range.key()}: no data past offset {stuck.pos} (range ends at "
                             f"{stuck.range.end}) for {self.idle_timeout:.0f}s", code="_TIMED_OUT",
                             hint="the records were deleted by retention, or a transaction is still open")
        elif not live:
            self._last = now

    def batches(self, max_messages: int = 10_000, timeout: float = 0.05) -> Iterator[list[Message]]:
        """Yield the in-range records, a consume call at a time, until every range is read."""
        while self._open:
            runs = self.poll(max_messages, timeout)
            if len(runs) == 1:
                yield runs[0]
            elif runs:
                yield [m for r in runs for m in r]

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        if self._c is not None:
            try:
                self._c.close()
            finally:
                self._c = None

    def __enter__(self) -> "RangeReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_ranges(settings: Settings, ranges: Iterable[TopicRange], *, max_messages: int = 10_000,
                idle_timeout: float = 30.0, timeout: float | None = None, context: str = "reading",
                **consumer: Any) -> Iterator[list[Message]]:
    """Yield the committed records of ``ranges``, a batch at a time, until each range's end.

    Ranges of distinct partitions are read together (batches may mix partitions; each
    partition's records come in offset order); a partition listed more than once is read
    once per listing, one after the other. See :class:`RangeReader` for the options.
    """
    todo = [r for r in ranges if len(r) > 0]
    while todo:
        wave: list[TopicRange] = []
        rest: list[TopicRange] = []
        seen: set[tuple[str, int]] = set()
        for r in todo:
            (rest if (r.topic, r.partition) in seen else wave).append(r)
            seen.add((r.topic, r.partition))
        todo = rest
        with RangeReader(settings, wave, idle_timeout=idle_timeout, timeout=timeout, context=context,
                         **consumer) as reader:
            yield from reader.batches(max_messages)
