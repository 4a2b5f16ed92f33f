"""The live run loop: consume a batch, process it as a whole, produce, commit — exactly once.

Exactly-once (the default): one transactional producer per worker process, with the
transactional id ``<group>.w<index>`` so that a restarted worker fences its predecessor
(``init_transactions`` aborts whatever the zombie left open). Each micro-batch is one
transaction holding its outputs, dead letters, changelog records and the input offsets
(``send_offsets_to_transaction`` with the consumer's group metadata, so a worker that lost
its partitions in a rebalance cannot commit for them: KIP-447). Errors are handled by
class: retriable calls are retried inside the session; an abortable error aborts the
transaction, rewinds the consumer to the committed offsets and reprocesses the batch from
the committed state (the engine's state only moves after a commit); a fatal error stops
the worker.

At-least-once: outputs and changelog are produced and flushed, then the offsets are
committed; a crash in between repeats (part of) a batch.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal

from confluent_kafka import KafkaError as CKError
from confluent_kafka import KafkaException, Message

from streamml.config import Settings
from streamml.errors import AbortableError, FatalError, KafkaError, PipelineError, RetriableError
from streamml.kafka import clients
from streamml.kafka.admin import TopicSpec, ensure_topics, list_topics
from streamml.kafka.errors import classify
from streamml.kafka.transactions import TransactionalSession, rewind
from streamml.stream.engine import Engine, RawBatch, StepResult
from streamml.stream.pipeline import Join, Pipeline
from streamml.stream.state import StateManager

__all__ = ["RunOptions", "Worker", "run", "group_id"]

_log = logging.getLogger("streamml.stream")
Guarantee = Literal["exactly_once", "at_least_once"]


@dataclass(frozen=True)
class RunOptions:
    """How a worker runs. ``worker`` is this process's index (stable across restarts)."""

    guarantee: Guarantee = "exactly_once"
    worker: int = 0
    max_batch: int = 10_000
    poll_timeout: float = 0.2
    session_timeout_ms: int = 10_000
    transaction_timeout_ms: int = 30_000
    static_membership: bool = True
    linger_ms: int = 5

    def with_(self, **changes: Any) -> "RunOptions":
        return replace(self, **changes)


def group_id(settings: Settings, pipeline: Pipeline) -> str:
    """The consumer group of ``pipeline`` (also the prefix of its transactional ids)."""
    return f"{settings.namespace}.stream.{pipeline.name}"


class Worker:
    """One worker process's share of a pipeline: the partitions the group gives it."""

    def __init__(self, pipeline: Pipeline, settings: Settings, options: RunOptions | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        if pipeline.sink_name is None:
            raise PipelineError(f"pipeline {pipeline.name} has no sink", hint="end it with .to('name')")
        self.pipeline = pipeline
        self.busy_since: float | None = None  # monotonic start of the batch under way
        self.settings = settings
        self.options = options or RunOptions()
        self.on_event = on_event
        self.engine = Engine(pipeline)
        self.source = pipeline.source_topic(settings)
        self.sink = pipeline.sink_topic(settings) or ""
        self.dlq = settings.topic("dlq")
        self.group = group_id(settings, pipeline)
        self.owned: set[int] = set()
        self.stats = {"batches": 0, "in": 0, "out": 0, "late": 0, "invalid": 0, "aborts": 0}
        self._stop = threading.Event()
        self.state: StateManager | None = None
        self.consumer: Any = None
        self.producer: Any = None
        self.tx: TransactionalSession | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def _event(self, kind: str, info: dict[str, Any]) -> None:
        _log.debug("%s %s %s", self.pipeline.name, kind, info)
        if self.on_event is not None:
            self.on_event(kind, info)

    def _prepare_topics(self) -> int:
        topics = list_topics(self.settings)
        if self.source not in topics:
            raise PipelineError(f"input topic {self.source} does not exist",
                                hint="create it (or ingest into it) before starting the pipeline")
        n = topics[self.source]
        specs = [TopicSpec(t, p) for t, p in ((self.sink, n), (self.dlq, 1)) if t not in topics]
        if self.pipeline.stateful:
            cl = self.pipeline.changelog_topic(self.settings)
            if cl in topics and topics[cl] != n:
                raise PipelineError(f"changelog {cl} has {topics[cl]} partitions, the input {n}",
                                    hint="the input's partition count must not change under a stateful pipeline")
            if cl not in topics:
                specs.append(TopicSpec(cl, n, compacted=True))
        ensure_topics(self.settings, specs)
        return n

    def start(self) -> None:
        """Create topics and clients; fence older instances of this worker."""
        opts = self.options
        self._prepare_topics()
        for op in self.pipeline.ops:
            if isinstance(op, Join):
                op.table.start(self.settings)
        if self.pipeline.stateful:
            self.state = StateManager(self.settings, self.pipeline.name,
                                      self.pipeline.changelog_topic(self.settings), on_event=self._event)
        eos = opts.guarantee == "exactly_once"
        tid = f"{self.group}.w{opts.worker}" if eos else None
        self.producer = clients.producer(self.settings, transactional_id=tid, linger_ms=opts.linger_ms,
                                         **({"transaction_timeout_ms": opts.transaction_timeout_ms} if eos else {}))
        overrides: dict[str, Any] = {"session_timeout_ms": opts.session_timeout_ms}
        if "max.poll.interval.ms" not in self.settings.kafka:   # the user's setting wins
            overrides["max_poll_interval_ms"] = 600_000          # room for a long state restore
        if opts.static_membership:
            overrides["group_instance_id"] = f"{self.group}.w{opts.worker}"
        self.consumer = clients.consumer(self.settings, self.group, **overrides)
        if eos:
            self.tx = TransactionalSession(self.producer, self.consumer)  # fences the zombie, if any
        self.consumer.subscribe([self.source], on_assign=self._on_assign, on_revoke=self._on_revoke,
                                on_lost=self._on_revoke)
        self._event("started", {"worker": opts.worker, "guarantee": opts.guarantee})

    def _on_assign(self, consumer: Any, parts: list[Any]) -> None:
        new = sorted(tp.partition for tp in parts if tp.topic == self.source and tp.partition not in self.owned)
        if not new:
            return
        if self.state is not None:
            for p, rows, stream_time in self.state.restore(new):
                self.engine.assign(rows, stream_time)
        self.owned |= set(new)
        self._event("assigned", {"partitions": new})

    def _on_revoke(self, consumer: Any, parts: list[Any]) -> None:
        gone = sorted(tp.partition for tp in parts if tp.topic == self.source)
        # batches commit before the next poll, so no transaction is open here
        self.engine.revoke(gone)
        if self.state is not None:
            self.state.release(gone)
        self.owned -= set(gone)
        self._event("revoked", {"partitions": gone})

    def stop(self) -> None:
        """Ask the loop to finish its current batch and stop."""
        self._stop.set()

    def close(self, *, after_error: bool = False) -> None:
        """Release the consumer, producer and stores. After an error (a fenced producer cannot
        flush) a failing flush is not allowed to hide the error that stopped the loop."""
        if self.consumer is not None:
            try:
                self.consumer.close()   # revokes: releases the stores
            except Exception:  # noqa: BLE001 - closing after a fatal error
                pass
            self.consumer = None
        if self.producer is not None:
            producer, self.producer = self.producer, None
            try:
                producer.flush(10)
            except KafkaException as exc:
                if not after_error:
                    raise classify(exc, "cannot flush the output on close: ") from None
        if self.state is not None:
            self.state.close()
        for op in self.pipeline.ops:
            if isinstance(op, Join):
                op.table.stop()
        self._event("stopped", dict(self.stats))

    # -- the loop ------------------------------------------------------------------------
    def run(self, *, idle_exit: float | None = None, max_batches: int | None = None,
            max_records: int | None = None) -> dict[str, int]:
        """Process until :meth:`stop`, ``idle_exit`` seconds without input, ``max_batches`` batches
        or ``max_records`` input records; returns the counters."""
        if self.consumer is None:
            self.start()
        last_input = time.monotonic()
        try:
            while not self._stop.is_set():
                if max_batches is not None and self.stats["batches"] >= max_batches:
                    break
                if max_records is not None and self.stats["in"] >= max_records:
                    break
                msgs = self.consumer.consume(self.options.max_batch, self.options.poll_timeout)
                if msgs:
                    msgs = self._valid(msgs)
                if not msgs:
                    if idle_exit is not None and time.monotonic() - last_input > idle_exit:
                        break
                    continue
                last_input = self.busy_since = time.monotonic()
                try:
                    self._batch(msgs)
                finally:
                    self.busy_since = None
        except BaseException:
            self.close(after_error=True)
            raise
        self.close()
        return dict(self.stats)

    def _valid(self, msgs: list[Any]) -> list[Any]:
        if not any(map(Message.error, msgs)):
            return msgs  # librdkafka drops fetched messages of revoked partitions
        out = []
        for m in msgs:
            err = m.error()
            if err is None:
                out.append(m)
            elif err.code() != CKError._PARTITION_EOF:
                exc = classify(err, "consume: ")
                if isinstance(exc, FatalError):
                    raise exc
                _log.warning("%s", exc)
        return [m for m in out if m.partition() in self.owned]

    def _batch(self, msgs: list[Any]) -> None:
        for op in self.pipeline.ops:
            if isinstance(op, Join):
                op.table.refresh()
        raw = RawBatch.from_messages(msgs, self.source, timestamps=self.engine._needs_ts)
        offsets = raw.next_offsets()
        result = self.engine.process(raw)
        if self.tx is not None:
            try:
                with self.tx.transaction(offsets):
                    self._produce(result)
            except FatalError:
                raise
            except (AbortableError, RetriableError, KafkaError) as exc:
                self.stats["aborts"] += 1
                self._event("aborted", {"error": str(exc)})
                _log.warning("batch aborted, rewinding: %s", exc)
                rewind(self.consumer, offsets)
                return
        else:
            self._produce(result)
            left = self.producer.flush(60)
            if left:
                self._event("aborted", {"error": f"{left} records undelivered"})
                rewind(self.consumer, offsets)
                return
            try:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                err = classify(exc, "commit: ")
                if isinstance(err, FatalError):
                    raise err from None
                _log.warning("offset commit failed (the batch may repeat): %s", err)
        self.engine.commit(result)
        if self.state is not None and result.changelog:
            self.state.apply(result.changelog)
        self._count(result, msgs)

    def _count(self, result: StepResult, msgs: list[Any]) -> None:
        s = self.stats
        s["batches"] += 1
        s["in"] += result.n_in
        s["out"] += len(result.values)
        s["late"] += result.n_late
        s["invalid"] += result.n_invalid
        if self.on_event is not None:
            self._event("batch", {"partitions": sorted({m.partition() for m in msgs}), "in": result.n_in,
                                  "out": len(result.values)})

    def _produce(self, result: StepResult) -> None:
        producer = self.producer
        produce, sink = producer.produce, self.sink
        for k, v, h in zip(result.keys, result.values, result.headers):
            try:
                produce(sink, v, k, headers=h)
            except BufferError:
                producer.poll(0.5)
                produce(sink, v, k, headers=h)
        for k, v, h in result.dlq:
            producer.produce(self.dlq, v, k, headers=h)
        if result.changelog and self.state is not None:
            topic, cb = self.state.changelog, self.state.on_delivery
            for p, k, v in result.changelog:
                try:
                    produce(topic, v, k, partition=p, on_delivery=cb)
                except BufferError:
                    producer.poll(0.5)
                    produce(topic, v, k, partition=p, on_delivery=cb)
        producer.poll(0)


def run(pipeline: Pipeline, settings: Settings, *, options: RunOptions | None = None,
        handle_signals: bool = True, **kw: Any) -> dict[str, int]:
    """Run ``pipeline`` in this process until SIGINT/SIGTERM (``kw`` are :class:`RunOptions` fields)."""
    opts = (options or RunOptions()).with_(**{k: v for k, v in kw.items() if k in RunOptions.__dataclass_fields__})
    worker = Worker(pipeline, settings, opts)
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: worker.stop())
    extra = {k: v for k, v in kw.items() if k in ("idle_exit", "max_batches", "max_records")}
    return worker.run(**extra)
