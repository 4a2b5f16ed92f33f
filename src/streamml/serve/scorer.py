"""The stream scorer: features in, predictions out, one model call per batch, models swapped between batches.

Each loop turn: swap in any verified successor models; consume up to ``batch_size``
feature records; decode them in one call; reject rows that cannot be scored (to
``<ns>.dlq`` with the reason); let the strategy score the rest (one model call per model);
write the predictions to ``<ns>.predictions.<model>`` with lineage headers. In
``exactly-once`` mode the predictions, dead letters, shadow records and the input offsets
commit in one transaction per batch; a restarted or rebalanced scorer resumes exactly
where the last committed batch ended. In ``at-least-once`` mode offsets are committed
once every prediction before them has been acknowledged.

A prediction record (value, JSON)::

    {"event_id": "e17", "model": "fraud", "model_version": 4, "score": 0.93, "label": 1,
     "latency_ms": 3.1, "event_time": 1700000000170, ...strategy fields}

``latency_ms`` is the serving latency: from the batch's arrival to its scoring done.
"""

from __future__ import annotations

import gc
import io
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import orjson
import polars as pl
from confluent_kafka import Message, Producer, TopicPartition

from streamml import headers as H
from streamml.config import Settings
from streamml.errors import AbortableError, AuthorizationError, ConfigError, FatalError, ServingError, ValidationError
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic, list_topics
from streamml.kafka.errors import classify
from streamml.kafka.message import offset_of, tp_of
from streamml.kafka.produce import Headers, send, send_all
from streamml.kafka.transactions import TransactionalSession, rewind
from streamml.schema.batch import bad_rows, decode_json, encode_json
from streamml.serve.base import LoadedModel, ModelSource
from streamml.serve.features import to_matrix
from streamml.serve.strategies import Batch, Decision, Strategy
from streamml.serve.swap import ModelHost, SwapEvent

__all__ = ["ServeOptions", "Scorer", "ScorerStats", "MODES"]

MODES = ("exactly-once", "at-least-once")
MAX_RECOVERIES, RECOVERY_WINDOW_S = 5, 600.0  # more fatal errors than this in the window stop the scorer
_log = logging.getLogger("streamml.serve")


@dataclass(frozen=True)
class ServeOptions:
    """How a scorer runs. ``output_topic`` defaults to ``<ns>.predictions.<model>``;
    ``group`` to ``<ns>.serve.<model>``; ``instance`` (part of the transactional id) must be
    unique per process in the group and stable across its restarts. ``lineage_headers=False``
    leaves the per-record headers out (the same fields stay in the value): cheaper, but the
    records no longer honour the header contract — for measurements and trusted sinks only.
    ``follow_rollback=True`` swaps to an older version when the stage is rolled back to it
    (versions then go backwards once); by default a running scorer only moves forward and a
    rollback takes effect when it restarts."""

    input_topic: str
    output_topic: str | None = None
    mode: str = "exactly-once"
    group: str | None = None
    instance: str | None = None
    batch_size: int = 5000
    poll_timeout_s: float = 0.05
    id_column: str = "event_id"
    time_column: str = "event_time"
    keep: tuple[str, ...] = ()
    wait_for_model_s: float = 60.0
    transaction_timeout_ms: int = 15_000
    report_every_s: float = 10.0
    lineage_headers: bool = True
    follow_rollback: bool = False
    consumer: dict[str, Any] = field(default_factory=dict)
    producer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}", hint="use exactly-once or at-least-once")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")


@dataclass
class ScorerStats:
    """Counters since start."""

    batches: int = 0
    scored: int = 0
    rejected: int = 0
    aborted: int = 0
    swaps: int = 0
    refused: int = 0
    recoveries: int = 0
    versions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "scored": self.scored, "rejected": self.rejected,
                "aborted": self.aborted, "swaps": self.swaps, "refused": self.refused,
                "recoveries": self.recoveries, "versions": dict(self.versions)}


def _produce(p: Producer, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
    send(p, topic, value, key, headers=headers)


class Scorer:
    """Scores a features topic with a :class:`~streamml.serve.strategies.Strategy` over a :class:`ModelSource`."""

    def __init__(self, settings: Settings, strategy: Strategy, source: ModelSource, options: ServeOptions,
                 *, host: ModelHost | None = None) -> None:
        self.settings, self.strategy, self.options = settings, strategy, options
        model = strategy.primary.name
        self.output_topic = options.output_topic or settings.topic("predictions", model)
        self.shadow_topic = settings.topic("predictions", f"{model}-shadow")
        self.dlq_topic = settings.topic("dlq")
        self.metrics_topic = settings.topic("metrics")
        self.group = options.group or f"{settings.namespace}.serve.{model}"
        self.component = f"serve.{model}"
        self.stats = ScorerStats()
        self._columns: list[str] | None = None
        self._sample: pl.DataFrame | None = None
        self.host = host or ModelHost(source, strategy.roles, columns=lambda: self._columns,
                                      sample=self._sample_rows, on_event=self._on_event,
                                      follow_rollback=options.follow_rollback)
        self._reporter: Producer | None = None
        self._pending: list[list[TopicPartition]] = []
        self._last_report = time.monotonic()
        self.stop_event = threading.Event()
        self.consumer: Any = None
        self.producer: Producer | None = None
        self.tx: TransactionalSession | None = None
        self._started = False
        self._assigned = False
        self._delivery_error: Any = None
        self._recoveries: list[float] = []

    # -- model plumbing -----------------------------------------------------------------
    def _sample_rows(self, cols: tuple[str, ...]) -> np.ndarray | None:
        df = self._sample
        if df is None or not cols or any(c not in df.columns for c in cols):
            return None
        fm = to_matrix(df, cols)
        return fm.x if fm.x.shape[0] else None

    def _on_event(self, ev: SwapEvent) -> None:
        if ev.kind == "refused":
            self.stats.refused += 1
        self._report({"kind": "serve.model", "component": self.component, **ev.as_dict()})

    def _report(self, record: dict[str, Any]) -> None:
        try:
            if self._reporter is None:
                self._reporter = clients.producer(self.settings, linger_ms=0)
            send(self._reporter, self.metrics_topic, orjson.dumps(record), self.component.encode(),
                 headers=H.lineage(component=self.component))
            self._reporter.poll(0)
        except Exception:  # reporting is best effort; serving goes on
            _log.exception("could not report to %s", self.metrics_topic)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "Scorer":
        """Create topics and clients, load the newest good models, subscribe."""
        if self._started:
            return self
        o, s = self.options, self.settings
        topics = list_topics(s)
        if o.input_topic not in topics:
            raise ConfigError(f"input topic {o.input_topic} does not exist",
                              hint="run the feature pipeline first, or check --input")
        parts = topics[o.input_topic]
        wanted = [(self.output_topic, parts), (self.dlq_topic, 1), (self.metrics_topic, 1)]
        if any(r.stage != "production" for r in self.strategy.roles) and self.strategy.name == "shadow":
            wanted.append((self.shadow_topic, parts))
        for name, n in wanted:
            if name not in topics:
                ensure_topic(s, name, max(1, n))
        self._columns, self._sample = self._peek(o.input_topic)
        self.host.start(wait_for=self.strategy.primary, timeout=o.wait_for_model_s)
        gc.collect()
        gc.freeze()  # modules, models and clients live for the whole run: the collector need not scan them
        self._connect()
        self._started = True
        return self

    def _connect(self) -> None:
        """Create the consumer and producer and subscribe (at start, and after a recovery)."""
        o, s = self.options, self.settings
        conf: dict[str, Any] = {"session_timeout_ms": 10_000}
        if o.instance:  # static membership: a restarted instance takes its partitions back at once
            conf["group_instance_id"] = f"{self.group}.{o.instance}"
        conf.update(o.consumer)
        self.consumer = clients.consumer(s, self.group, **conf)
        if o.mode == "exactly-once":
            instance = o.instance or f"{socket.gethostname()}-{os.getpid()}"
            self.producer = clients.producer(s, transactional_id=f"{self.group}.{instance}",
                                             transaction_timeout_ms=o.transaction_timeout_ms, **o.producer)
            self.tx = TransactionalSession(self.producer, self.consumer)
        else:
            # at-least-once without a Python callback per record: the idempotent producer retries
            # without a deadline, so a prediction is only lost to a fatal client error, which
            # error_cb reports and which stops the scorer before it commits past it
            self.producer = clients.producer(s, message_timeout_ms=0, error_cb=self._client_error, **o.producer)
        self.consumer.subscribe([o.input_topic], on_assign=self._on_assign)

    def _recover(self, exc: FatalError) -> None:
        """Replace clients that a fatal error made unusable (fenced, or stuck on a lost group
        coordinator) with new ones. The new transactional producer fences the old one and aborts
        its open transaction; the new consumer starts from the committed offsets: nothing the
        old clients had not committed is lost or written twice. The old clients are closed in
        the background, since a stuck one may never return."""
        now = time.monotonic()
        self._recoveries = [t for t in self._recoveries if now - t < RECOVERY_WINDOW_S] + [now]
        if len(self._recoveries) > MAX_RECOVERIES or isinstance(exc, AuthorizationError) \
                or exc.code in ("UNSUPPORTED_VERSION", "TRANSACTIONAL_ID_AUTHORIZATION_FAILED"):
            raise exc
        self.stats.recoveries += 1
        _log.warning("%s; reconnecting (recovery %d)", exc, self.stats.recoveries)
        old = self.consumer
        self.consumer = self.producer = self.tx = None  # the producer goes with its last reference
        self._pending.clear()
        self._delivery_error = None
        threading.Thread(target=_close_quietly, args=(old,), name="close-fenced", daemon=True).start()
        time.sleep(1.0)
        self._connect()

    def _peek(self, topic: str, timeout: float = 2.0) -> tuple[list[str] | None, pl.DataFrame | None]:
        """The columns (and a few rows) of the newest records on ``topic``, so that even the first
        model is checked against the features it will meet; ``(None, None)`` for an empty topic."""
        c = clients.consumer(self.settings, f"{self.group}.peek")
        try:
            parts = c.list_topics(topic, timeout=10).topics[topic].partitions
            assign = []
            for p in sorted(parts)[:8]:
                low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                if high > low:
                    assign.append(TopicPartition(topic, p, max(low, high - 4)))
            if not assign:
                return None, None
            c.assign(assign)
            values: list[bytes] = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and len(values) < 4 * len(assign):
                values += [v for m in c.consume(100, timeout=0.2) if m.error() is None and (v := m.value())]
            bad = set(bad_rows(values))
            df = decode_json([v for i, v in enumerate(values) if i not in bad])
            return (df.columns, df) if df.width else (None, None)
        except Exception as exc:  # a peek that fails leaves the check to the first batch
            _log.info("could not peek at %s: %s", topic, exc)
            return None, None
        finally:
            c.close()

    def close(self) -> None:
        """Finish in-flight work, commit what was delivered, and release everything."""
        try:
            if self.producer is not None and self.options.mode == "at-least-once":
                self.producer.flush(30)
                self._commit_delivered(force=True)
            if self.consumer is not None:
                self.consumer.close()
        finally:
            self.host.stop()
            self.strategy.close()
            if self._reporter is not None:
                self._reporter.flush(5)
            self.consumer = None
            self._started = False

    def __enter__(self) -> "Scorer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop -----------------------------------------------------------------------
    def run(self, *, max_records: int | None = None, idle_exit_s: float | None = None,
            on_batch: Callable[["Scorer", int], None] | None = None) -> ScorerStats:
        """Score until :attr:`stop_event` is set, ``max_records`` are handled, or no record came for
        ``idle_exit_s`` seconds after the first one."""
        self.start()
        idle_since: float | None = None
        try:
            while not self.stop_event.is_set():
                try:
                    n = self.step()
                except FatalError as exc:
                    self._recover(exc)
                    continue
                if n:
                    idle_since = time.monotonic()
                    if on_batch is not None:
                        on_batch(self, n)
                elif idle_exit_s is not None and idle_since is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
                if max_records is not None and self.stats.scored + self.stats.rejected >= max_records:
                    break
                if self.host.watcher.error is not None:
                    raise self.host.watcher.error
        finally:
            self.close()
        return self.stats

    def step(self) -> int:
        """One batch: swap models, consume, score, produce, commit. Returns records handled.

        The cyclic garbage collector is paused for the batch: a batch allocates tens of
        thousands of short-lived containers (header lists, messages) that reference counting
        frees anyway, and letting the collector scan them every few hundred allocations costs
        more than the scoring itself. It runs again, once, when the batch is done.
        """
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._step()
        finally:
            if enabled:
                gc.enable()

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        if partitions:
            self._assigned = True

    def _swap(self) -> None:
        for role, _old, new in self.host.swap():
            self.stats.swaps += 1
            self.stats.versions[str(role)] = new

    def _step(self) -> int:
        self._swap()
        msgs = self.consumer.consume(self.options.batch_size, timeout=self.options.poll_timeout_s)
        if self._assigned:  # partitions moved here: serve at least what the source has now
            self._assigned = False
            try:
                self.host.catch_up()
            except Exception as exc:  # the follower will still bring the version; serving goes on
                _log.warning("catching up with the model source failed: %s", exc)
            self._swap()
        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            else:
                e = classify(err, "consume: ")
                if isinstance(e, FatalError):
                    raise e
                _log.warning("%s", e)
        self._maybe_report()
        if not good:
            if self.options.mode == "at-least-once":
                self._out.poll(0)
                self._commit_delivered()
            return 0
        offsets = self._positions(good)
        if self.options.mode == "exactly-once":
            assert self.tx is not None, "an exactly-once scorer has a transactional session once started"
            try:
                with self.tx.transaction(offsets):
                    self._process(good)
            except AbortableError as exc:
                self.stats.aborted += 1
                _log.warning("batch aborted, rewinding: %s", exc)
                rewind(self.consumer, offsets)
                return 0
        else:
            self._process(good)
            self._pending.append(offsets)
            self._out.poll(0)
            self._commit_delivered()
        return len(good)

    @property
    def _out(self) -> Producer:
        """The producer of a started scorer."""
        if self.producer is None:
            raise ServingError("the scorer is not started", hint="call start() (or use it as a context manager)")
        return self.producer

    def _positions(self, msgs: list[Message]) -> list[TopicPartition]:
        """Offsets to commit after ``msgs``: the consumer's position on each partition it read
        (one call, instead of a pass over the batch)."""
        try:
            pos = self.consumer.position(self.consumer.assignment())
            out = [tp for tp in pos if tp.offset >= 0]
            if out:
                return out
        except Exception:  # fall back to reading the batch
            pass
        return _next_offsets(msgs)

    def _client_error(self, err: Any) -> None:
        if err is not None and err.fatal() and self._delivery_error is None:
            self._delivery_error = err
        else:
            _log.warning("producer: %s", err)

    def _commit_delivered(self, force: bool = False) -> None:
        """Commit offsets of batches whose predictions have all been acknowledged (at-least-once)."""
        if not self._pending:
            return
        p = self._out
        if len(p) and not force:
            if len(self._pending) < 8:
                return
            p.flush(60)
        if len(p):
            return
        if self._delivery_error is not None:  # never commit past a prediction that was not written
            err, self._delivery_error = self._delivery_error, None
            self._pending.clear()
            raise classify(err, "a prediction could not be delivered; its batch will be scored again: ")
        merged: dict[tuple[str, int], int] = {}
        for offs in self._pending:
            for tp in offs:
                merged[(tp.topic, tp.partition)] = max(merged.get((tp.topic, tp.partition), -1), tp.offset)
        self._pending.clear()
        try:
            self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in merged.items()],
                                 asynchronous=not force)
        except Exception as exc:  # a lost commit only means a replay (at-least-once)
            _log.warning("offset commit failed: %s", exc)

    def _maybe_report(self) -> None:
        if time.monotonic() - self._last_report >= self.options.report_every_s:
            self._last_report = time.monotonic()
            self._report({"kind": "serve.stats", "component": self.component, "at_ms": int(time.time() * 1000),
                          **self.stats.as_dict()})

    # -- one batch ----------------------------------------------------------------------
    def _decode(self, msgs: list[Message]) -> tuple[list[Message], pl.DataFrame]:
        values = [m.value() or b"" for m in msgs]
        joined = b"\n".join(values)
        if joined.count(b"\n") == len(values) - 1:  # fast path: Polars infers from the first rows
            try:
                df = pl.read_ndjson(io.BytesIO(joined))
                if df.height == len(values):
                    return msgs, df
            except Exception:  # a type change after the first rows, or a bad record: decode carefully
                pass
        try:
            return msgs, decode_json(values)
        except ValidationError:
            bad = set(bad_rows(values))
            for i in sorted(bad):
                self._dead_letter(msgs[i], "value is not a JSON object")
            keep = [m for i, m in enumerate(msgs) if i not in bad]
            try:
                return keep, decode_json([m.value() or b"" for m in keep])
            except ValidationError as exc:  # mixed types that no common schema fits: the batch is refused
                for m in keep:
                    self._dead_letter(m, f"batch could not be decoded: {exc}")
                return [], pl.DataFrame()

    def _dead_letter(self, m: Message, reason: str) -> None:
        self.stats.rejected += 1
        own = m.headers()
        hdrs: list[tuple[str, bytes | str | None]] = list(own) if isinstance(own, list) else []
        hdrs += [(H.SOURCE, f"{m.topic()}/{m.partition()}@{m.offset()}".encode()),
                                          (H.REASON, reason[:500].encode()),
                                          (H.COMPONENT, self.component.encode())]
        _produce(self._out, self.dlq_topic, m.value() or b"", m.key(), hdrs)

    def _process(self, msgs: list[Message]) -> None:
        t0 = time.perf_counter()
        o = self.options
        msgs, df = self._decode(msgs)
        if not msgs:
            return
        models = self.host.snapshot()
        cols = tuple(dict.fromkeys(c for m in models.values() if m is not None for c in m.input_columns))
        self._columns = df.columns
        fm = to_matrix(df, cols)
        if fm.rejected:
            for i, reason in fm.rejected.items():
                self._dead_letter(msgs[i], reason)
            rows = fm.rows.tolist()
            msgs = [msgs[i] for i in rows]
            df = df[rows]
        if not msgs:
            return
        self._sample = df.head(8)
        batch = Batch(df, [m.key() for m in msgs], o.id_column, x={cols: fm.x})
        decision = self.strategy.decide(models, batch)
        latency_ms = round((time.perf_counter() - t0) * 1000, 3)
        out = self._frame(batch, decision, latency_ms)
        self._emit(msgs, batch, decision, out)
        if decision.shadow is not None and decision.shadow.height:
            shadow = decision.shadow.with_columns(pl.lit(latency_ms).alias("latency_ms"))
            static = [(H.COMPONENT, self.component.encode())]
            p = self._out
            for m, v, eid in zip(msgs, encode_json(shadow), shadow["event_id"].to_list()):
                _produce(p, self.shadow_topic, v, m.key(), [(H.EVENT_ID, str(eid).encode()), *static])
        self.stats.batches += 1
        self.stats.scored += len(msgs)
        for role, model in models.items():
            if model is not None:
                self.stats.versions[str(role)] = model.version

    def _frame(self, batch: Batch, d: Decision, latency_ms: float) -> pl.DataFrame:
        n = len(batch)
        df = batch.df
        cols: dict[str, Any] = {}
        if batch.id_column in df.columns:
            cols["event_id"] = df[batch.id_column].cast(pl.String)
        else:
            cols["event_id"] = batch.event_ids()
        if d.which is None:
            cols["model"] = [d.by[0].name] * n
            cols["model_version"] = np.full(n, d.by[0].version, dtype=np.int64)
        else:
            cols["model"] = np.array([m.name for m in d.by], dtype=object)[d.which].tolist()
            cols["model_version"] = np.array([m.version for m in d.by], dtype=np.int64)[d.which]
        cols["score"] = d.scores.score
        if d.scores.label is not None:
            cols["label"] = d.scores.label
        cols["latency_ms"] = np.full(n, latency_ms)
        if self.options.time_column in df.columns:
            cols["event_time"] = df[self.options.time_column]
        for k in self.options.keep:
            if k in df.columns and k not in cols:
                cols[k] = df[k]
        for k, v in d.extra.items():
            cols[k] = v
        return pl.DataFrame(cols)

    def _emit(self, msgs: list[Message], batch: Batch, d: Decision, out: pl.DataFrame) -> None:
        values = encode_json(out)
        keys = [m.key() for m in msgs]
        p, topic = self._out, self.output_topic
        if not self.options.lineage_headers:
            send_all(p, topic, ((k, v, None) for v, k in zip(values, keys)))
            return
        ids = out["event_id"].cast(pl.Binary).to_list()
        tcol = self.options.time_column
        if tcol in batch.df.columns:
            times: list[Any] = batch.df[tcol].cast(pl.String).cast(pl.Binary).to_list()
        else:
            times = [H.as_dict(m.headers()).get(H.EVENT_TIME, "").encode() or None for m in msgs]
        if None in ids:
            ids = [i if i is not None else (H.as_dict(m.headers()).get(H.EVENT_ID, "").encode() or None)
                   for i, m in zip(ids, msgs)]
        comp = self.component.encode()
        statics = [((H.MODEL, m.name.encode()), (H.MODEL_VERSION, str(m.version).encode()), (H.COMPONENT, comp))
                   for m in d.by]
        if d.which is None and None not in ids and None not in times:
            s0, s1, s2 = statics[0]
            headers = [[(H.EVENT_ID, i), (H.EVENT_TIME, t), s0, s1, s2] for i, t in zip(ids, times)]
        else:
            which = d.which.tolist() if d.which is not None else [0] * len(values)
            headers = [[h for h in ((H.EVENT_ID, i), (H.EVENT_TIME, t)) if h[1] is not None] + list(statics[w])
                       for i, t, w in zip(ids, times, which)]
        send_all(p, topic, zip(keys, values, headers))


def _close_quietly(consumer: Any) -> None:
    try:
        if consumer is not None:
            consumer.close()
    except Exception:  # a fenced consumer may refuse to leave its group cleanly
        pass


def _next_offsets(msgs: list[Message]) -> list[TopicPartition]:
    """The offset after the last message of each partition (messages arrive in offset order)."""
    last: dict[tuple[str, int], int] = {}
    for m in msgs:
        last[tp_of(m)] = offset_of(m)
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]


def models_of(host: ModelHost) -> dict[str, LoadedModel | None]:
    """The current model of each role, by role name (for logs and status)."""
    return {str(r): m for r, m in host.snapshot().items()}
