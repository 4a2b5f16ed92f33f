"""The client layer against a real broker: round trips, transactions, admin, classification."""

from __future__ import annotations

import time
from typing import Callable

import pytest
from confluent_kafka import TopicPartition

from streamml.config import Settings
from streamml.errors import FatalError
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic, list_topics, topic_config
from streamml.kafka.transactions import TransactionalSession, next_offsets


def drain(settings: Settings, topic: str, expect: int | None = None, timeout: float = 20.0,
          isolation: str = "read_committed") -> list[tuple[bytes | None, bytes | None]]:
    """Read a topic from the beginning with an independent consumer until quiet."""
    c = clients.consumer(settings, f"verify-{time.time_ns()}", isolation_level=isolation)
    c.subscribe([topic])
    out: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        msgs = c.consume(1000, timeout=0.5)
        if msgs:
            quiet_since = time.monotonic()
        for m in msgs:
            assert m.error() is None, m.error()
            out.append((m.key(), m.value()))
        if expect is not None and len(out) >= expect and time.monotonic() - quiet_since > 1.0:
            break
        if expect is None and out and time.monotonic() - quiet_since > 2.0:
            break
    c.close()
    return out


def test_produce_consume_round_trip(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("rt", partitions=3)
    p = clients.producer(settings)
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(300)}
    for k, v in sent.items():
        p.produce(topic, v, k)
    assert p.flush(30) == 0
    got = drain(settings, topic, expect=300)
    assert dict(got) == sent and len(got) == 300


def test_transaction_commit_and_abort(settings: Settings, new_topic: Callable[..., str]) -> None:
    topic = new_topic("tx")
    p = clients.producer(settings, transactional_id=f"tx-{time.time_ns()}")
    tx = TransactionalSession(p)
    with tx.transaction():
        for i in range(10):
            p.produce(topic, f"committed-{i}".encode())
    with pytest.raises(RuntimeError):
        with tx.transaction():
            for i in range(10):
                p.produce(topic, f"aborted-{i}".encode())
            p.flush(10)
            raise RuntimeError("processing failed")
    with tx.transaction():
        p.produce(topic, b"after")
    committed = [v for _, v in drain(settings, topic, expect=11)]
    assert committed == [f"committed-{i}".encode() for i in range(10)] + [b"after"]
    uncommitted = [v for _, v in drain(settings, topic, expect=21, isolation="read_uncommitted")]
    assert sum(1 for v in uncommitted if v and v.startswith(b"aborted")) == 10


def test_consume_process_produce_commits_offsets(settings: Settings, new_topic: Callable[..., str],
                                                 unique: Callable[[str], str]) -> None:
    src, dst, group = new_topic("src"), new_topic("dst"), unique("g")
    p = clients.producer(settings)
    for i in range(50):
        p.produce(src, str(i).encode())
    p.flush(10)
    c = clients.consumer(settings, group)
    c.subscribe([src])
    tp = clients.producer(settings, transactional_id=unique("tid"))
    tx = TransactionalSession(tp, c)
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 50 and time.monotonic() < deadline:
        msgs = c.consume(20, timeout=1.0)
        if not msgs:
            continue
        with tx.transaction(next_offsets(msgs)):
            for m in msgs:
                tp.produce(dst, m.value() + b"!")
        seen += len(msgs)
    committed = c.committed([TopicPartition(src, 0)], timeout=10)
    c.close()
    assert committed[0].offset == 50
    assert sorted(int(v[:-1]) for _, v in drain(settings, dst, expect=50)) == list(range(50))


def test_ensure_topic_is_idempotent(settings: Settings, unique: Callable[[str], str]) -> None:
    name = unique("models")
    assert ensure_topic(settings, name, 1, compacted=True) is True
    assert ensure_topic(settings, name, 1, compacted=True) is False
    assert list_topics(settings)[name] == 1
    assert topic_config(settings, name)["cleanup.policy"] == "compact"


def test_fenced_producer_is_classified_fatal(settings: Settings, new_topic: Callable[..., str],
                                             unique: Callable[[str], str]) -> None:
    topic, tid = new_topic("fence"), unique("tid")
    old = clients.producer(settings, transactional_id=tid)
    old_tx = TransactionalSession(old)
    old_tx.begin()
    old.produce(topic, b"zombie")
    old.flush(10)
    new = clients.producer(settings, transactional_id=tid)
    TransactionalSession(new)  # init_transactions fences the old epoch
    with pytest.raises(FatalError) as info:
        old_tx.commit()
        old.produce(topic, b"zombie-2")
        old.flush(5)
    assert info.value.code in {"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH"}
    assert drain(settings, topic, timeout=4) == []


def test_a_client_that_is_not_confluent_kafka(settings: Settings, new_topic: Callable[..., str]) -> None:
    kafka = pytest.importorskip("kafka")
    topic = new_topic("kp")
    producer = kafka.KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    for i in range(20):
        producer.send(topic, key=f"k{i}".encode(), value=f"from-kafka-python-{i}".encode())
    producer.flush(30)
    producer.close()
    # confluent-kafka reads what kafka-python wrote ...
    got = drain(settings, topic, expect=20)
    assert [v for _, v in got] == [f"from-kafka-python-{i}".encode() for i in range(20)]
    # ... and kafka-python reads what confluent-kafka wrote
    p = clients.producer(settings)
    p.produce(topic, b"from-confluent")
    p.flush(10)
    c = kafka.KafkaConsumer(topic, bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest",
                            consumer_timeout_ms=5000, isolation_level="read_committed")
    values = [m.value for m in c]
    c.close()
    assert values[-1] == b"from-confluent" and len(values) == 21
