"""The runtime's policies through its client seam: no broker, scripted clients.

Each test scripts what the consumer returns and what the producer's transaction calls raise,
and checks what the loop does: which offsets it commits, when it aborts and rewinds, when it
replaces the clients, when it stops.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError as CKError
from confluent_kafka import KafkaException, TopicPartition

from streamml.config import Settings
from streamml.errors import AuthorizationError, FatalError
from streamml.runtime import Loop, LoopOptions, Processor
from streamml.runtime.supervisor import EXIT_CONFIG, Supervisor


class Msg:
    def __init__(self, topic: str, partition: int, offset: int, value: bytes = b"v", err: Any = None) -> None:
        self._t, self._p, self._o, self._v, self._e = topic, partition, offset, value, err

    def error(self) -> Any:
        return self._e

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def key(self) -> bytes:
        return b"k"


class FakeConsumer:
    """Returns scripted batches; the first consume assigns the partitions."""

    def __init__(self, world: "World") -> None:
        self.world = world
        self.calls: list[tuple[int, float]] = []
        self.commits: list[list[TopicPartition]] = []
        self.seeks: list[TopicPartition] = []
        self.closed = False
        self.on_assign: Any = None

    def subscribe(self, topics: list[str], on_assign: Any = None, on_revoke: Any = None, on_lost: Any = None) -> None:
        self.on_assign, self.on_revoke = on_assign, on_revoke
        self.assigned = False

    def consume(self, n: int, timeout: float) -> list[Any]:
        self.calls.append((n, timeout))
        if not self.assigned:
            self.assigned = True
            self.on_assign(self, [TopicPartition("in", p) for p in range(self.world.partitions)])
        if self.world.batches and timeout > 0 or (self.world.batches and self.world.ready):
            return self.world.batches.pop(0)
        return []

    def committed(self, tps: list[TopicPartition], timeout: float = 0) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.world.committed.get(tp.partition, 0)) for tp in tps]

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append(tp)

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        self.commits.append(offsets)

    def consumer_group_metadata(self) -> str:
        return "meta"

    def close(self) -> None:
        self.closed = True
        if self.on_revoke is not None and self.assigned:
            self.on_revoke(self, [TopicPartition("in", p) for p in range(self.world.partitions)])


class FakeProducer:
    def __init__(self, world: "World", tid: str | None) -> None:
        self.world, self.tid = world, tid
        self.log: list[str] = []
        self.sent: list[tuple[str, bytes]] = []
        self.queue = 0

    def __len__(self) -> int:
        return self.queue

    def init_transactions(self, timeout: float) -> None:
        self.log.append("init")

    def begin_transaction(self) -> None:
        self.log.append("begin")

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        self.sent.append((topic, value))

    def poll(self, timeout: float = 0) -> int:
        self.queue = 0
        return 0

    def flush(self, timeout: float = 0) -> int:
        self.queue = 0
        return 0

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], meta: Any, timeout: float) -> None:
        self.log.append("offsets " + ",".join(f"{tp.partition}:{tp.offset}" for tp in offsets))

    def commit_transaction(self, timeout: float) -> None:
        if self.world.commit_errors:
            raise KafkaException(self.world.commit_errors.pop(0))
        self.log.append("commit")

    def abort_transaction(self, timeout: float) -> None:
        self.log.append("abort")


class World:
    """The scripted clients; every consumer and producer made, in order."""

    def __init__(self, batches: list[list[Any]], partitions: int = 2) -> None:
        self.batches, self.partitions = batches, partitions
        self.committed: dict[int, int] = {}
        self.commit_errors: list[CKError] = []
        self.consumers: list[FakeConsumer] = []
        self.producers: list[FakeProducer] = []
        self.ready = False

    def consumer(self, settings: Settings, group: str, **overrides: Any) -> FakeConsumer:
        self.consumer_conf = overrides
        self.consumers.append(FakeConsumer(self))
        return self.consumers[-1]

    def producer(self, settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> FakeProducer:
        self.producers.append(FakeProducer(self, transactional_id))
        return self.producers[-1]


class Echo(Processor[list[Any]]):
    def __init__(self) -> None:
        self.events: list[str] = []

    def assigned(self, partitions: list[TopicPartition]) -> None:
        self.events.append(f"assigned {[tp.partition for tp in partitions]}")

    def revoked(self, partitions: list[TopicPartition]) -> None:
        self.events.append(f"revoked {[tp.partition for tp in partitions]}")

    def process(self, messages: list[Any], producer: Any) -> list[Any]:
        for m in messages:
            producer.produce("out", m.value(), m.key())
        return messages

    def committed(self, result: list[Any]) -> None:
        self.events.append(f"committed {[m.offset() for m in result]}")

    def aborted(self, error: Exception) -> None:
        self.events.append("aborted")


def make(world: World, **opts: Any) -> tuple[Loop[Any], Echo]:
    proc = Echo()
    options = LoopOptions(**{"idle_wait_s": 0.01, "instance": "host-0", "stuck_after_s": 0, **opts})
    loop: Loop[Any] = Loop(Settings(bootstrap_servers="127.0.0.1:1", namespace="t"), proc, topics=["in"],
                           group="g", options=options, clients=world)
    return loop, proc


def test_one_transaction_per_batch_with_its_offsets_and_member_ids() -> None:
    world = World([[Msg("in", 0, 5), Msg("in", 0, 6), Msg("in", 1, 9)]])
    loop, proc = make(world)
    loop.run(max_batches=1)
    p = world.producers[0]
    assert p.tid == "g.host-0" and world.consumer_conf["group_instance_id"] == "g.host-0"
    assert p.log == ["init", "begin", "offsets 0:7,1:10", "commit"]
    assert proc.events[:2] == ["assigned [0, 1]", "committed [5, 6, 9]"]
    assert loop.stats.batches == 1 and loop.stats.records == 3


def test_the_product_defaults_bound_a_stuck_member() -> None:
    world = World([])
    loop, _ = make(world, stuck_after_s=50)
    loop.run(max_batches=0)
    assert world.consumer_conf["max_poll_interval_ms"] <= 60_000
    assert loop.options.stuck_after_s <= 60


def test_polling_waits_for_one_record_then_takes_what_has_arrived() -> None:
    world = World([[Msg("in", 0, 0)]])
    world.ready = False
    loop, _ = make(world, max_batch=100)
    loop.start()
    loop.turn()
    calls = world.consumers[0].calls
    assert calls[0] == (100, 0) and calls[1] == (1, 0.01) and calls[2] == (99, 0)
    loop.close()


def test_an_abortable_commit_aborts_rewinds_and_the_batch_is_processed_again() -> None:
    batch = [Msg("in", 0, 3)]
    world = World([batch, batch])
    world.committed = {0: 3}
    world.commit_errors = [CKError(CKError._STATE, "abort me", txn_requires_abort=True)]
    loop, proc = make(world)
    loop.run(max_batches=1)
    p, c = world.producers[0], world.consumers[0]
    assert "abort" in p.log and p.log.count("commit") == 1
    assert [(tp.partition, tp.offset) for tp in c.seeks] == [(0, 3)]
    assert proc.events[1:3] == ["aborted", "committed [3]"]
    assert loop.stats.aborts == 1 and loop.stats.batches == 1


def test_a_fenced_producer_replaces_both_clients_within_the_budget() -> None:
    world = World([[Msg("in", 0, 1)], [Msg("in", 0, 1)]])
    world.commit_errors = [CKError(CKError._FENCED, "fenced", fatal=True)]
    loop, proc = make(world)
    t0 = time.monotonic()
    loop.run(max_batches=1)
    assert len(world.producers) == 2 and len(world.consumers) == 2
    assert world.producers[1].tid == world.producers[0].tid == "g.host-0"  # the new producer fences the old
    deadline = time.monotonic() + 5
    while not world.consumers[0].closed and time.monotonic() < deadline:  # closed in the background
        time.sleep(0.05)
    assert world.consumers[0].closed
    assert loop.stats.recoveries == 1 and "revoked [0, 1]" in proc.events
    assert proc.events[-2:] == ["committed [1]", "revoked [0, 1]"]
    assert time.monotonic() - t0 < 10


def test_a_replaced_consumer_that_closes_late_does_not_revoke_its_successors_partitions() -> None:
    world = World([[Msg("in", 0, 1)], [Msg("in", 0, 1)], [Msg("in", 1, 4)]])
    world.commit_errors = [CKError(CKError._FENCED, "fenced", fatal=True)]
    loop, proc = make(world)
    loop.start()
    loop.turn()  # fenced: both clients replaced
    loop.turn()  # the new consumer is assigned and the batch is processed again
    old = world.consumers[0]
    old.on_revoke(old, [TopicPartition("in", 0), TopicPartition("in", 1)])  # its close, late
    assert loop.owned == {("in", 0), ("in", 1)}
    assert proc.events.count("revoked [0, 1]") == 1  # only the recovery's own release
    loop.turn()
    assert proc.events[-1] == "committed [4]"
    loop.close()


def test_fatal_errors_beyond_the_budget_stop_the_loop() -> None:
    world = World([[Msg("in", 0, 1)] for _ in range(4)])
    world.commit_errors = [CKError(CKError._FENCED, "fenced", fatal=True) for _ in range(4)]
    loop, _ = make(world, max_recoveries=1)
    with pytest.raises(FatalError, match="giving up"):
        loop.run(max_batches=1)
    assert loop.stats.recoveries == 1


def test_a_missing_acl_stops_at_once() -> None:
    world = World([[Msg("in", 0, 1)]])
    world.commit_errors = [CKError(CKError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "no acl")]
    loop, _ = make(world)
    with pytest.raises(AuthorizationError):
        loop.run(max_batches=1)
    assert loop.stats.recoveries == 0


def test_a_fatal_consume_error_recovers_and_eof_is_not_an_error() -> None:
    world = World([[Msg("in", 0, 0, err=CKError(CKError._PARTITION_EOF))],
                   [Msg("in", 0, 0, err=CKError(CKError._FENCED, "static member fenced", fatal=True))],
                   [Msg("in", 1, 4)]])
    loop, proc = make(world)
    loop.run(max_batches=1)
    assert loop.stats.recoveries == 1 and proc.events.count("committed [4]") == 1


def test_a_consumer_fatal_error_as_librdkafka_delivers_it_replaces_the_clients() -> None:
    # a consumer's own fatal error (here a static member fenced after a coordinator fail-over)
    # arrives as a message whose code is _FATAL and whose fatal flag is not set: it must still
    # replace the clients, not be logged and polled past with a dead consumer
    err = CKError(CKError._FATAL, "Fatal error: Broker: Static consumer fenced by other consumer "
                  "with same group.instance.id")
    assert not err.fatal()
    world = World([[Msg("in", 0, 0, err=err)], [Msg("in", 1, 4)]])
    loop, proc = make(world)
    loop.run(max_batches=1)
    assert loop.stats.recoveries == 1 and len(world.consumers) == 2
    assert proc.events.count("committed [4]") == 1


def test_at_least_once_commits_only_what_is_acknowledged() -> None:
    world = World([[Msg("in", 0, 1)], [Msg("in", 0, 2)]])
    loop, _ = make(world, guarantee="at-least-once")
    loop.start()
    p, c = world.producers[0], world.consumers[0]
    p.poll = lambda timeout=0: 0  # type: ignore[method-assign]  # nothing acknowledged yet
    p.queue = 5
    loop.turn()
    assert c.commits == []  # never commits past an unacknowledged record
    p.queue = 0
    loop.turn()
    assert [(tp.partition, tp.offset) for tp in c.commits[-1]] == [(0, 3)]
    loop.close()


def test_the_watchdog_marks_a_stall_and_the_next_turn_replaces_the_clients() -> None:
    world = World([[Msg("in", 0, 1)]])
    loop, _ = make(world)
    loop.start()
    loop._on_stuck(61.0, "stacks")  # noqa: SLF001 - what the watchdog thread calls
    loop.turn()
    assert loop.stats.stalls == 1 and loop.stats.recoveries == 1 and len(world.consumers) == 2
    loop.close()


def test_supervisor_restarts_killed_workers_and_stops_on_a_config_error(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    counter.write_text("0")
    script = ("import os, signal, sys, pathlib\n"
              f"p = pathlib.Path({str(counter)!r}); n = int(p.read_text()) + 1; p.write_text(str(n))\n"
              f"sys.exit({EXIT_CONFIG}) if n > 4 else os.kill(os.getpid(), signal.SIGKILL)\n")
    lines: list[str] = []
    sup = Supervisor(lambda i: [sys.executable, "-c", script], 1, backoff_s=0.05, max_backoff_s=0.2, say=lines.append)
    assert sup.run() == EXIT_CONFIG
    assert counter.read_text() == "5" and sup.restarts[0] == 4
    assert sum("killed by SIGKILL" in ln for ln in lines) == 4 and "cannot run as configured" in lines[-1]


def test_supervisor_honours_max_restarts(tmp_path: Path) -> None:
    lines: list[str] = []
    sup = Supervisor(lambda i: [sys.executable, "-c", "raise SystemExit(3)"], 2, backoff_s=0.01,
                     max_backoff_s=0.02, max_restarts=2, say=lines.append)
    assert sup.run() == 1
    assert any("--max-restarts" in ln for ln in lines)
