"""The transactional consume → process → produce helper.

One micro-batch is one transaction: the outputs and the input offsets commit together,
or none of them do. Usage::

    tx = TransactionalSession(producer, consumer)   # producer has a transactional.id
    msgs = consumer.consume(500, timeout=1.0)
    with tx.transaction(next_offsets(msgs)):
        for m in msgs:
            producer.produce("out", m.value(), m.key())

On a RetriableError from commit the commit is retried; an AbortableError aborts and
re-raises so the caller rewinds and retries the batch; a FatalError (fenced: a newer
instance owns the transactional id) is raised for the caller to stop.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from streamml.errors import AbortableError, FatalError, RetriableError
from streamml.kafka.errors import classify

__all__ = ["TransactionalSession", "next_offsets", "rewind"]


def next_offsets(messages: Iterable[Message]) -> list[TopicPartition]:
    """For each topic-partition in ``messages``, the offset after the last one seen."""
    last: dict[tuple[str, int], int] = {}
    get = last.get
    for m in messages:  # every batch's hot path: plain calls, no per-record helpers
        if m.error() is None:
            key = (m.topic(), m.partition())
            o = m.offset()
            if o > get(key, -1):
                last[key] = o
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


def rewind(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    """Seek the consumer back to the committed position of each partition (after an abort)."""
    if not offsets:
        return
    committed = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in offsets], timeout=30)
    for tp in committed:
        target = tp.offset if tp.offset >= 0 else 0  # OFFSET_INVALID: from the beginning
        try:
            consumer.seek(TopicPartition(tp.topic, tp.partition, target))
        except KafkaException:
            pass  # partition no longer assigned: the new owner starts from the committed offset


def _bounded(send_offsets: Any, offsets: list[TopicPartition], meta: Any, seconds: float) -> None:
    """``send_offsets(offsets, meta, seconds)`` that returns within ``seconds`` (plus a grace).

    librdkafka can wait on a lost group coordinator past the timeout it was given
    (confluentinc/librdkafka#5456, #5511). Sending the offsets runs in a helper thread; when it
    does not come back the producer is given up as fenced: the caller stops, and a new
    instance with the same transactional id fences this one and aborts its transaction.
    """
    import threading

    box: list[BaseException | None] = []

    def call() -> None:
        try:
            send_offsets(offsets, meta, seconds)
            box.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box.append(exc)

    t = threading.Thread(target=call, name="send-offsets", daemon=True)
    t.start()
    t.join(seconds + 5.0)
    if not box:
        raise FatalError(f"send_offsets_to_transaction did not return within {seconds:.0f}s",
                         hint="the group coordinator was lost; a restarted worker fences this producer")
    if box[0] is not None:
        raise box[0]


class TransactionalSession:
    """Runs batches in Kafka transactions on one producer and one consumer."""

    def __init__(self, producer: Producer, consumer: Consumer | None = None, *, timeout: float = 60.0,
                 init: bool = True) -> None:
        self.producer = producer
        self.consumer = consumer
        self.timeout = timeout
        if init:
            self._call(producer.init_transactions, "init_transactions: ")

    def _call(self, fn: Any, context: str, retries: int = 5, deadline: float | None = None) -> Any:
        """``fn(seconds_left)``, retried on a RetriableError while ``retries`` and time remain.

        Without a deadline every attempt may take ``timeout``; with one, the attempts share it.
        """
        for attempt in range(retries + 1):
            left = self.timeout if deadline is None else deadline - time.monotonic()
            try:
                return fn(max(1.0, left))
            except KafkaException as exc:
                err = classify(exc, context)
                more_time = deadline is None or time.monotonic() < deadline
                if isinstance(err, RetriableError) and not isinstance(err, FatalError) \
                        and attempt < retries and more_time:
                    time.sleep(min(0.1 * 2**attempt, 2.0))
                    continue
                raise err from None
        return None

    def begin(self) -> None:
        self._call(lambda _: self.producer.begin_transaction(), "begin_transaction: ", retries=0)

    def commit(self, offsets: list[TopicPartition] | None = None) -> None:
        """Send ``offsets`` (if any) to the transaction, then commit it.

        Sending the offsets gets ``timeout`` in all: nothing is committed yet, so giving up
        aborts cleanly and the batch is retried. A commit that times out is retried, as
        librdkafka requires (it may already be under way on the broker)."""
        if offsets and self.consumer is not None:
            meta = self.consumer.consumer_group_metadata()
            self._call(lambda left: _bounded(self.producer.send_offsets_to_transaction, offsets, meta, left),
                       "send_offsets_to_transaction: ", deadline=time.monotonic() + self.timeout)
        self._call(self.producer.commit_transaction, "commit_transaction: ")

    def abort(self) -> None:
        try:
            self.producer.abort_transaction(self.timeout)
        except KafkaException as exc:
            err = classify(exc, "abort_transaction: ")
            if isinstance(err, FatalError):
                raise err from None

    @contextmanager
    def transaction(self, offsets: list[TopicPartition] | None = None) -> Iterator["TransactionalSession"]:
        """Begin; on normal exit commit (with ``offsets``); on an exception abort and re-raise.

        ``offsets`` may be filled in by the body: the list object is read at commit time.
        """
        self.begin()
        try:
            yield self
            self.producer.flush(self.timeout)
            self.commit(offsets)
        except FatalError:
            raise
        except BaseException as exc:
            self.abort()
            if isinstance(exc, KafkaException):
                err = classify(exc)
                if isinstance(err, FatalError):
                    raise err from None
                raise AbortableError(str(err), code=err.code) from None
            raise
