"""The live run of a pipeline: a :class:`Worker` is the pipeline's processor on the shared runtime.

The runtime (:mod:`streamml.runtime`) owns polling, transactions, offsets, rebalances,
errors, recovery and the watchdog; this module only says what one batch means for a
pipeline: decode the batch at once, run the engine over it, produce the outputs, dead
letters and changelog records, and move the engine's state forward once the batch is
durable (exactly-once: its transaction committed; at-least-once: its outputs are produced).

Exactly-once is the default: each micro-batch is one transaction holding its outputs, dead
letters, changelog records and the input offsets. The transactional id and the static
member id are ``<group>.<instance>``: a restarted instance fences its predecessor, and
distinct instances (other processes, other hosts) share the group's partitions.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any, Callable

from confluent_kafka import Message, TopicPartition

from streamml.config import Settings
from streamml.errors import PipelineError
from streamml.kafka.admin import TopicSpec, ensure_topics, list_topics
from streamml.kafka.produce import send_all
from streamml.runtime import Clients, Loop, LoopOptions, Processor
from streamml.stream.engine import Engine, RawBatch, StepResult
from streamml.stream.pipeline import Join, Pipeline
from streamml.stream.state import StateManager

__all__ = ["RunOptions", "Worker", "run", "group_id"]

_log = logging.getLogger("streamml.stream")

RunOptions = LoopOptions
"""How a worker runs: the runtime's :class:`~streamml.runtime.LoopOptions`."""


def group_id(settings: Settings, pipeline: Pipeline) -> str:
    """The consumer group of ``pipeline`` (also the prefix of its transactional ids)."""
    return f"{settings.namespace}.stream.{pipeline.name}"


class _PipelineProcessor(Processor[tuple[StepResult, list[Any]]]):
    """One batch of a pipeline, as the runtime calls it."""

    def __init__(self, worker: "Worker") -> None:
        self.w = worker

    def assigned(self, partitions: list[TopicPartition]) -> None:
        w = self.w
        new = sorted(tp.partition for tp in partitions if tp.topic == w.source)
        if w.state is not None and new:
            for _p, rows, stream_time in w.state.restore(new):
                w.engine.assign(rows, stream_time)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        w = self.w
        gone = sorted(tp.partition for tp in partitions if tp.topic == w.source)
        w.engine.revoke(gone)
        if w.state is not None:
            w.state.release(gone)

    def process(self, messages: list[Message], producer: Any) -> tuple[StepResult, list[Any]]:
        w = self.w
        for op in w.pipeline.ops:
            if isinstance(op, Join):
                op.table.refresh()
        raw = RawBatch.from_messages(messages, w.source, timestamps=w.engine.needs_timestamps,
                                     topics=w.engine.join is not None)
        result = w.engine.process(raw)
        send_all(producer, w.sink, zip(result.keys, result.values, result.headers), timestamps=result.timestamps)
        if result.dlq:
            send_all(producer, w.dlq, result.dlq)
        if result.changelog and w.state is not None:
            cb, topic = w.state.on_delivery, w.state.changelog
            for p, k, v in result.changelog:
                send_all(producer, topic, ((k, v, None),), partition=p, on_delivery=cb)
        producer.poll(0)
        return result, messages

    def committed(self, done: tuple[StepResult, list[Any]]) -> None:
        result, messages = done
        w = self.w
        if w.pipeline.purge_source is not None and w.options.guarantee == "exactly-once":
            w.purge(messages)
        w.engine.commit(result)
        if w.state is not None and result.changelog:
            w.state.apply(result.changelog)
        s = w.stats
        s["batches"] += 1
        s["in"] += result.n_in
        s["out"] += len(result.values)
        s["late"] += result.n_late
        s["invalid"] += result.n_invalid
        if w.on_event is not None:
            w.emit_event("batch", {"partitions": sorted({m.partition() for m in messages}), "in": result.n_in,
                               "out": len(result.values)})

    def aborted(self, error: Exception) -> None:
        self.w.stats["aborts"] += 1


class Worker:
    """One member's share of a pipeline: the partitions the group gives it."""

    def __init__(self, pipeline: Pipeline, settings: Settings, options: LoopOptions | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None, *,
                 clients: Clients | None = None, on_stuck: Callable[[float, str], None] | None = None) -> None:
        if pipeline.sink_name is None:
            raise PipelineError(f"pipeline {pipeline.name} has no sink", hint="end it with .to('name')")
        self.pipeline = pipeline
        self.settings = settings
        self.options = options or LoopOptions()
        if pipeline.join_op is not None and "partition_assignment_strategy" not in self.options.consumer:
            # a stream join's task p reads partition p of both topics: the range assignor gives both to
            # one member (the default cooperative-sticky one may split them)
            self.options = self.options.with_(consumer={**self.options.consumer,
                                                        "partition_assignment_strategy": "range"})
        self.on_event = on_event
        self.engine = Engine(pipeline)
        self.source = pipeline.source_topic(settings)
        self.sink = pipeline.sink_topic(settings) or ""
        self.dlq = settings.topic("dlq")
        self.group = group_id(settings, pipeline)
        self.stats = {"batches": 0, "in": 0, "out": 0, "late": 0, "invalid": 0, "aborts": 0}
        self.state: StateManager | None = None
        join = pipeline.join_op
        self.other: str | None = join.right_topic if join is not None else None  # a stream join's second input
        topics = [self.source] + ([self.other] if self.other else [])
        self._consumed: dict[int, int] = {}  # purge_source: next offsets committed, per input partition
        self._purged_at = time.monotonic()
        self._admin: Any = None
        self.loop: Loop[Any] = Loop(settings, _PipelineProcessor(self), topics=topics, group=self.group,
                                    options=self.options, clients=clients, on_event=self._loop_event,
                                    on_stuck=on_stuck, name=f"stream.{pipeline.name}")
        self._started = False

    def purge(self, messages: list[Any]) -> None:
        """Delete the input records below the offsets just committed (exactly-once: the batch's
        transaction committed them), at most every ``pipeline.purge_source`` seconds, as Kafka
        Streams purges its repartition topics; the request is not waited for."""
        for m in messages:
            self._consumed[m.partition()] = max(self._consumed.get(m.partition(), 0), m.offset() + 1)
        now = time.monotonic()
        if now - self._purged_at < (self.pipeline.purge_source or 0.0) or not self._consumed:
            return
        self._purged_at = now
        if self._admin is None:
            from streamml.kafka.clients import admin

            self._admin = admin(self.settings)
        todo = [TopicPartition(self.source, p, o) for p, o in sorted(self._consumed.items())]
        self._consumed = {}
        name = self.pipeline.name

        def done(f: Any) -> None:
            if f.exception() is not None:  # a later purge deletes them: only said
                _log.warning("%s: cannot purge its input below the committed offsets: %s", name, f.exception())

        for fut in self._admin.delete_records(todo, operation_timeout=0).values():
            fut.add_done_callback(done)

    def emit_event(self, kind: str, info: dict[str, Any]) -> None:
        _log.debug("%s %s %s", self.pipeline.name, kind, info)
        if self.on_event is not None:
            self.on_event(kind, info)

    def _loop_event(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "batch":
            return  # the processor reports batches with their output counts
        if kind == "stopped":
            info = dict(self.stats)
        self.emit_event(kind, info)

    @property
    def owned(self) -> set[int]:
        """The input partitions this worker owns now."""
        return {p for t, p in self.loop.owned if t == self.source}

    def _prepare_topics(self) -> int:
        topics = list_topics(self.settings)
        if self.source not in topics:
            raise PipelineError(f"input topic {self.source} does not exist",
                                hint="create it (or ingest into it) before starting the pipeline")
        n = topics[self.source]
        if self.other is not None and topics.get(self.other) != n:
            raise PipelineError(f"a stream join needs co-partitioned inputs: {self.source} has {n} partitions, "
                                f"{self.other} {topics.get(self.other, 'none (it does not exist)')}",
                                hint="give both topics the same partition count (e.g. re-key one side with "
                                     "PARTITION BY into a topic created beforehand with as many partitions)")
        specs = [TopicSpec(t, p, config=dict(self.pipeline.sink_config) if t == self.sink else {})
                 for t, p in ((self.sink, n), (self.dlq, 1)) if t not in topics]
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
        """Create topics, stores and clients; fence older instances of this member."""
        if self._started:
            return
        self._prepare_topics()
        for op in self.pipeline.ops:
            if isinstance(op, Join):
                op.table.start(self.settings)
        if self.pipeline.stateful:
            self.state = StateManager(self.settings, self.pipeline.name,
                                      self.pipeline.changelog_topic(self.settings), on_event=self.emit_event)
        self.loop.start()
        self._started = True

    def stop(self) -> None:
        """Ask the loop to finish its current batch and stop (safe from signal handlers)."""
        self.loop.stop()

    def close(self, *, after_error: bool = False) -> None:
        """Release the clients and stores. After an error a failing flush does not hide the error."""
        try:
            self.loop.close(after_error=after_error)
        finally:
            if self.state is not None:
                self.state.close()
            for op in self.pipeline.ops:
                if isinstance(op, Join):
                    op.table.stop()
            self._started = False

    def run(self, *, idle_exit: float | None = None, max_batches: int | None = None,
            max_records: int | None = None) -> dict[str, int]:
        """Process until :meth:`stop`, ``idle_exit`` seconds without input, ``max_batches`` batches
        or ``max_records`` input records; returns the counters."""
        try:
            self.start()
            self.loop.run(idle_exit=idle_exit, max_batches=max_batches, max_records=max_records)
        except BaseException:
            self.close(after_error=True)
            raise
        self.close()
        return dict(self.stats)


def run(pipeline: Pipeline, settings: Settings, *, options: LoopOptions | None = None,
        handle_signals: bool = True, **kw: Any) -> dict[str, int]:
    """Run ``pipeline`` in this process until SIGINT/SIGTERM (``kw`` are :class:`RunOptions` fields
    and ``idle_exit`` / ``max_batches`` / ``max_records``)."""
    fields = LoopOptions.__dataclass_fields__
    opts = (options or LoopOptions()).with_(**{k: v for k, v in kw.items() if k in fields})
    worker = Worker(pipeline, settings, opts)
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: worker.stop())
    extra = {k: v for k, v in kw.items() if k in ("idle_exit", "max_batches", "max_records")}
    return worker.run(**extra)
