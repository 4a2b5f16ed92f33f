"""The fluent, immutable pipeline: a source topic, a chain of batch operators, a sink.

Every method returns a new :class:`Pipeline`; nothing runs until a runner executes it:
``streamml.stream.run(pipeline, settings)`` (live), ``streamml.stream.replay(pipeline,
settings)`` (history) or :class:`~streamml.stream.testing.TestDriver` (no broker). This
module imports none of them. Operators work on a whole micro-batch as a Polars DataFrame.

>>> import polars as pl
>>> from streamml.stream import stream, tumbling, count, mean
>>> p = (stream("payments")
...      .filter(pl.col("amount") > 0)
...      .with_columns(big=pl.col("amount") > 100)
...      .window(key="card", size=tumbling("1m"), time="ts")
...      .agg(n=count(), avg=mean("amount"))
...      .to("card_stats"))
>>> print(p.describe())
pipeline card_stats
  source   raw.payments (json)
  1 filter   [(col("amount")) > (dyn int: 0)]
  2 with_columns big=[(col("amount")) > (dyn int: 100)]
  3 window   key=card time=ts tumbling(size=60000ms, grace=0ms) emit=close late=count
             n=count() avg=mean(amount)
  sink     features.card_stats (json)
>>> len(p.fingerprint())
16
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Literal

import polars as pl

from streamml.errors import PipelineError
from streamml.kafka.names import resolve_topic
from streamml.stream.sessions import session_step
from streamml.stream.windows import Agg, WindowSpec, WindowState, WindowStep, sliding_step, tumbling, window_step

if TYPE_CHECKING:
    from streamml.config import Settings
    from streamml.stream.formats import ValueFormat
    from streamml.stream.table import Table

__all__ = ["Pipeline", "stream", "Operator", "Filter", "WithColumns", "MapBatch", "Sql", "Join", "Window",
           "WindowBuilder"]


class Operator:
    """One step over a batch. Stateless operators implement ``apply``."""

    kind = "op"
    one_to_one = True  # rows keep their identity (lineage carried through)

    def describe(self) -> str:
        raise NotImplementedError

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        raise NotImplementedError


@dataclass(frozen=True)
class Filter(Operator):
    predicate: pl.Expr
    kind = "filter"

    def describe(self) -> str:
        return str(self.predicate)

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.filter(self.predicate)


@dataclass(frozen=True)
class WithColumns(Operator):
    exprs: tuple[pl.Expr, ...]
    kind = "with_columns"

    def describe(self) -> str:
        return " ".join(f"{e.meta.output_name(raise_if_undetermined=False) or '?'}={e.meta.undo_aliases()}"
                        for e in self.exprs)

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        return df.with_columns(self.exprs)


@dataclass(frozen=True)
class MapBatch(Operator):
    fn: Callable[[pl.DataFrame], pl.DataFrame]
    name: str
    kind = "map_batch"
    one_to_one = False

    def describe(self) -> str:
        return self.name

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        out = self.fn(df)
        if not isinstance(out, pl.DataFrame):
            raise PipelineError(f"map_batch function {self.name} returned {type(out).__name__}",
                                hint="return a polars DataFrame")
        return out


@dataclass(frozen=True)
class Sql(Operator):
    query: str
    kind = "sql"
    one_to_one = False

    def describe(self) -> str:
        return " ".join(self.query.split())

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        import duckdb

        con = duckdb.connect()
        try:
            con.register("batch", df.to_arrow())
            out: pl.DataFrame = con.sql(self.query).pl()
            return out
        except duckdb.Error as exc:
            raise PipelineError(f"sql step failed: {exc}", hint="the batch is the table named 'batch'") from None
        finally:
            con.close()


@dataclass(frozen=True)
class Join(Operator):
    table: "Table"
    on: str
    how: str = "left"
    kind = "join"

    def describe(self) -> str:
        return f"{self.how} {self.table.describe()} on {self.on}"

    def apply(self, df: pl.DataFrame) -> pl.DataFrame:
        snap = self.table.snapshot()
        if snap.height == 0 and self.how == "left":
            cols = [c for c in snap.columns if c != self.table.key and c not in df.columns]
            return df.with_columns([pl.lit(None).alias(c) for c in cols])
        left, right = df, snap
        if left.schema.get(self.on) != right.schema.get(self.table.key) and self.on in left.columns:
            right = right.with_columns(pl.col(self.table.key).cast(left.schema[self.on], strict=False))
        return left.join(right, left_on=self.on, right_on=self.table.key, how=self.how,  # type: ignore[arg-type]
                         suffix="_table", maintain_order="left")


@dataclass(frozen=True)
class Window(Operator):
    """Keyed windowed aggregation; the one stateful operator (see :mod:`.windows`)."""

    key: str
    spec: WindowSpec
    time: str | None
    aggs: tuple[tuple[str, Agg], ...]
    emit: Literal["close", "update", "changes"] = "close"
    late: Literal["count", "dlq"] = "count"
    store: str = "window"
    kind = "window"
    one_to_one = False

    def describe(self) -> str:
        aggs = " ".join(f"{n}={a.describe()}" for n, a in self.aggs)
        return (f"key={self.key} time={self.time or '<record timestamp>'} {self.spec.describe()} "
                f"emit={self.emit} late={self.late}\n             {aggs}")

    def step(self, df: pl.DataFrame, state: WindowState) -> WindowStep:
        time = self.time or "__ts"
        missing = [c for c in (self.key, time) if c not in df.columns and df.height]
        if missing:
            raise PipelineError(f"window: column(s) {', '.join(missing)} not in the batch",
                                hint=f"batch columns: {', '.join(c for c in df.columns if not c.startswith('__'))}")
        if df.height and df.schema[time].is_temporal():
            df = df.with_columns(pl.col(time).dt.epoch("ms"))
        if self.spec.kind == "sliding":
            return sliding_step(df, state, key=self.key, time=time, spec=self.spec, aggs=dict(self.aggs))
        step = session_step if self.spec.kind == "session" else window_step
        return step(df, state, key=self.key, time=time, spec=self.spec, aggs=dict(self.aggs),
                           emit=self.emit, key_name=self.key)


@dataclass(frozen=True)
class WindowBuilder:
    """``pipeline.window(...)`` awaiting ``.agg(...)``."""

    pipeline: "Pipeline"
    key: str
    spec: WindowSpec
    time: str | None
    emit: Literal["close", "update", "changes"]
    late: Literal["count", "dlq"]

    def agg(self, **aggs: Agg) -> "Pipeline":
        """Name each aggregate: ``.agg(n=count(), avg=mean("amount"))``."""
        if not aggs:
            raise PipelineError("window(...).agg() needs at least one aggregate", hint="e.g. .agg(n=count())")
        for name, a in aggs.items():
            if not isinstance(a, Agg):
                raise PipelineError(f"aggregate {name!r} is not an aggregate",
                                    hint="use count(), sum(col), mean(col), ... from streamml.stream")
        op = Window(self.key, self.spec, self.time, tuple(aggs.items()), self.emit, self.late)
        return self.pipeline._add(op)  # noqa: SLF001 -- the window builder extends its own pipeline


def _resolve(name: str, kind: str, settings: "Settings | None") -> str:
    """``name`` as a topic of default ``kind`` (without settings: for display, no namespace)."""
    return resolve_topic(name, settings.namespace if settings is not None else None, kind=kind)


@dataclass(frozen=True)
class Pipeline:
    """An immutable description of a stream pipeline. Build one with :func:`stream`."""

    source_name: str
    ops: tuple[Operator, ...] = ()
    sink_name: str | None = None
    sink_key: str | None = None
    name_: str | None = None
    schema: tuple[tuple[str, Any], ...] | None = None
    record_key: bool = False    # batches carry the record key (bytes) as the column ``__record_key``
    record_time: bool = False   # batches carry the record timestamp (ms) as the column ``__ts``
    exact_topics: bool = False  # source and sink names are full topic names, never resolved
    value_format: "ValueFormat | None" = None  # how source values are read (None: JSON objects)
    sink_format: "ValueFormat | None" = None   # how output values are written (None: JSON objects)
    sink_config: tuple[tuple[str, str], ...] = ()  # topic configs of the sink, if the runner creates it
    purge_source: float | None = None  # an internal input: delete its committed records every this many seconds
    _extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # -- building -------------------------------------------------------------------------
    @classmethod
    def source(cls, topic: str, *, name: str | None = None, schema: dict[str, Any] | None = None) -> "Pipeline":
        """A pipeline reading JSON records from ``topic`` (``"payments"`` -> ``<ns>.raw.payments``).

        A name with a dot is taken as a full topic name. ``schema`` fixes column types.
        """
        return cls(topic, name_=name, schema=tuple(schema.items()) if schema else None)

    def _add(self, op: Operator) -> "Pipeline":
        if self.sink_name is not None:
            raise PipelineError("cannot add steps after .to(...)")
        if (isinstance(op, Window) or getattr(op, "stateful", False)) and self.stateful:
            raise PipelineError("a pipeline holds at most one window (or stream join) step",
                                hint="chain a second pipeline on the first one's output topic")
        return replace(self, ops=self.ops + (op,))

    def filter(self, predicate: pl.Expr) -> "Pipeline":
        """Keep the rows where ``predicate`` (a Polars expression) is true."""
        return self._add(Filter(predicate))

    def with_columns(self, *exprs: pl.Expr, **named: pl.Expr) -> "Pipeline":
        """Add or replace columns from Polars expressions."""
        all_exprs = tuple(exprs) + tuple(pl.lit(v) if not isinstance(v, pl.Expr) else v.alias(k)
                                         for k, v in named.items())
        return self._add(WithColumns(all_exprs))

    def map_batch(self, fn: Callable[[pl.DataFrame], pl.DataFrame], *, name: str | None = None) -> "Pipeline":
        """Apply ``fn`` to the whole batch (a DataFrame) and continue with what it returns."""
        return self._add(MapBatch(fn, name or str(getattr(fn, "__qualname__", "fn"))))

    def sql(self, query: str) -> "Pipeline":
        """Run a DuckDB query over the batch, which is the table ``batch``."""
        if "batch" not in query.lower():
            raise PipelineError("the sql step must read FROM batch", hint="e.g. SELECT a, b * 2 AS c FROM batch")
        return self._add(Sql(query))

    def join(self, table: "Table", *, on: str | None = None, how: str = "left") -> "Pipeline":
        """Look rows up in a :class:`~streamml.stream.table.Table` (``on`` defaults to its key)."""
        return self._add(Join(table, on or table.key, how))

    def stream_join(self, op: Operator) -> "Pipeline":
        """Join a second stream: ``op`` is a :class:`~streamml.stream.stream_join.StreamJoin`, the
        first step (it reads the source and ``op.right_topic`` together)."""
        if self.ops:
            raise PipelineError("a stream join is the first step of a pipeline",
                                hint="filter and project after the join")
        return self._add(op)

    @property
    def join_op(self) -> Any:
        """The stream join step (the first step), or ``None``."""
        return self.ops[0] if self.ops and getattr(self.ops[0], "stateful", False) else None

    def window(self, *, key: str, size: WindowSpec | int | str | None = None, time: str | None = None,
               emit: Literal["close", "update", "changes"] = "close",
               late: Literal["count", "dlq"] = "count") -> WindowBuilder:
        """Start a keyed window: ``.window(key="card", size=tumbling("1m", grace="10s"), time="ts")``.

        ``size`` is a :class:`WindowSpec` (or a duration for a tumbling window), e.g.
        ``session("5m")`` for sessions closed by 5 minutes of inactivity; ``time`` the
        event-time column (ms since epoch, or datetime), by default the record timestamp.
        The input topic must be partitioned by ``key`` (records of one key in one partition).
        """
        spec = size if isinstance(size, WindowSpec) else tumbling(size) if size is not None else None
        if spec is None:
            raise PipelineError("window needs size=tumbling(...), hopping(...), sliding(...) or session(...)",
                                hint='e.g. size=tumbling("1m") or size=session("5m", grace="30s")')
        if emit not in ("close", "update", "changes") or late not in ("count", "dlq"):
            raise PipelineError("emit must be 'close', 'update' or 'changes'; late must be 'count' or 'dlq'")
        return WindowBuilder(self, key, spec, time, emit, late)

    def to(self, name: str, *, key: str | None = None, config: dict[str, str] | None = None) -> "Pipeline":
        """Write the results to ``name`` (``"card_stats"`` -> ``<ns>.features.card_stats``).

        ``key`` names the column used as the record key; by default the window key after a
        window, otherwise the input record's key. ``config``: topic configs the sink is
        created with (when a runner creates it, with the input's partition count).
        """
        if self.sink_name is not None:
            raise PipelineError("the pipeline already has a sink")
        return replace(self, sink_name=name, sink_key=key, sink_config=tuple(sorted((config or {}).items())))

    # -- introspection -------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The pipeline's name: consumer group, state stores and lineage use it."""
        return self.name_ or (self.sink_name or self.source_name).replace(".", "_")

    def named(self, name: str) -> "Pipeline":
        return replace(self, name_=name)

    @property
    def window_op(self) -> Window | None:
        return next((op for op in self.ops if isinstance(op, Window)), None)

    @property
    def stateful(self) -> bool:
        return self.window_op is not None or self.join_op is not None

    def source_topic(self, settings: "Settings | None" = None) -> str:
        return self.source_name if self.exact_topics else _resolve(self.source_name, "raw", settings)

    def sink_topic(self, settings: "Settings | None" = None) -> str | None:
        if self.sink_name is None or self.exact_topics:
            return self.sink_name
        return _resolve(self.sink_name, "features", settings)

    def exact(self, *, record_key: bool = False, record_time: bool = False) -> "Pipeline":
        """The same pipeline with full topic names (no namespace resolution), optionally with
        the record key in each batch as the bytes column ``__record_key`` and the record
        timestamp as ``__ts`` (ms). An output column ``__timestamp`` (ms) sets each output
        record's timestamp."""
        return replace(self, exact_topics=True, record_key=record_key, record_time=record_time)

    def formats(self, value: "ValueFormat | None" = None, sink: "ValueFormat | None" = None) -> "Pipeline":
        """The same pipeline reading values as ``value`` and writing them as ``sink``
        (:mod:`streamml.stream.formats`; ``None``: JSON objects)."""
        return replace(self, value_format=value, sink_format=sink)

    def changelog_topic(self, settings: "Settings") -> str:
        op = self.window_op
        return settings.topic("changelog", f"{self.name}-{op.store if op else 'state'}")

    def describe(self) -> str:
        """The topology as text (topics shown without the namespace)."""
        key = ", record key" if self.record_key else ""
        lines = [f"pipeline {self.name}",
                 f"  source   {self.source_topic()} ({self.value_format.name if self.value_format else 'json'}{key})"]
        for i, op in enumerate(self.ops, 1):
            lines.append(f"  {i} {op.kind:<8} {op.describe()}")
        if self.sink_name:
            lines.append(f"  sink     {self.sink_topic()} ({self.sink_format.name if self.sink_format else 'json'})")
        return "\n".join(lines)

    def fingerprint(self) -> str:
        """A stable hash of the topology (training manifests record it as the pipeline hash)."""
        text = self.describe() + ("\nschema " + repr(self.schema) if self.schema else "")
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<Pipeline {self.name} {self.fingerprint()}: {len(self.ops)} step(s)>"


def stream(topic: str, *, name: str | None = None, schema: dict[str, Any] | None = None) -> Pipeline:
    """Start a pipeline reading ``topic``: ``stream("payments")`` reads ``<ns>.raw.payments``."""
    return Pipeline.source(topic, name=name, schema=schema)
