"""The stream scorer: features in, predictions out, one model call per batch, models swapped between batches.

Each turn of the shared runtime loop (:mod:`streamml.runtime`): swap in any verified
successor models; consume up to ``batch_size`` feature records; decode them in one call;
reject rows that cannot be scored (to ``<ns>.dlq`` with the reason); let the strategy score
the rest (one model call per model);
write the predictions to ``<ns>.predictions.<model>`` with lineage headers. In
``exactly-once`` mode the predictions, dead letters, shadow records and the input offsets
commit in one transaction per batch; a restarted or rebalanced scorer resumes exactly
where the last committed batch ended. In ``at-least-once`` mode offsets are committed
once every prediction before them has been acknowledged.

A prediction record (value, JSON)::

    {"event_id": "e17", "model": "fraud", "model_version": 4, "score": 0.93, "label": 1,
     "latency_ms": 3.1, "event_time": 1700000000170, ...strategy fields}

``latency_ms`` is the serving latency: from the batch's arrival to its scoring done. The
headers carry the event id, event time and (when the features carry it) ingest time of the
input, the model, its version and the component: the monitor measures ingest -> prediction and
event time -> prediction from them.
"""

from __future__ import annotations

import gc
import io
import logging
import os
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
from streamml.errors import ConfigError, ValidationError
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic, list_topics
from streamml.kafka.produce import Headers, send, send_all
from streamml.kafka.read import pin, read_ranges
from streamml.runtime import GUARANTEES, Clients, Loop, LoopOptions, Processor, instance_id, normalise_guarantee
from streamml.schema.batch import bad_rows, decode_json, encode_json
from streamml.serve.base import LoadedModel, ModelSource
from streamml.serve.features import to_matrix
from streamml.serve.strategies import Batch, Decision, Strategy
from streamml.serve.swap import ModelHost, SwapEvent

__all__ = ["ServeOptions", "Scorer", "ScorerStats", "MODES"]

MODES = GUARANTEES
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
        object.__setattr__(self, "mode", normalise_guarantee(self.mode))
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        self.loop_options()  # checks the instance id

    def loop_options(self) -> LoopOptions:
        """The runtime's options for this scorer: ``mode`` is the guarantee, ``batch_size`` the
        largest batch, ``poll_timeout_s`` the wait for the first record of a batch."""
        return LoopOptions(guarantee=self.mode, instance=self.instance or instance_id(os.getpid()),
                           static_membership=self.instance is not None, max_batch=self.batch_size,
                           idle_wait_s=self.poll_timeout_s, transaction_timeout_ms=self.transaction_timeout_ms,
                           consumer=dict(self.consumer), producer=dict(self.producer))


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


@dataclass
class _BatchCounts:
    scored: int = 0
    rejected: int = 0
    versions: dict[str, int] = field(default_factory=dict)


class _ScoreProcessor(Processor[_BatchCounts]):
    """One batch of a scorer, as the runtime calls it."""

    def __init__(self, scorer: "Scorer") -> None:
        self.s = scorer

    def assigned(self, partitions: list[TopicPartition]) -> None:
        try:  # partitions moved here: serve at least what the source has now
            self.s.host.catch_up()
        except Exception as exc:  # the follower will still bring the version; serving goes on
            _log.warning("catching up with the model source failed: %s", exc)
        self.s.swap()

    def tick(self) -> None:
        self.s.swap()
        self.s.maybe_report()

    def process(self, messages: list[Message], producer: Any) -> _BatchCounts:
        """Score one batch with the cyclic garbage collector paused: a batch allocates tens of
        thousands of short-lived containers (header lists, rows) that reference counting frees
        anyway, and letting the collector scan them costs more than the scoring itself."""
        counts = _BatchCounts()
        enabled = gc.isenabled()
        gc.disable()
        try:
            self.s.score_batch(messages, producer, counts)
        finally:
            if enabled:
                gc.enable()
        return counts

    def committed(self, result: _BatchCounts) -> None:
        st = self.s.stats
        st.batches += 1
        st.scored += result.scored
        st.rejected += result.rejected
        st.versions.update(result.versions)

    def aborted(self, error: Exception) -> None:
        self.s.stats.aborted += 1


class Scorer:
    """Scores a features topic with a :class:`~streamml.serve.strategies.Strategy` over a :class:`ModelSource`.

    The consume -> score -> produce loop is the shared runtime's :class:`~streamml.runtime.Loop`:
    its batching, transactions, rebalances, error policy, recovery and watchdog are the
    stream workers'. ``instance`` is the member id (transactional id and static member id
    ``<group>.<instance>``); without one each process is a dynamic member with the id
    ``<host>-<pid>``, so scorers started without ``--instance`` never fence each other.
    """

    def __init__(self, settings: Settings, strategy: Strategy, source: ModelSource, options: ServeOptions,
                 *, host: ModelHost | None = None, clients: Clients | None = None) -> None:
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
        self._last_report = time.monotonic()
        self.loop: Loop[_BatchCounts] = Loop(settings, _ScoreProcessor(self), topics=[options.input_topic],
                                             group=self.group, options=options.loop_options(), clients=clients,
                                             on_event=self._loop_event, name=self.component)
        self._started = False

    @property
    def stop_event(self) -> threading.Event:
        """Set it to stop :meth:`run` after the batch in flight."""
        return self.loop.stop_event

    @stop_event.setter
    def stop_event(self, event: threading.Event) -> None:
        self.loop.stop_event = event

    @property
    def consumer(self) -> Any:
        return self.loop.consumer

    @property
    def producer(self) -> Any:
        return self.loop.producer

    def _loop_event(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "recovered":
            self.stats.recoveries += 1

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

    def swap(self) -> None:
        """Swap in the verified successor models (between batches)."""
        for role, _old, new in self.host.swap():
            self.stats.swaps += 1
            self.stats.versions[str(role)] = new

    def maybe_report(self) -> None:
        if time.monotonic() - self._last_report >= self.options.report_every_s:
            self._last_report = time.monotonic()
            self._report({"kind": "serve.stats", "component": self.component, "at_ms": int(time.time() * 1000),
                          **self.stats.as_dict()})

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "Scorer":
        """Create topics, load the newest good models, create the clients and subscribe."""
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
        self.loop.start()
        self._started = True
        return self

    def _peek(self, topic: str, timeout: float = 2.0) -> tuple[list[str] | None, pl.DataFrame | None]:
        """The columns (and a few rows) of the newest records on ``topic``, so that even the first
        model is checked against the features it will meet; ``(None, None)`` for an empty topic."""
        try:
            tail = [r for r in pin(self.settings, topic, start=-4) if len(r)][:8]
            values = [v for batch in read_ranges(self.settings, tail, idle_timeout=timeout, timeout=5 * timeout,
                                                 context=f"peeking at {topic}")
                      for m in batch if (v := m.value())]
            if not values:
                return None, None
            bad = set(bad_rows(values))
            df = decode_json([v for i, v in enumerate(values) if i not in bad])
            return (df.columns, df) if df.width else (None, None)
        except Exception as exc:  # a peek that fails leaves the check to the first batch
            _log.info("could not peek at %s: %s", topic, exc)
            return None, None

    def close(self, *, after_error: bool = False) -> None:
        """Finish in-flight work, commit what was delivered, and release everything."""
        try:
            self.loop.close(after_error=after_error)
        finally:
            self.host.stop()
            self.strategy.close()
            if self._reporter is not None:
                self._reporter.flush(5)
            self._started = False

    def __enter__(self) -> "Scorer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close(after_error=exc[0] is not None)

    # -- the loop -----------------------------------------------------------------------
    def run(self, *, max_records: int | None = None, idle_exit_s: float | None = None,
            on_batch: Callable[["Scorer", int], None] | None = None) -> ScorerStats:
        """Score until :attr:`stop_event` is set, ``max_records`` are handled, or no record came for
        ``idle_exit_s`` seconds (counted from the last record or the last assignment)."""
        self.start()
        last_input = time.monotonic()
        try:
            while not self.stop_event.is_set():
                n = self.step()
                if n:
                    last_input = time.monotonic()
                    if on_batch is not None:
                        on_batch(self, n)
                elif idle_exit_s is not None and time.monotonic() - max(last_input, self.loop.last_input) \
                        > idle_exit_s:
                    break
                if max_records is not None and self.stats.scored + self.stats.rejected >= max_records:
                    break
                if self.host.watcher.error is not None:
                    raise self.host.watcher.error
        except BaseException:
            self.close(after_error=True)
            raise
        self.close()
        return self.stats

    def step(self) -> int:
        """One loop turn of the runtime: swap models, consume, score, produce, commit.
        Returns the records handled (0 for an idle turn or an aborted batch)."""
        self.start()
        return self.loop.turn()

    # -- one batch ----------------------------------------------------------------------
    def _decode(self, msgs: list[Message], p: Producer, counts: _BatchCounts) -> tuple[list[Message], pl.DataFrame]:
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
                self._dead_letter(msgs[i], "value is not a JSON object", p, counts)
            keep = [m for i, m in enumerate(msgs) if i not in bad]
            try:
                return keep, decode_json([m.value() or b"" for m in keep])
            except ValidationError as exc:  # mixed types that no common schema fits: the batch is refused
                for m in keep:
                    self._dead_letter(m, f"batch could not be decoded: {exc}", p, counts)
                return [], pl.DataFrame()

    def _dead_letter(self, m: Message, reason: str, p: Producer, counts: _BatchCounts) -> None:
        counts.rejected += 1
        own = m.headers()
        hdrs: list[tuple[str, bytes | str | None]] = list(own) if isinstance(own, list) else []
        hdrs += [(H.SOURCE, f"{m.topic()}/{m.partition()}@{m.offset()}".encode()),
                 (H.REASON, reason[:500].encode()), (H.COMPONENT, self.component.encode())]
        _produce(p, self.dlq_topic, m.value() or b"", m.key(), hdrs)

    def score_batch(self, msgs: list[Message], p: Producer, counts: _BatchCounts) -> None:
        """Decode, check, score and produce one batch into ``p`` (inside its transaction)."""
        t0 = time.perf_counter()
        o = self.options
        msgs, df = self._decode(msgs, p, counts)
        if not msgs:
            return
        models = self.host.snapshot()
        cols = tuple(dict.fromkeys(c for m in models.values() if m is not None for c in m.input_columns))
        self._columns = df.columns
        fm = to_matrix(df, cols)
        if fm.rejected:
            for i, reason in fm.rejected.items():
                self._dead_letter(msgs[i], reason, p, counts)
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
        self._emit(msgs, batch, decision, out, p)
        if decision.shadow is not None and decision.shadow.height:
            shadow = decision.shadow.with_columns(pl.lit(latency_ms).alias("latency_ms"))
            static = [(H.COMPONENT, self.component.encode())]
            for m, v, eid in zip(msgs, encode_json(shadow), shadow["event_id"].to_list()):
                _produce(p, self.shadow_topic, v, m.key(), [(H.EVENT_ID, str(eid).encode()), *static])
        counts.scored += len(msgs)
        for role, model in models.items():
            if model is not None:
                counts.versions[str(role)] = model.version

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

    def _emit(self, msgs: list[Message], batch: Batch, d: Decision, out: pl.DataFrame, p: Producer) -> None:
        values = encode_json(out)
        keys = [m.key() for m in msgs]
        topic = self.output_topic
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
        # when ingest accepted the event (carried from the features): the monitor's ingest -> prediction
        ingest = [_ingest_time(m.headers()) for m in msgs]
        comp = self.component.encode()
        statics = [((H.MODEL, m.name.encode()), (H.MODEL_VERSION, str(m.version).encode()), (H.COMPONENT, comp))
                   for m in d.by]
        if d.which is None and None not in ids and None not in times and None not in ingest:
            s0, s1, s2 = statics[0]
            headers = [[(H.EVENT_ID, i), (H.EVENT_TIME, t), (H.INGEST_TIME, g), s0, s1, s2]
                       for i, t, g in zip(ids, times, ingest)]
        else:
            which = d.which.tolist() if d.which is not None else [0] * len(values)
            headers = [[h for h in ((H.EVENT_ID, i), (H.EVENT_TIME, t), (H.INGEST_TIME, g)) if h[1] is not None]
                       + list(statics[w]) for i, t, g, w in zip(ids, times, ingest, which)]
        send_all(p, topic, zip(keys, values, headers))


def _ingest_time(headers: Any) -> bytes | None:
    for k, v in headers or ():
        if k == H.INGEST_TIME:
            return v  # type: ignore[no-any-return]
    return None


def models_of(host: ModelHost) -> dict[str, LoadedModel | None]:
    """The current model of each role, by role name (for logs and status)."""
    return {str(r): m for r, m in host.snapshot().items()}
