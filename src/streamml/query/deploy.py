"""Deploy a continuous SQL statement as a stream pipeline, and watch one live.

``deploy("SELECT ... FROM payments WHERE ... EMIT CHANGES", to="big_payments")`` checks the
statement (:func:`~streamml.query.continuous.check`), builds the pipeline
``stream(<payments topic>).sql(<statement over the batch>).to("big_payments")`` and runs it
with the stream engine's worker: exactly-once (each micro-batch is one Kafka transaction
holding its outputs and input offsets), each output record keyed like its input record and
carrying its lineage headers. ``to="big"`` writes ``<ns>.features.big``; ``to="labels.x"``
writes ``<ns>.labels.x``; a name with more dots is a full topic name. A statement never writes
to the topic it reads.

A ksqlDB persistent query (``CREATE STREAM|TABLE x AS SELECT ...``, see
:mod:`streamml.query.ksql_compile`) is deployed without ``to``: it writes to its own topic
(the query's name upper-cased, or its ``KAFKA_TOPIC``), keyed as ksqlDB keys it. A file (or
text) of several statements is deployed by :func:`streamml.query.ksql_file.deploy_file`.

``changes(statement)`` runs the same statement over the live stream in this process and
yields its rows (a :class:`~streamml.query.tail.Tail`), without writing anything.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import polars as pl

from streamml.config import Settings
from streamml.errors import PipelineError, QueryError
from streamml.kafka import names
from streamml.query.continuous import check, to_batch_sql
from streamml.query.ksql import is_ksql
from streamml.query.ksql_compile import Query
from streamml.query.ksql_run import catalog, compile_query, is_transient
from streamml.query.reader import META_COLUMNS, Bound
from streamml.query.resolve import default_settings, resolve_topic
from streamml.query.statement import Statement, parse, quote, run_statement
from streamml.query.tail import Tail

if TYPE_CHECKING:
    from streamml.stream.pipeline import Pipeline

__all__ = ["Deployment", "deploy", "pipeline_for", "changes"]


def _source(st: Statement, settings: Settings) -> str:
    return resolve_topic(st.topic_names[0], settings)


def _sink(to: str, settings: Settings) -> str:
    """``name`` -> ``<ns>.features.<name>``; ``kind.name`` -> ``<ns>.<kind>.<name>``; else the full name."""
    return names.resolve_topic(to, settings.namespace, kind="features")


def pipeline_for(statement: str | Statement, to: str, *, name: str | None = None,
                 settings: Settings | None = None) -> "Pipeline":
    """The stream pipeline that runs ``statement`` over every micro-batch and writes to ``to``."""
    from streamml.stream import stream

    s = settings or default_settings()
    st = check(statement)
    sink, source = _sink(to, s), _source(st, s)
    if sink == source:
        raise QueryError(f"the statement would write to the topic it reads ({source})",
                         hint="write to another topic, e.g. to='features.<name>'")
    return stream(source, name=name or f"sql-{sink.split('.')[-1]}").sql(to_batch_sql(st)).to(sink)


class Deployment:
    """A running continuous statement: a stream worker in a background thread (or the foreground).

    A ksqlDB query that groups by a column that is not its input's key runs two workers, one
    query: the re-key stage into its repartition topic, then the aggregation
    (:mod:`streamml.query.ksql_repartition`); ``stats`` are the aggregation's, ``stage_stats`` each one's.
    """

    def __init__(self, statement: str | Statement | Query, to: str | None = None, *, name: str | None = None,
                 settings: Settings | None = None, **options: Any) -> None:
        from streamml.stream.runner import RunOptions, Worker

        self.settings = settings or default_settings()
        before: list["Pipeline"] = []  # stages that run before self.pipeline (a repartition)
        self.query: Query | None = None
        self.query_id: str | None = None  # a ksqlDB query's id (SHOW QUERIES, TERMINATE)
        if isinstance(statement, Query) or (isinstance(statement, str) and is_ksql(statement)):
            if to is not None:
                raise QueryError("a ksqlDB statement names its own output topic",
                                 hint="drop to=...; set WITH (kafka_topic='...') in the statement")
            self.query = statement if isinstance(statement, Query) else compile_query(statement, self.settings)
            self.statement = parse(f"SELECT * FROM {quote(self.query.source.topic)}")
            self.pipeline = self.query.pipeline if name is None else self.query.pipeline.named(name)
            if self.query.repartition is not None:  # its re-key stage runs beside it, as one query
                pre = self.query.repartition
                before.append(pre if name is None else pre.named(f"{name}-repartition"))
        else:
            if to is None:
                raise QueryError("deploy needs to='topic' for a SELECT ... EMIT CHANGES")
            self.statement = check(statement)
            self.pipeline = pipeline_for(self.statement, to, name=name, settings=self.settings)
        self.source = self.pipeline.source_topic(self.settings)
        self.sink = self.pipeline.sink_topic(self.settings) or ""
        opts = RunOptions().with_(**options)
        self.worker = Worker(self.pipeline, self.settings, opts)
        #: every stage's worker, in start order (the re-key stage of a repartitioned query first)
        self.workers = [*(Worker(p, self.settings, opts) for p in before), self.worker]
        if self.query is not None:
            self.query_id = catalog(self.settings).start(self.query, self)
        self.error: BaseException | None = None
        self._threads: list[threading.Thread] = []

    @property
    def stage_stats(self) -> list[dict[str, int]]:
        """The counters of each stage's worker, in start order."""
        return [dict(w.stats) for w in self.workers]

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Deployment {self.pipeline.name}: {self.source} -> {self.sink}, {state}, {self.stats}>"

    def describe(self) -> str:
        """The statement and the pipeline topology that runs it."""
        text = self.query.text if self.query is not None else self.statement.text
        return "\n".join([text.strip(), *(w.pipeline.describe() for w in self.workers)])

    @property
    def stats(self) -> dict[str, int]:
        """Counters: batches, in, out, late, invalid, aborts."""
        return dict(self.worker.stats)

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def run(self, *, idle_exit: float | None = None, max_batches: int | None = None) -> dict[str, int]:
        """Run in this thread until :meth:`stop` (or idle for ``idle_exit`` seconds); a re-key
        stage runs in a background thread meanwhile and stops with it."""
        if len(self.workers) == 1:
            return self.worker.run(idle_exit=idle_exit, max_batches=max_batches)
        self._start_workers(self.workers[:-1])
        try:
            return self.worker.run(idle_exit=idle_exit, max_batches=max_batches)
        finally:
            for w in self.workers[:-1]:
                w.stop()
            for t in self._threads:
                t.join(30.0)
            if self.error is not None:
                raise self.error

    def _start_workers(self, workers: list[Any]) -> None:
        started: list[Any] = []
        try:
            for w in workers:  # in order: a stage's output topic is the next one's input
                w.start()
                started.append(w)
        except BaseException:
            for w in started:
                w.close(after_error=True)
            raise

        def loop(w: Any) -> None:
            try:
                w.run()
            except BaseException as exc:  # surfaced by stop()/wait()
                self.error = exc
                for other in self.workers:  # one query: a failed stage stops the others
                    other.stop()

        for w in workers:
            t = threading.Thread(target=loop, args=(w,), name=f"streamml-{w.pipeline.name}", daemon=True)
            self._threads.append(t)
            t.start()

    def start(self) -> "Deployment":
        """Run in background threads (one per stage); returns once the workers have their clients and topics."""
        if self._threads:
            raise PipelineError("this deployment was started already")
        self._start_workers(self.workers)
        return self

    def wait(self, out: int, timeout: float = 60.0) -> dict[str, int]:
        """Block until at least ``out`` records were written (or raise after ``timeout`` seconds)."""
        import time

        deadline = time.monotonic() + timeout
        while self.worker.stats["out"] < out:
            if self.error is not None:
                raise self.error
            if not self.running and self._threads:
                break
            if time.monotonic() > deadline:
                raise PipelineError(f"{self.pipeline.name} wrote {self.worker.stats['out']} of {out} records "
                                    f"in {timeout:.0f}s")
            time.sleep(0.05)
        return self.stats

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """Finish the current batch, commit it, close the clients; re-raise a failure of the loop."""
        for w in self.workers:
            w.stop()
        for t in self._threads:
            t.join(timeout)
        if self.error is not None:
            raise self.error
        return self.stats

    def __enter__(self) -> "Deployment":
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def deploy(statement: str, to: str | None = None, *, name: str | None = None, settings: Settings | None = None,
           start: bool = True, **options: Any) -> Deployment:
    """Run a continuous SQL statement as a pipeline writing to ``to``; returns the running :class:`Deployment`.

    ``options`` are the stream runner's options (``guarantee="at_least_once"``, ``max_batch``...).
    With ``start=False`` nothing runs until ``.start()`` or ``.run()``.
    """
    d = Deployment(statement, to, name=name, settings=settings, **options)
    return d.start() if start else d


def batch_function(statement: str | Statement) -> Any:
    """The statement as a function over one decoded batch (metadata columns are dropped first)."""
    st = check(statement)
    name = st.topic_names[0]

    def apply(df: pl.DataFrame) -> pl.DataFrame:
        out: pl.DataFrame = run_statement(st, {name: df.drop([c for c in META_COLUMNS if c in df.columns])})
        return out

    return apply


def changes(statement: str, *, from_: Bound | str = "end", max_records: int | None = None,
            timeout: float | None = None, idle_timeout: float | None = None,
            settings: Settings | None = None) -> Tail:
    """The rows a continuous statement emits from now on (``from_`` as for ``tail``), as a generator.

    A ksqlDB push query (``SELECT ... FROM <declared stream> ... EMIT CHANGES [LIMIT n]``) runs on
    the stream engine in this process (see :mod:`streamml.query.ksql_push`)."""
    s = settings or default_settings()
    if is_transient(statement, s):
        from streamml.query.ksql_push import parse_push, push

        live = push(parse_push(statement), catalog(s), s, from_=from_, timeout=timeout, idle_timeout=idle_timeout)
        if max_records is not None:
            live.max_records = max_records if live.max_records is None else min(max_records, live.max_records)
        return live
    st = check(statement)
    return Tail(_source(st, s), settings=s, from_=from_, max_records=max_records, timeout=timeout,
                idle_timeout=idle_timeout, transform=batch_function(st), resolve=False)
