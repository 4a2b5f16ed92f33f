"""An independent verifier of delivery guarantees.

It reads input and output topics with its own read_committed consumer (no group, explicit
assignment, from offset 0 to the end), checks that no transaction is left open (the last
stable offset equals the high watermark on every partition), and reports, per partition:
records lost (an input id with no output), duplicated (an id output more than once),
reordered (per key, outputs whose input positions go backwards), and optionally per-key
aggregates of the output against a recomputation from the input.

Records are identified by the ``sm.event_id`` header, else the ``event_id`` field of a JSON
value, else ``topic/partition/offset``.

>>> r = VerifyReport(inputs=3, outputs=3, unique_outputs=3)
>>> r.ok, r.summary()
(True, 'inputs 3, outputs 3 (3 unique): lost 0, duplicated 0, reordered 0, open transactions 0')
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, cast

import orjson

from streamml.config import Settings
from streamml.errors import KafkaError
from streamml.headers import EVENT_ID
from streamml.kafka.message import offset_of, partition_of, topic_of
from streamml.kafka.read import TopicRange, read_ranges, watermarks

__all__ = ["Record", "VerifyReport", "read_topic", "open_transactions", "verify", "event_id_of"]


@dataclass(frozen=True)
class Record:
    """One record as read by the verifier."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def json(self) -> Any:
        return orjson.loads(self.value) if self.value else None

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode("utf-8", "replace") if v is not None else ""
        return None


def event_id_of(rec: Record) -> str:
    """The event id of a record (header, else JSON field, else its coordinates)."""
    hid = rec.header(EVENT_ID)
    if hid:
        return hid
    try:
        value = rec.json()
        if isinstance(value, dict) and value.get("event_id") is not None:
            return str(value["event_id"])
    except orjson.JSONDecodeError:
        pass
    return f"{rec.topic}/{rec.partition}/{rec.offset}"


def open_transactions(settings: Settings, topics: Iterable[str],
                      timeout: float = 15.0) -> list[tuple[str, int, int, int]]:
    """Partitions whose last stable offset lags the high watermark: ``(topic, partition, lso, hw)``."""
    out: list[tuple[str, int, int, int]] = []
    for topic in topics:
        lso = watermarks(settings, topic, committed=True, timeout=timeout)
        hw = watermarks(settings, topic, committed=False, timeout=timeout)
        out.extend((topic, p, lso[(t, p)][1], hw[(t, p)][1]) for (t, p) in sorted(hw) if lso[(t, p)][1] < hw[(t, p)][1])
    return out


def read_topic(settings: Settings, topic: str, timeout: float = 120.0) -> list[Record]:
    """Every committed record of ``topic``, in partition order, up to the current end
    (the last stable offset of each partition when it is called)."""
    marks = watermarks(settings, topic, timeout=15.0)
    ranges = [TopicRange(t, p, low, high) for (t, p), (low, high) in sorted(marks.items())]
    out: list[Record] = []
    try:
        for msgs in read_ranges(settings, ranges, max_messages=5000, timeout=timeout, idle_timeout=timeout,
                                context=f"verifier reading {topic}", group_prefix="verify"):
            # records always carry their coordinates; consumed headers are (name, bytes) pairs
            out.extend(Record(topic_of(m), partition_of(m), offset_of(m), m.key(), m.value(),
                              cast("tuple[tuple[str, bytes], ...]", tuple(m.headers() or ())))
                       for m in msgs)
    except KafkaError as exc:
        if exc.code == "_TIMED_OUT":
            raise TimeoutError(f"verifier could not read {topic} to the end in {timeout}s: {exc.message}") from None
        raise
    out.sort(key=lambda r: r.partition)  # stable: offset order within a partition is kept
    return out


@dataclass
class VerifyReport:
    """What the verifier found. ``ok`` is True only when nothing was lost, duplicated,
    reordered or left open, and every aggregate matched."""

    inputs: int = 0
    outputs: int = 0
    unique_outputs: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    reordered: int = 0
    open_transactions: list[tuple[str, int, int, int]] = field(default_factory=list)
    aggregate_mismatches: dict[Any, tuple[Any, Any]] = field(default_factory=dict)
    per_partition: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unexpected or self.reordered or self.open_transactions
                    or self.aggregate_mismatches)

    def summary(self) -> str:
        text = (f"inputs {self.inputs}, outputs {self.outputs} ({self.unique_outputs} unique): lost {len(self.lost)}, "
                f"duplicated {len(self.duplicated)}, reordered {self.reordered}, "
                f"open transactions {len(self.open_transactions)}")
        if self.unexpected:
            text += f", unexpected {len(self.unexpected)}"
        if self.aggregate_mismatches:
            text += f", aggregate mismatches {len(self.aggregate_mismatches)}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "inputs": self.inputs, "outputs": self.outputs, "unique_outputs": self.unique_outputs,
                "lost": len(self.lost), "duplicated": len(self.duplicated), "unexpected": len(self.unexpected),
                "reordered": self.reordered, "open_transactions": len(self.open_transactions),
                "aggregate_mismatches": len(self.aggregate_mismatches), "per_partition": self.per_partition,
                "examples": {"lost": self.lost[:5], "duplicated": list(self.duplicated)[:5]}}


def verify(
    settings: Settings,
    inputs: list[str],
    outputs: list[str],
    *,
    id_of: Callable[[Record], str] = event_id_of,
    expected: Callable[[Record], bool] | None = None,
    recompute: Callable[[list[Record]], dict[Any, Any]] | None = None,
    observe: Callable[[list[Record]], dict[Any, Any]] | None = None,
    timeout: float = 120.0,
    settle_s: float = 60.0,
) -> VerifyReport:
    """Compare ``outputs`` against ``inputs``.

    ``expected(record)`` says which input records should produce an output (default: all);
    ``recompute(inputs)`` and ``observe(outputs)`` give per-key aggregates to compare.

    A producer killed inside a transaction leaves it open until its coordinator aborts it
    (``transaction.timeout.ms``, 30 s for streamml's loops, found by a broker check every
    10 s), and a read_committed reader stops at it meanwhile. So the verifier first waits up
    to ``settle_s`` for open transactions to end, then reads; one still open is reported.
    """
    report = VerifyReport()
    topics = [*inputs, *outputs]
    deadline = time.monotonic() + settle_s
    report.open_transactions = open_transactions(settings, topics)
    while report.open_transactions and time.monotonic() < deadline:
        time.sleep(1.0)
        report.open_transactions = open_transactions(settings, topics)
    in_recs = [r for t in inputs for r in read_topic(settings, t, timeout)]
    out_recs = [r for t in outputs for r in read_topic(settings, t, timeout)]
    want = [r for r in in_recs if expected is None or expected(r)]
    report.inputs, report.outputs = len(want), len(out_recs)
    position = {id_of(r): (r.partition, r.offset) for r in want}
    counts = Counter(id_of(r) for r in out_recs)
    report.unique_outputs = len(counts)
    report.lost = sorted(set(position) - set(counts))
    report.duplicated = {k: n for k, n in counts.items() if n > 1}
    report.unexpected = sorted(set(counts) - set(position))
    last: dict[tuple[str, int, bytes | None], tuple[int, int]] = {}
    per_part: dict[str, Counter[str]] = defaultdict(Counter)
    for r in out_recs:
        per_part[f"{r.topic}/{r.partition}"]["records"] += 1
        pos = position.get(id_of(r))
        if pos is None:
            continue
        k = (r.topic, r.partition, r.key)
        if k in last and pos < last[k]:
            report.reordered += 1
            per_part[f"{r.topic}/{r.partition}"]["reordered"] += 1
        last[k] = max(pos, last.get(k, pos))
    report.per_partition = {k: dict(v) for k, v in sorted(per_part.items())}
    if recompute is not None and observe is not None:
        want_agg, got_agg = recompute(want), observe(out_recs)
        for key in set(want_agg) | set(got_agg):
            a, b = want_agg.get(key), got_agg.get(key)
            if not _close(a, b):
                report.aggregate_mismatches[key] = (a, b)
    return report


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(a)))
        except (TypeError, ValueError):
            return False
    return bool(a == b)
