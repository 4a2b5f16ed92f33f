"""Keyed windowed aggregation in event time, vectorised over a whole micro-batch.

Semantics
---------
* **Windows**: ``tumbling(size)`` (fixed, non-overlapping), ``hopping(size, advance)``
  (overlapping, ``size`` a multiple of ``advance``). A window ``[start, start + size)`` is
  half-open, in milliseconds of event time.
* **Stream time** is per input partition: the largest event time seen so far, advanced
  record by record in offset order (a running maximum, so the outcome does not depend on
  where micro-batches happen to begin and end).
* **Grace and lateness**: a window *closes* once stream time reaches
  ``start + size + grace``. A record whose (latest) window is already closed when it arrives
  is *late*: it is dropped from the aggregates and dead-lettered or counted (see
  ``late=``). Records within grace update their window normally.
* **Sliding windows**: ``sliding(size)`` computes, for every record, the aggregates over the
  records of its key with event time in ``(t - size, t]`` that arrived before it (itself
  included) and were not late; it emits one output row per input row, with the input's
  columns and lineage. A record is late when ``t + grace`` is below the stream time.
* **Session windows**: ``session(gap)`` (in :mod:`.sessions`): per key, records closer than
  the inactivity gap form one session, merged when a record bridges two.
* **Emission**: ``emit="close"`` (default) emits each window once, when it closes, with its
  final value — exactly the value a batch recomputation over the same records gives.
  ``emit="update"`` emits, after each micro-batch, the current value of every window that
  the batch changed (one row per window per batch, not per record); the last value emitted
  for a window equals the recomputation. ``emit="changes"`` emits one row per input record
  and window it updates, with the window's value right after that record (ksqlDB's
  ``EMIT CHANGES``, Kafka Streams without caching), so the rows do not depend on where
  micro-batches begin and end; it supports count, sum, mean, min and max.

>>> import polars as pl
>>> spec = tumbling("1m", grace="10s")
>>> (spec.size, spec.advance, spec.grace)
(60000, 60000, 10000)
>>> parse_duration("1h30m")
5400000
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import polars as pl

from streamml.errors import PipelineError
from streamml.stream import window_aggs as more

__all__ = [
    "Agg", "WindowSpec", "WindowState", "WindowStep", "tumbling", "hopping", "sliding", "parse_duration",
    "count", "sum", "mean", "min", "max", "std", "count_distinct", "last", "window_step",
]

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DUR_RE = re.compile(r"(\d+)(ms|s|m|h|d)")
P, KEYCOL, WS = "__p", "__key", "__ws"  # internal columns: partition, key, window start


def parse_duration(value: int | str | timedelta) -> int:
    """A duration in milliseconds from an int (ms), a timedelta or text like ``"1m30s"``."""
    if isinstance(value, bool):
        raise PipelineError(f"invalid duration {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, timedelta):
        return int(value.total_seconds() * 1000)
    text = str(value).strip().replace(" ", "")
    parts = _DUR_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise PipelineError(f"invalid duration {value!r}", hint="use e.g. 500ms, 10s, 1m, 1h30m, 1d")
    return builtins.sum(int(n) * _UNITS[u] for n, u in parts)


@dataclass(frozen=True)
class WindowSpec:
    """Window shape: ``size``, ``advance`` and ``grace`` in milliseconds."""

    kind: str
    size: int
    advance: int
    grace: int

    def describe(self) -> str:
        if self.kind == "session":
            return f"session(gap={self.size}ms, grace={self.grace}ms)"
        extra = f", advance={self.advance}ms" if self.kind == "hopping" else ""
        return f"{self.kind}(size={self.size}ms{extra}, grace={self.grace}ms)"


def tumbling(size: int | str | timedelta, grace: int | str | timedelta = 0) -> WindowSpec:
    """Fixed, non-overlapping windows of ``size``."""
    s = parse_duration(size)
    if s <= 0:
        raise PipelineError("window size must be positive")
    return WindowSpec("tumbling", s, s, parse_duration(grace))


def hopping(size: int | str | timedelta, advance: int | str | timedelta,
            grace: int | str | timedelta = 0) -> WindowSpec:
    """Overlapping windows of ``size`` starting every ``advance``."""
    s, a = parse_duration(size), parse_duration(advance)
    if a <= 0 or s <= 0 or s % a:
        raise PipelineError(f"hopping window size {s}ms must be a positive multiple of advance {a}ms")
    return WindowSpec("hopping", s, a, parse_duration(grace))


def sliding(size: int | str | timedelta, grace: int | str | timedelta = 0) -> WindowSpec:
    """Per-record windows: each record sees its key's records of the last ``size`` of event time."""
    s = parse_duration(size)
    if s <= 0:
        raise PipelineError("window size must be positive")
    return WindowSpec("sliding", s, s, parse_duration(grace))


@dataclass(frozen=True)
class Agg:
    """One aggregate: ``fn`` over ``column`` (``None`` for count)."""

    fn: str
    column: str | None = None
    param: int | None = None  # topk: k; latest/earliest: 1 ignores nulls, 0 keeps them

    def describe(self) -> str:
        return f"{self.fn}({self.column or ''}{'' if self.param is None else f', {self.param}'})"


def count(column: str | None = None) -> Agg:
    """Number of records in the window (with ``column``: of its non-null values)."""
    return Agg("count", column)


def sum(column: str) -> Agg:  # noqa: A001 - the aggregate's public name
    """Sum of ``column``."""
    return Agg("sum", column)


def mean(column: str) -> Agg:
    """Mean of the non-null values of ``column``."""
    return Agg("mean", column)


def min(column: str) -> Agg:  # noqa: A001
    """Smallest value of ``column``."""
    return Agg("min", column)


def max(column: str) -> Agg:  # noqa: A001
    """Largest value of ``column``."""
    return Agg("max", column)


def std(column: str) -> Agg:
    """Sample standard deviation (ddof=1) of ``column``; merged with Chan's parallel formula."""
    return Agg("std", column)


def count_distinct(column: str) -> Agg:
    """Number of distinct non-null values of ``column``."""
    return Agg("count_distinct", column)


def last(column: str) -> Agg:
    """Value of ``column`` in the record with the latest event time (ties: the later offset)."""
    return Agg("last", column)


# --- partial aggregates and their merge -------------------------------------------------

def _partials(name: str, agg: Agg, time: str) -> list[pl.Expr]:
    if agg.fn in more.MORE:
        return more.partials(name, agg)
    c = pl.col(agg.column) if agg.column else None
    if agg.fn == "count":
        return [(c.count() if c is not None else pl.len()).cast(pl.Int64).alias(name)]
    assert c is not None
    if agg.fn == "sum":
        return [c.sum().alias(name)]
    if agg.fn == "mean":
        return [c.sum().alias(f"{name}__s"), c.count().cast(pl.Int64).alias(f"{name}__n")]
    if agg.fn in ("min", "max"):
        return [getattr(c, agg.fn)().alias(name)]
    if agg.fn == "std":
        cf = c.cast(pl.Float64)
        return [cf.count().cast(pl.Int64).alias(f"{name}__n"), cf.mean().alias(f"{name}__m"),
                (cf.var(ddof=0) * cf.count()).alias(f"{name}__q")]
    if agg.fn == "count_distinct":
        return [c.drop_nulls().unique().sort().alias(f"{name}__set")]
    if agg.fn == "last":
        return [c.sort_by([time, "__row"]).last().alias(name), pl.col(time).max().alias(f"{name}__t")]
    raise PipelineError(f"unknown aggregate {agg.fn!r}")


#: Aggregates whose value after each record can be computed with cumulative expressions.
CUMULATIVE = frozenset({"count", "sum", "mean", "min", "max", "std", "count_distinct"} | more.MORE)


def _cumulative(name: str, agg: Agg, over: list[str]) -> list[pl.Expr]:
    """The partials of :func:`_partials` after each row of its group (rows in arrival order),
    suffixed ``_b`` for :func:`_merge`."""
    c = pl.col(agg.column) if agg.column else None
    if agg.fn in more.MORE or agg.fn in ("std", "count_distinct"):
        return more.cumulative(name, agg, over)
    if agg.fn not in CUMULATIVE:
        raise PipelineError(f"aggregate {agg.fn}() cannot emit a row per record (emit='changes')",
                            hint=f"use emit='close' or one of {', '.join(sorted(CUMULATIVE))}")
    if agg.fn == "count":
        ones = (c if c is not None else pl.col("__row")).is_not_null().cast(pl.Int64)
        return [ones.cum_sum().over(over).alias(f"{name}_b")]
    assert c is not None
    if agg.fn == "sum":
        return [c.cum_sum().over(over).alias(f"{name}_b")]
    if agg.fn == "mean":
        return [c.fill_null(0).cum_sum().over(over).alias(f"{name}__s_b"),
                c.is_not_null().cast(pl.Int64).cum_sum().over(over).alias(f"{name}__n_b")]
    fn = "cum_min" if agg.fn == "min" else "cum_max"
    return [getattr(c, fn)().over(over).alias(f"{name}_b")]


def _per_record(assigned: pl.DataFrame, old: pl.DataFrame | None, aggs: dict[str, Agg],
                keys: list[str]) -> pl.DataFrame:
    """Each assigned row's window value right after that row (old state + the batch so far)."""
    cum = assigned.sort("__row", maintain_order=True).select(
        [*keys, "__row", *[e for name, agg in aggs.items() for e in _cumulative(name, agg, keys)]])
    if old is not None and old.height:
        o, cum = _align(old.select(keys + [c for c in old.columns if c not in keys]), cum)
        joined = cum.join(o, on=keys, how="left", maintain_order="left")
    else:
        joined = cum.with_columns([pl.lit(None).alias(c[:-2]) for c in cum.columns if c.endswith("_b")])
    return joined.select([*keys, "__row", *[e for name, agg in aggs.items() for e in _merge(name, agg)]])


def _merge(name: str, agg: Agg) -> list[pl.Expr]:
    """Merge state columns (no suffix) with batch partials (suffix ``_b``) after a full join."""
    def both(col: str) -> tuple[pl.Expr, pl.Expr]:
        return pl.col(col), pl.col(f"{col}_b")

    if agg.fn in more.MORE:
        return more.merge(name, agg)

    if agg.fn in ("count", "sum"):
        a, b = both(name)
        return [(a.fill_null(0) + b.fill_null(0)).alias(name)]
    if agg.fn == "mean":
        out = []
        for col in (f"{name}__s", f"{name}__n"):
            a, b = both(col)
            out.append((a.fill_null(0) + b.fill_null(0)).alias(col))
        return out
    if agg.fn in ("min", "max"):
        a, b = both(name)
        fn = pl.min_horizontal if agg.fn == "min" else pl.max_horizontal
        return [fn(a, b).alias(name)]
    if agg.fn == "std":
        na, nb = (x.fill_null(0) for x in both(f"{name}__n"))
        ma, mb = (x.fill_null(0.0) for x in both(f"{name}__m"))
        qa, qb = (x.fill_null(0.0) for x in both(f"{name}__q"))
        n = na + nb
        delta = mb - ma
        safe_n = pl.when(n > 0).then(n).otherwise(1)
        return [n.alias(f"{name}__n"),
                pl.when(n > 0).then(ma + delta * nb / safe_n).otherwise(None).alias(f"{name}__m"),
                (qa + qb + delta * delta * na * nb / safe_n).alias(f"{name}__q")]
    if agg.fn == "count_distinct":
        a, b = both(f"{name}__set")
        return [pl.concat_list([a.fill_null([]), b.fill_null([])]).list.unique().list.sort()
                .alias(f"{name}__set")]
    if agg.fn == "last":
        (va, vb), (ta, tb) = both(name), both(f"{name}__t")
        newer = tb.is_not_null() & (ta.is_null() | (tb >= ta))
        return [pl.when(newer).then(vb).otherwise(va).alias(name),
                pl.when(newer).then(tb).otherwise(ta).alias(f"{name}__t")]
    raise PipelineError(f"unknown aggregate {agg.fn!r}")


def _final(name: str, agg: Agg) -> pl.Expr:
    if agg.fn in more.MORE:
        return more.final(name, agg)
    if agg.fn in ("count", "sum", "min", "max", "last"):
        return pl.col(name)
    if agg.fn == "mean":
        n = pl.col(f"{name}__n")
        return pl.when(n > 0).then(pl.col(f"{name}__s") / n).otherwise(None).alias(name)
    if agg.fn == "std":
        n = pl.col(f"{name}__n")
        return pl.when(n > 1).then((pl.col(f"{name}__q") / (n - 1)).sqrt()).otherwise(None).alias(name)
    if agg.fn == "count_distinct":
        return pl.col(f"{name}__set").list.len().cast(pl.Int64).alias(name)
    raise PipelineError(f"unknown aggregate {agg.fn!r}")


# --- state and one step ----------------------------------------------------------------

@dataclass(frozen=True)
class WindowState:
    """Open windows of the owned partitions (``rows``) and stream time per partition."""

    rows: pl.DataFrame | None = None
    stream_time: dict[int, int] = field(default_factory=dict)

    def only(self, partitions: set[int]) -> "WindowState":
        rows = None if self.rows is None else self.rows.filter(pl.col(P).is_in(list(partitions)))
        return WindowState(rows, {p: t for p, t in self.stream_time.items() if p in partitions})

    def add(self, rows: pl.DataFrame | None, stream_time: dict[int, int]) -> "WindowState":
        merged = _concat(self.rows, rows)
        return WindowState(merged, {**self.stream_time, **stream_time})


@dataclass
class WindowStep:
    """What one batch did: output rows, the next state, late rows and the state delta."""

    output: pl.DataFrame
    state: WindowState
    late: pl.DataFrame           # input rows dropped as late (carry ``__row``)
    upserts: pl.DataFrame        # state rows written (changelog values)
    deletes: pl.DataFrame        # (P, KEYCOL, WS) of windows purged
    stream_time: dict[int, int]  # partitions whose stream time moved


def _concat(a: pl.DataFrame | None, b: pl.DataFrame | None) -> pl.DataFrame | None:
    if a is None or a.height == 0:
        return b if b is not None and b.height else a
    if b is None or b.height == 0:
        return a
    return pl.concat([a, b.select(a.columns)], how="vertical_relaxed")


def _align(a: pl.DataFrame, b: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Cast shared columns to one type so that joins and concatenations line up."""
    casts_a: dict[Any, Any] = {}
    casts_b: dict[Any, Any] = {}
    for col, dt in b.schema.items():
        da = a.schema.get(col)
        if da is None or da == dt:
            continue
        if dt == pl.Null:
            casts_b[col] = da
        elif da == pl.Null:
            casts_a[col] = dt
        else:
            sup = pl.concat([a.select(col).head(0), b.select(col).head(0)], how="vertical_relaxed").schema[col]
            casts_a[col], casts_b[col] = sup, sup
    return (a.cast(casts_a, strict=False) if casts_a else a), (b.cast(casts_b, strict=False) if casts_b else b)


def state_columns(aggs: dict[str, Agg]) -> list[str]:
    """Columns a state row holds besides ``P``, ``KEYCOL`` and ``WS``."""
    cols: list[str] = []
    for name, agg in aggs.items():
        cols += [e.meta.output_name() for e in _partials(name, agg, "__t")]
    return cols


def with_stream_time(df: pl.DataFrame, prev: dict[int, int], *, key: str, time: str) -> pl.DataFrame:
    """``df`` with typed partition and time columns, the key as ``KEYCOL``, and ``__st``: each
    record's partition stream time (the highest event time seen in its partition so far,
    counting ``prev``, the stream time per partition from earlier batches)."""
    t = pl.col(time)
    df = df.with_columns(pl.col(P).cast(pl.Int64), t.cast(pl.Int64), pl.col(key).alias(KEYCOL))
    st = t.cum_max().over(P)
    if prev:
        st = pl.max_horizontal(st, pl.col(P).replace_strict(prev, default=None, return_dtype=pl.Int64))
    return df.with_columns(st.alias("__st"))


def window_step(df: pl.DataFrame, state: WindowState, *, key: str, time: str, spec: WindowSpec,
                aggs: dict[str, Agg], emit: Literal["close", "update", "changes"], key_name: str) -> WindowStep:
    """Aggregate one batch ``df`` (columns ``__p``, ``__row``, ``key``, ``time``) into ``state``."""
    if df.height == 0 and not state.stream_time:
        empty = pl.DataFrame()
        return WindowStep(empty, state, df, empty, empty, {})
    t = pl.col(time)
    prev = {int(p): int(v) for p, v in state.stream_time.items()}
    df = with_stream_time(df, prev, key=key, time=time)
    latest = (t // spec.advance) * spec.advance
    is_late = latest + spec.size + spec.grace <= pl.col("__st")
    late = df.filter(is_late)
    ok = df.filter(~is_late & t.is_not_null() & pl.col(KEYCOL).is_not_null())
    k = spec.size // spec.advance
    if k == 1:
        assigned = ok.with_columns(latest.alias(WS))
    else:
        parts = [ok.with_columns((latest - i * spec.advance).alias(WS)) for i in range(k)]
        assigned = pl.concat(parts).filter(pl.col(WS) + spec.size + spec.grace > pl.col("__st"))
    partial = assigned.group_by([P, KEYCOL, WS], maintain_order=True).agg(
        [e for name, agg in aggs.items() for e in _partials(name, agg, time)])
    changes = _per_record(assigned, state.rows, aggs, [P, KEYCOL, WS]) if emit == "changes" else None
    new_st = {**prev}
    if df.height:
        for p, mx in df.group_by(P).agg(t.max()).iter_rows():
            if mx is not None:
                new_st[int(p)] = builtins.max(int(mx), prev.get(int(p), int(mx)))
    moved = {p: v for p, v in new_st.items() if prev.get(p) != v}
    keys = [P, KEYCOL, WS]
    merged: pl.DataFrame | None
    if state.rows is None or state.rows.height == 0:
        merged = partial
    elif partial.height == 0:
        merged = partial
    else:
        old, part = _align(state.rows, partial)
        joined = old.join(part, on=keys, how="inner", suffix="_b")
        merged = joined.select(keys + [e for name, agg in aggs.items() for e in _merge(name, agg)])
        fresh = part.join(old.select(keys), on=keys, how="anti")
        merged = _concat(merged, fresh.select(merged.columns)) if merged.height else fresh
    rows = state.rows
    if merged is not None and merged.height:
        rows = merged if rows is None or rows.height == 0 else _concat(
            rows.join(merged.select(keys), on=keys, how="anti"), merged.select(rows.columns))
    closes = pl.col(WS) + spec.size + spec.grace <= pl.col(P).replace_strict(
        new_st, default=None, return_dtype=pl.Int64)
    if rows is not None and rows.height and new_st:
        closed = rows.filter(closes)
        rows = rows.filter(~closes)
    else:
        closed = pl.DataFrame(schema={c: pl.Int64 for c in keys})
    if emit == "close":
        emitted = closed
    elif changes is not None:
        emitted = changes
    else:
        emitted = merged if merged is not None else pl.DataFrame()
    upserts = merged.filter(~closes) if merged is not None and merged.height and new_st else (
        merged if merged is not None else pl.DataFrame())
    if emitted.height:
        order = ["__row", WS] if changes is not None else [P, WS, KEYCOL]
        output = emitted.sort(order).select(
            pl.col(KEYCOL).alias(key_name), pl.col(WS).alias("window_start"),
            (pl.col(WS) + spec.size).alias("window_end"),
            *[_final(name, agg) for name, agg in aggs.items()], pl.col(P),
            *([pl.col("__row")] if changes is not None else []))
    else:
        output = pl.DataFrame()
    return WindowStep(output, WindowState(rows, new_st), late, upserts,
                      closed.select(keys) if closed.height else closed, moved)


def _sliding_agg(name: str, agg: Agg) -> pl.Expr:
    c = pl.col(agg.column) if agg.column else None
    if agg.fn == "count":
        return pl.len().cast(pl.Int64).alias(name)
    assert c is not None
    exprs = {"sum": c.sum(), "mean": c.mean(), "min": c.min(), "max": c.max(), "std": c.cast(pl.Float64).std(),
             "count_distinct": c.drop_nulls().n_unique().cast(pl.Int64),
             "last": c.sort_by(["__t_r", f"{WS}_r"]).last()}
    if agg.fn not in exprs:
        raise PipelineError(f"aggregate {agg.fn}() is not available in sliding windows",
                            hint="use " + ", ".join(sorted(exprs)) + " or count")
    return exprs[agg.fn].alias(name)


def sliding_step(df: pl.DataFrame, state: WindowState, *, key: str, time: str, spec: WindowSpec,
                 aggs: dict[str, Agg]) -> WindowStep:
    """One batch of a sliding window; ``df`` carries ``__o`` (offset) as the arrival order."""
    empty = pl.DataFrame()
    if df.height == 0:
        return WindowStep(df, state, df, empty, empty, {})
    t = pl.col(time)
    prev = {int(p): int(v) for p, v in state.stream_time.items()}
    df = df.with_columns(pl.col(P).cast(pl.Int64), t.cast(pl.Int64), pl.col(key).alias(KEYCOL),
                         pl.col("__o").cast(pl.Int64).alias(WS), t.cast(pl.Int64).alias("__t"))
    st = t.cum_max().over(P)
    if prev:
        st = pl.max_horizontal(st, pl.col(P).replace_strict(prev, default=None, return_dtype=pl.Int64))
    df = df.with_columns(st.alias("__st"))
    is_late = pl.col("__t") + spec.grace < pl.col("__st")
    late = df.filter(is_late)
    ok = df.filter(~is_late & pl.col("__t").is_not_null() & pl.col(KEYCOL).is_not_null())
    inputs = sorted({a.column for a in aggs.values() if a.column and a.column != time} - {key})
    fresh = ok.select([P, KEYCOL, WS, "__t", *inputs])
    old = state.rows
    if old is not None and old.height:
        old, fresh_a = _align(old, fresh)
        combined = pl.concat([old, fresh_a.select(old.columns)], how="vertical_relaxed")
    else:
        combined = fresh
    left = ok.select(["__row", P, KEYCOL, WS, "__t"])
    joined = left.join(combined, on=[P, KEYCOL], how="inner", suffix="_r").filter(
        (pl.col("__t_r") > pl.col("__t") - spec.size) & (pl.col("__t_r") <= pl.col("__t"))
        & (pl.col(f"{WS}_r") <= pl.col(WS)))
    result = joined.group_by("__row").agg([_sliding_agg(n, a) for n, a in aggs.items()])
    drop = [KEYCOL, WS, "__t", "__st"] + [n for n in aggs if n in ok.columns]
    output = ok.drop(drop).join(result, on="__row", how="left", maintain_order="left")
    new_st = {**prev}
    for p, mx in df.group_by(P).agg(t.max()).iter_rows():
        if mx is not None:
            new_st[int(p)] = builtins.max(int(mx), prev.get(int(p), int(mx)))
    moved = {p: v for p, v in new_st.items() if prev.get(p) != v}
    horizon = pl.col(P).replace_strict(new_st, default=None, return_dtype=pl.Int64) - spec.size - spec.grace
    keep = pl.col("__t") > horizon
    rows = combined.filter(keep)
    deletes = old.filter(~keep).select([P, KEYCOL, WS]) if old is not None and old.height else empty
    upserts = fresh.filter(keep)
    return WindowStep(output, WindowState(rows, new_st), late, upserts, deletes, moved)
