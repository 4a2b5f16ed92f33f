"""The one read layer on a real broker: pinned ranges across partitions, offset listing, and
transactional topics whose aborted records and markers read_committed never delivers."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from streamml.config import Settings
from streamml.errors import ConfigError, KafkaError
from streamml.kafka import clients
from streamml.kafka.read import RangeReader, TopicRange, offsets_for_times, pin, read_ranges, watermarks


def _offsets(batches: object) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for msgs in batches:  # type: ignore[attr-defined]
        for m in msgs:
            out.setdefault(m.partition(), []).append(m.offset())
    return out


def _fill(settings: Settings, topic: str, per_partition: int, partitions: int, ts0: int = 1_700_000_000_000) -> None:
    p = clients.producer(settings)
    for part in range(partitions):
        for i in range(per_partition):
            p.produce(topic, f"{part}:{i}".encode(), partition=part, timestamp=ts0 + i * 1000)
    assert p.flush(30) == 0


def test_ranges_across_partitions_read_exactly(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("rl", partitions=3)
    _fill(settings, topic, 20, 3)
    marks = watermarks(settings, topic)
    assert marks == {(topic, p): (0, 20) for p in range(3)}
    ranges = [TopicRange(topic, 0, 2, 8), TopicRange(topic, 1, 0, 5), TopicRange(topic, 2, 15, 20),
              TopicRange(topic, 2, 0, 0)]  # empty ranges are skipped
    got = _offsets(read_ranges(settings, ranges, max_messages=3))
    assert got == {0: list(range(2, 8)), 1: list(range(5)), 2: list(range(15, 20))}
    # a partition listed twice is read twice, in order
    twice = _offsets(read_ranges(settings, [TopicRange(topic, 1, 0, 2), TopicRange(topic, 1, 10, 12)]))
    assert twice == {1: [0, 1, 10, 11]}
    # pinning: offsets, negative offsets, per-partition mappings and times
    assert pin(settings, topic) == [TopicRange(topic, p, 0, 20) for p in range(3)]
    assert pin(settings, topic, start=-3, end={1: 18}) == [
        TopicRange(topic, 0, 17, 20), TopicRange(topic, 1, 17, 18), TopicRange(topic, 2, 17, 20)]
    assert offsets_for_times(settings, topic, 1_700_000_000_000 + 4500)[(topic, 0)] == 5
    by_time = pin(settings, topic, start=1_700_000_000_000 + 5000, end=1_700_000_000_000 + 7000, by_time=True)
    assert [(r.start, r.end) for r in by_time] == [(5, 7)] * 3
    assert pin(settings, topic, start=50) == [TopicRange(topic, p, 20, 20) for p in range(3)]  # clamped
    with pytest.raises(ConfigError, match="does not exist"):
        pin(settings, topic + "-missing")


def test_aborted_transactions_are_skipped_and_the_reader_terminates(settings: Settings,
                                                                   new_topic: Callable[..., str]) -> None:
    topic = new_topic("rltx", partitions=2)
    p = clients.producer(settings, transactional_id=f"{settings.namespace}-rl")
    p.init_transactions(30)
    committed: dict[int, list[bytes]] = {0: [], 1: []}
    for n, commit in enumerate([True, False, True, False]):  # the log ends with aborted records + a marker
        p.begin_transaction()
        for part in (0, 1):
            for i in range(5):
                v = f"{n}-{part}-{i}".encode()
                p.produce(topic, v, partition=part)
                if commit:
                    committed[part].append(v)
        p.flush(30)
        (p.commit_transaction if commit else p.abort_transaction)(30)
    marks = watermarks(settings, topic)
    # 4 transactions of 5 records + 1 marker each: nothing is open, so the LSO is the high watermark
    assert {k: v[1] for k, v in marks.items()} == {(topic, 0): 24, (topic, 1): 24}
    t0 = time.monotonic()
    values: dict[int, list[bytes]] = {0: [], 1: []}
    for msgs in read_ranges(settings, pin(settings, topic), idle_timeout=10):
        for m in msgs:
            values[m.partition()].append(m.value())
    assert values == committed
    # a range ending inside an aborted gap (offsets 6..11 are aborted records and their marker)
    with RangeReader(settings, [TopicRange(topic, 0, 0, 9)], idle_timeout=10) as r:
        got = [m.offset() for msgs in r.batches() for m in msgs]
        assert r.finished and r.position(topic, 0) == 9
    assert got == [0, 1, 2, 3, 4]
    assert time.monotonic() - t0 < 20, "the reader must stop at the end, not wait for its idle timeout"

    # an open transaction: the committed end stays below it, and reading to it does not wait
    p.begin_transaction()
    for _ in range(3):
        p.produce(topic, b"open", partition=0)
    p.flush(30)
    try:
        lso = watermarks(settings, topic)[(topic, 0)][1]
        hw = watermarks(settings, topic, committed=False)[(topic, 0)][1]
        assert (lso, hw) == (24, 27)
        assert [m.value() for msgs in read_ranges(settings, pin(settings, topic, partitions_=[0]))
                for m in msgs] == committed[0]
        # a range past the committed end is never finished: a classified error says where it stopped
        with pytest.raises(KafkaError, match="no data past offset") as info:
            list(read_ranges(settings, [TopicRange(topic, 0, 20, hw)], idle_timeout=2))
        assert info.value.code == "_TIMED_OUT"
    finally:
        p.abort_transaction(30)
