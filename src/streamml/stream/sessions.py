"""Session windows: per key, records closer than an inactivity ``gap`` form one session.

Semantics (Kafka Streams' session windows, as ksqlDB runs them)
----------------------------------------------------------------
* A record at ``t`` joins every open session of its key with ``end >= t - gap`` and
  ``start <= t + gap`` (the gap is inclusive); when it touches two or more, they **merge**
  into one. A session's ``window_start`` is its earliest event time and ``window_end`` its
  latest (inclusive, so a session of one record has ``start == end``).
* **Stream time** is the running maximum of event time per input partition, as for the other
  windows. A session *closes* once ``end + gap + grace`` is below stream time; a closed
  session takes no more records. A record that touches no open session and for which
  ``t + gap + grace`` is below stream time is *late*: dropped and counted (or dead-lettered).
* **Emission**: ``emit="changes"`` writes, for each record, the session it is in right after
  it; before that, one *tombstone* row (``__tombstone`` true, aggregates null) for every
  earlier session the record extended or merged, since a session's key includes its bounds
  (Kafka Streams forwards the same deletes). ``emit="close"`` writes each session once, when
  it closes. ``emit="update"`` writes after each batch the sessions it changed, with
  tombstones for sessions of earlier batches that it replaced.
* Aggregates of merged sessions are merged in the sessions' time order, the new record last
  (Kafka Streams' session merger does the same): order-sensitive aggregates (``latest``,
  ``earliest``, ``collect_list``) follow that order across a merge.

The state rows are those of the other windows (``__p``, ``__key``, ``__ws`` = session start,
and the partial aggregates) plus ``__we``, the session end, in the same store and changelog.

>>> spec = session("5m", grace="30s")
>>> (spec.kind, spec.size, spec.grace)
('session', 300000, 30000)
>>> spec.describe()
'session(gap=300000ms, grace=30000ms)'
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

import polars as pl

from streamml.errors import PipelineError
from streamml.stream.windows import (
    KEYCOL,
    WS,
    Agg,
    P,
    WindowSpec,
    WindowState,
    WindowStep,
    _align,
    _concat,
    _final,
    _merge,
    _partials,
    _per_record,
    parse_duration,
    with_stream_time,
)

__all__ = ["session", "session_step", "WE"]

WE = "__we"        # state column: the session's end (its latest event time)
_NODE = "__node"   # a session's identity within one step
TOMBSTONE = "__tombstone"


def session(gap: int | str | timedelta, grace: int | str | timedelta = 0) -> WindowSpec:
    """Session windows closed by ``gap`` of inactivity (``size`` holds the gap)."""
    g = parse_duration(gap)
    if g <= 0:
        raise PipelineError("a session's inactivity gap must be positive", hint='e.g. session("5m")')
    return WindowSpec("session", g, g, parse_duration(grace))


@dataclass
class _Node:
    """One session during a step: an old state row and/or records of this batch, or a merge."""

    p: int
    key: Any
    start: int
    end: int
    old: int | None = None                                  # index in the state rows
    parents: list[int] = field(default_factory=list)        # merged sessions, in time order
    level: int = 0
    alive: bool = True
    touched: bool = False


@dataclass
class _Walk:
    """What the record-by-record pass over a batch decided (no aggregate computed yet)."""

    nodes: list[_Node]
    accepted: list[int] = field(default_factory=list)       # positions in the batch
    node_of: list[int] = field(default_factory=list)        # per accepted record
    bounds: list[tuple[int, int]] = field(default_factory=list)  # its session's bounds after it
    late: list[int] = field(default_factory=list)
    dead: list[tuple[int, int, Any, int, int]] = field(default_factory=list)  # (row, p, key, start, end)


def _walk(df: pl.DataFrame, time: str, rows: pl.DataFrame | None, spec: WindowSpec) -> _Walk:
    """Sessions record by record; ``rows`` are the state rows of the batch's keys (with ``__i``,
    their index in the state)."""
    gap, grace = spec.size, spec.grace
    nodes: list[_Node] = []
    open_: dict[tuple[int, Any], list[int]] = {}
    if rows is not None and rows.height:
        for n, (i, p, k, ws, we) in enumerate(rows.select("__i", P, KEYCOL, WS, WE).iter_rows()):
            nodes.append(_Node(int(p), k, int(ws), int(we), old=int(i)))
            open_.setdefault((int(p), k), []).append(n)
    w = _Walk(nodes)
    reach = gap + grace
    cols = df.select(P, KEYCOL, time, "__st", "__row").iter_rows()
    for pos, (p, k, t, st, row) in enumerate(cols):
        if t is None or k is None:
            continue
        here = open_.get((p, k))
        found: list[int] = []
        if here:
            if any(nodes[n].end + reach < st for n in here):  # closed sessions take no records
                here[:] = [n for n in here if nodes[n].end + reach >= st]
            found = [n for n in here if nodes[n].end >= t - gap and nodes[n].start <= t + gap]
            if len(found) > 1:
                found.sort(key=lambda n: nodes[n].start)
        if not found:  # a new session, or a late record
            if t + reach < st:
                w.late.append(pos)
                continue
            open_.setdefault((p, k), []).append(len(nodes))
            w.node_of.append(len(nodes))
            nodes.append(_Node(p, k, t, t, touched=True))
            w.accepted.append(pos)
            w.bounds.append((t, t))
            continue
        assert here is not None
        start = builtins.min([t, *(nodes[n].start for n in found)])
        end = builtins.max([t, *(nodes[n].end for n in found)])
        if found and not (len(found) == 1 and (nodes[found[0]].start, nodes[found[0]].end) == (t, t)):
            w.dead += [(row, p, k, nodes[n].start, nodes[n].end) for n in found]
        if len(found) == 1:
            node = found[0]
        else:
            node = len(nodes)
            nodes.append(_Node(p, k, start, end, parents=found,
                               level=1 + builtins.max([nodes[n].level for n in found], default=-1)))
            for n in found:
                nodes[n].alive = False
                here.remove(n)
            here.append(node)
        nodes[node].start, nodes[node].end, nodes[node].touched = start, end, True
        w.accepted.append(pos)
        w.node_of.append(node)
        w.bounds.append((start, end))
    return w


def _take(frame: pl.DataFrame, idx: list[int]) -> pl.DataFrame:
    """The rows ``idx`` of ``frame`` (none: an empty frame with its columns)."""
    return frame[idx] if idx else frame.head(0)


def _merge_into(acc: pl.DataFrame, nxt: pl.DataFrame, cols: list[str], aggs: dict[str, Agg]) -> pl.DataFrame:
    """``acc`` (per ``_NODE``, the earlier records) merged with ``nxt`` (the later ones), left join."""
    a, b = _align(acc, nxt.rename({c: f"{c}_b" for c in cols}))
    return a.join(b, on=_NODE, how="left").select([_NODE, *[e for n, agg in aggs.items() for e in _merge(n, agg)]])


def _values(w: _Walk, assigned: pl.DataFrame, old: pl.DataFrame | None, aggs: dict[str, Agg],
            time: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(base, final): per node, the partials of what it held before its first batch record, and
    after all of them; both frames hold ``_NODE`` and the state columns. Merges are evaluated
    level by level (a merged session after the sessions it merged)."""
    batch = assigned.group_by(_NODE, maintain_order=True).agg(
        [e for n, agg in aggs.items() for e in _partials(n, agg, time)])
    cols = [c for c in batch.columns if c != _NODE]
    empty = batch.head(0)
    finals = empty
    bases: list[pl.DataFrame] = []
    ids = [i for i, n in enumerate(w.nodes) if n.old is not None and (n.touched or not n.alive)]
    if old is not None and ids:
        olds = _take(old, [w.nodes[i].old or 0 for i in ids]).select(cols)
        bases.append(olds.with_columns(pl.Series(_NODE, ids, dtype=pl.Int64)).select([_NODE, *cols]))
    top = builtins.max([n.level for n in w.nodes], default=0)
    for level in range(top + 1):
        merged = [i for i, n in enumerate(w.nodes) if n.level == level and n.parents]
        if merged:
            width = builtins.max(len(w.nodes[i].parents) for i in merged)
            acc: pl.DataFrame | None = None
            for r in range(width):
                pairs = pl.DataFrame({_NODE: [i for i in merged if r < len(w.nodes[i].parents)],
                                      "__par": [w.nodes[i].parents[r] for i in merged if r < len(w.nodes[i].parents)]},
                                     schema={_NODE: pl.Int64, "__par": pl.Int64})
                part = pairs.join(finals.rename({_NODE: "__par"}), on="__par", how="left").drop("__par")
                acc = part if acc is None else _merge_into(acc, part, cols, aggs)
            assert acc is not None
            bases.append(acc)
        ids = [i for i, n in enumerate(w.nodes) if n.level == level and (n.touched or not n.alive)]
        if not ids:
            continue
        base = pl.concat(bases, how="diagonal_relaxed") if bases else empty
        frame = pl.DataFrame({_NODE: ids}, schema={_NODE: pl.Int64}).join(base, on=_NODE, how="left")
        frame = _merge_into(frame, batch, cols, aggs)
        finals = pl.concat([finals, frame], how="diagonal_relaxed") if finals.height else frame
    base = pl.concat(bases, how="diagonal_relaxed") if bases else empty
    return base, finals


def _outputs(rows: pl.DataFrame, aggs: dict[str, Agg], key_name: str, extra: list[str]) -> pl.DataFrame:
    return rows.select(pl.col(KEYCOL).alias(key_name), pl.col(WS).alias("window_start"),
                       pl.col(WE).alias("window_end"), *[_final(n, a) for n, a in aggs.items()],
                       pl.col(P), *[pl.col(c) for c in extra])


def session_step(df: pl.DataFrame, state: WindowState, *, key: str, time: str, spec: WindowSpec,
                 aggs: dict[str, Agg], emit: Literal["close", "update", "changes"], key_name: str) -> WindowStep:
    """Aggregate one batch ``df`` (columns ``__p``, ``__row``, ``key``, ``time``) into sessions."""
    empty = pl.DataFrame()
    if df.height == 0 and not state.stream_time:
        return WindowStep(empty, state, df, empty, empty, {})
    t = pl.col(time)
    prev = {int(p): int(v) for p, v in state.stream_time.items()}
    df = with_stream_time(df, prev, key=key, time=time)
    old = state.rows
    mine = None  # the state rows of the batch's keys: only they can change, besides closing
    if old is not None and old.height:
        indexed = old.with_row_index("__i")
        ks, seen = _align(indexed.select("__i", P, KEYCOL), df.select(P, KEYCOL).unique())
        mine = indexed.join(ks.join(seen, on=[P, KEYCOL], how="semi").select("__i"), on="__i", how="semi")
    w = _walk(df, time, mine, spec)
    late = _take(df, w.late)
    assigned = _take(df, w.accepted).with_columns(
        pl.Series(_NODE, w.node_of, dtype=pl.Int64),
        pl.Series(WS, [b[0] for b in w.bounds], dtype=pl.Int64),
        pl.Series(WE, [b[1] for b in w.bounds], dtype=pl.Int64))
    base, final = _values(w, assigned, old, aggs, time)
    new_st = {**prev}
    for p, mx in df.group_by(P).agg(t.max()).iter_rows():
        if mx is not None:
            new_st[int(p)] = builtins.max(int(mx), prev.get(int(p), int(mx)))
    moved = {p: v for p, v in new_st.items() if prev.get(p) != v}
    closes = (pl.col(WE) + (spec.size + spec.grace) < pl.col(P).replace_strict(
        new_st, default=None, return_dtype=pl.Int64)).fill_null(False)
    # sessions after the step: the old rows the batch did not touch, and the touched ones alive
    fresh_ids = [i for i, n in enumerate(w.nodes) if n.alive and n.touched]
    keys_of = pl.DataFrame({_NODE: fresh_ids, P: [w.nodes[i].p for i in fresh_ids],
                            WS: [w.nodes[i].start for i in fresh_ids], WE: [w.nodes[i].end for i in fresh_ids]},
                           schema={_NODE: pl.Int64, P: pl.Int64, WS: pl.Int64, WE: pl.Int64})
    keys_of = keys_of.with_columns(pl.Series(KEYCOL, [w.nodes[i].key for i in fresh_ids]))
    layout = [P, KEYCOL, WS, WE, *[c for c in final.columns if c != _NODE]]
    touched = keys_of.join(final, on=_NODE, how="left").select(layout) if fresh_ids else None
    gone = [n.old for n in w.nodes if n.old is not None and (not n.alive or n.touched)]
    untouched = None
    if old is not None and old.height:
        untouched = old.with_row_index("__i").filter(~pl.col("__i").is_in(gone)).drop("__i")
    closing = [x.filter(closes) for x in (untouched, touched) if x is not None and x.height]
    closed_rows = pl.concat(closing, how="diagonal_relaxed") if any(c.height for c in closing) else empty
    upserts = touched.filter(~closes) if touched is not None else empty
    rows = _concat(untouched.filter(~closes) if untouched is not None else None, upserts if upserts.height else None)
    # changelog deletes: closed sessions, and old sessions replaced under another key
    replaced = _take(old, gone).select(P, KEYCOL, WS) if old is not None and gone else None
    if replaced is not None and upserts.height:
        replaced = replaced.join(upserts.select(P, KEYCOL, WS), on=[P, KEYCOL, WS], how="anti")
    deletes = _concat(replaced, closed_rows.select(P, KEYCOL, WS) if closed_rows.height else None)
    output = _emit(w, emit, assigned, old, base, touched, closed_rows, aggs, key_name)
    return WindowStep(output, WindowState(rows, new_st), late, upserts,
                      deletes if deletes is not None else empty, moved)


def _emit(w: _Walk, emit: str, assigned: pl.DataFrame, old: pl.DataFrame | None, base: pl.DataFrame,
          touched: pl.DataFrame | None, closed_rows: pl.DataFrame, aggs: dict[str, Agg],
          key_name: str) -> pl.DataFrame:
    if emit == "close":
        if not closed_rows.height:
            return pl.DataFrame()
        return _outputs(closed_rows.sort([P, WS, KEYCOL]), aggs, key_name, [])
    if emit == "changes":
        if not assigned.height:
            return pl.DataFrame()
        vals = _per_record(assigned, base if base.height else None, aggs, [_NODE])
        per = assigned.select("__row", P, KEYCOL, WS, WE).join(vals.drop(_NODE), on="__row", how="left")
        live = _outputs(per, aggs, key_name, ["__row"]).with_columns(
            pl.lit(1).alias("__seq"), pl.lit(False).alias(TOMBSTONE))
        dead = _tombstones(w.dead, live, key_name)
        out = pl.concat([dead, live], how="diagonal_relaxed") if dead is not None else live
        return out.sort(["__row", "__seq", "window_start"]).drop("__seq")
    # update: the sessions the batch changed, after tombstones for the earlier ones they replaced
    if touched is None:
        return pl.DataFrame()
    live = _outputs(touched.sort([P, WS, KEYCOL]), aggs, key_name, []).with_columns(pl.lit(False).alias(TOMBSTONE))
    if old is None:
        return live
    nodes = w.nodes
    bounds = [(n, int(old[WS][n.old]), int(old[WE][n.old])) for n in nodes if n.old is not None]
    replaced = [(0, n.p, n.key, ws, we) for n, ws, we in bounds if not n.alive or (n.start, n.end) != (ws, we)]
    tomb = _tombstones(replaced, live, key_name)
    return pl.concat([tomb.drop("__row", "__seq"), live], how="diagonal_relaxed") if tomb is not None else live


def _tombstones(dead: list[tuple[int, int, Any, int, int]], like: pl.DataFrame, key_name: str) -> pl.DataFrame | None:
    if not dead:
        return None
    row, p, k, ws, we = zip(*dead)
    frame = pl.DataFrame({key_name: list(k)}).cast({key_name: like.schema[key_name]}, strict=False)
    return frame.with_columns(
        pl.Series("window_start", ws, dtype=pl.Int64), pl.Series("window_end", we, dtype=pl.Int64),
        pl.Series(P, p, dtype=pl.Int64), pl.Series("__row", row, dtype=pl.Int64),
        pl.lit(0).alias("__seq"), pl.lit(True).alias(TOMBSTONE))
