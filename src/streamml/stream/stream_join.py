"""Stream-stream joins within a time window (Kafka Streams' ``KStream#join(KStream, JoinWindows)``).

Both inputs are read by one pipeline worker: the pipeline's source (the *left* side) and
:attr:`StreamJoin.right_topic` (the *right* side). They must be co-partitioned: partition *p*
of both topics is one task with one stream time (the largest event time seen on either side).

A left record at time *t* joins every right record of the same key whose time lies in
``[t - before, t + after]`` (a right record at *u* joins the left records in
``[u - after, u + before]``); each matching pair is emitted once, when the later of the two is
processed, with the event time ``max(t, u)`` (column ``__t``). A record's window closes when
stream time passes ``t + after + grace`` (left) or ``u + before + grace`` (right): then, in an
outer join (``how="left"``: left records, ``"outer"``: both sides), a record that never matched
is written with nulls for the other side and leaves the buffer (ksqlDB >= 0.25), so no record
is written both unmatched and matched. Other records stay buffered, and join, until stream time
passes ``t + before + after + grace`` (the retention, Kafka Streams' window store's); a record
older than that when it arrives is late: dropped and counted. An outer side's record that
arrives after its own window closed and matches nothing is written with nulls at once.

The buffers are the engine's state (:class:`~streamml.stream.windows.WindowState` rows, one per
buffered record, kept in the changelog like window rows): ``__p`` (partition), ``__key`` (a
record id), ``__ws`` (its event time), ``__side``, ``__jk`` (join key as text), ``__m``
(matched) and ``__v`` (its columns as a JSON object).

>>> import polars as pl
>>> from streamml.stream import stream, TestDriver
>>> side = lambda prefix: JoinSide(lambda df: df, "id", "ts", prefix, (("id", pl.String), ("ts", pl.Int64)))
>>> op = StreamJoin("shipments", side("o."), side("s."), before=10, after=10, grace=0)
>>> d = TestDriver(stream("orders").stream_join(op).to("out"))
>>> d.send({"id": "a", "ts": 100}, {"id": "b", "ts": 100})
[]
>>> d.send({"id": "a", "ts": 105}, topic="shipments")
[{'o.id': 'a', 'o.ts': 100, 's.id': 'a', 's.ts': 105}]
>>> d.send({"id": "b", "ts": 150}, topic="shipments"), d.send({"id": "b", "ts": 99}), d.late
([], [], 1)
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Callable, Literal

import orjson
import polars as pl

from streamml.errors import PipelineError
from streamml.schema.batch import encode_json
from streamml.stream.pipeline import Operator
from streamml.stream.windows import KEYCOL, WS, P, WindowState, WindowStep

__all__ = ["JoinSide", "StreamJoin", "merge_by_time"]

_STATE_SCHEMA: dict[Any, Any] = {P: pl.Int64, KEYCOL: pl.String, WS: pl.Int64, "__side": pl.Int64, "__jk": pl.String,
                 "__m": pl.Boolean, "__v": pl.String}


@dataclass(frozen=True)
class JoinSide:
    """One input of a stream-stream join.

    ``prep`` turns the side's decoded batch into its columns (hidden ``__`` columns kept);
    ``key`` and ``time`` name the join key and event-time column (``None``: the record
    timestamp); output columns are ``prefix + column`` for each of ``columns`` (name, dtype).
    """

    prep: Callable[[pl.DataFrame], pl.DataFrame]
    key: str
    time: str | None
    prefix: str
    columns: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class StreamJoin(Operator):
    """Join the pipeline's stream with the stream on ``right_topic`` (see the module doc)."""

    right_topic: str
    left: JoinSide
    right: JoinSide
    before: int
    after: int
    grace: int
    how: Literal["inner", "left", "outer"] = "inner"
    kind = "sjoin"
    one_to_one = False
    stateful = True

    def describe(self) -> str:
        return (f"{self.how} {self.right_topic} on {self.left.key} = {self.right.key} "
                f"within (before={self.before}ms, after={self.after}ms) grace={self.grace}ms")

    @property
    def needs_timestamps(self) -> bool:
        return self.left.time is None or self.right.time is None

    def _events(self, df: pl.DataFrame, s: int) -> list[tuple[int, int, int, int, str | None, int, bytes, Any]]:
        """(row, side, partition, offset, key text, time, value JSON, key value) of one side's rows."""
        if df.height == 0:
            return []
        side = self.left if s == 0 else self.right
        df = side.prep(df)
        t = side.time or "__ts"
        for c in (side.key, t):
            if c not in df.columns:
                raise PipelineError(f"stream join: column {c} not in the batch",
                                    hint=f"columns: {', '.join(x for x in df.columns if not x.startswith('__'))}")
        tcol = pl.col(t).dt.epoch("ms") if df.schema[t].is_temporal() else pl.col(t)
        meta = df.select(pl.col("__row"), pl.col(P), pl.col("__o"), pl.col(side.key).cast(pl.String).alias("k"),
                         tcol.cast(pl.Int64).alias("t"), pl.col(side.key).alias("kv"))
        values = encode_json(df.select([n for n, _ in side.columns]))
        return [(r, s, p, o, k, tt, v, kv) for (r, p, o, k, tt, kv), v in zip(meta.iter_rows(), values)]

    def step(self, left: pl.DataFrame, right: pl.DataFrame, state: WindowState) -> WindowStep:
        """Join one batch (its left and right rows, ``__row`` giving the batch order)."""
        events = sorted(self._events(left, 0) + self._events(right, 1))
        live = self._live(state, events)
        buf: dict[str, list[Any]] = {}          # id -> [side, p, key, t, matched, json]
        index: dict[tuple[int, str], list[str]] = {}
        heaps: dict[int, list[tuple[int, int, str]]] = {}  # partition -> (time, 0: close | 1: retention, id)
        for b in live.iter_rows(named=True):
            self._buffer(buf, index, heaps, b[KEYCOL], b["__side"], b[P], b["__jk"], b[WS], b["__m"], b["__v"].encode())
        existing = set(buf)
        stream_time = dict(state.stream_time)
        moved: dict[int, int] = {}
        changed: set[str] = set()
        deleted: set[str] = set()
        out: list[dict[str, Any]] = []
        late: list[int] = []
        for row, s, p, o, k, t, v, _kv in events:
            if k is None or t is None:  # ksqlDB drops records without a key or time
                continue
            prev = stream_time.get(p)
            if prev is not None and prev > t + self.before + self.after + self.grace:
                late.append(row)  # older than any buffered record it could join
                continue
            if prev is None or t > prev:
                stream_time[p] = moved[p] = t
                self._expire(buf, index, heaps.get(p, []), stream_time[p], out, deleted)
            lo, hi = (t - self.before, t + self.after) if s == 0 else (t - self.after, t + self.before)
            matched = False
            for oid in index.get((p, k), ()):
                e = buf[oid]
                if e[0] != s and lo <= e[3] <= hi:
                    matched = True
                    if not e[4]:
                        e[4] = True
                        changed.add(oid)
                    out.append(self._pair(v, e[5], t, e[3], p) if s == 0 else self._pair(e[5], v, e[3], t, p))
            if not matched and self._outer(s) and stream_time[p] > self._close(s, t):
                out.append(self._null(s, v, t, p))  # out of order past its own window: written at once
                continue
            rid = f"{s}:{p}:{o}"
            self._buffer(buf, index, heaps, rid, s, p, k, t, matched, v)
            changed.add(rid)
        return self._result(state, buf, existing, changed, deleted, stream_time, moved, out, late)

    # -- helpers ------------------------------------------------------------------------------
    def _close(self, side: int, t: int) -> int:
        return t + (self.after if side == 0 else self.before) + self.grace

    def _live(self, state: WindowState, events: list[Any]) -> pl.DataFrame:
        """The buffered rows this batch can touch: its keys', and those whose window it may close."""
        rows = state.rows
        if rows is None or rows.height == 0 or not events:
            return pl.DataFrame(schema=_STATE_SCHEMA)
        top: dict[int, int] = dict(state.stream_time)
        for _r, _s, p, _o, _k, t, _v, _kv in events:
            if t is not None and t > top.get(p, t - 1):
                top[p] = t
        keys = list({e[4] for e in events if e[4] is not None})
        close = pl.col(WS) + pl.when(pl.col("__side") == 0).then(self.after).otherwise(self.before) + self.grace
        tops = pl.DataFrame({P: list(top), "__top": list(top.values())}, schema={P: pl.Int64, "__top": pl.Int64})
        rows = rows.cast({c: d for c, d in _STATE_SCHEMA.items() if c in rows.columns}, strict=False)
        return rows.join(tops, on=P, how="left").filter(
            pl.col("__jk").is_in(keys) | (close < pl.col("__top"))).select(list(_STATE_SCHEMA))

    def _buffer(self, buf: dict[str, list[Any]], index: dict[tuple[int, str], list[str]],
                heaps: dict[int, list[tuple[int, int, str]]], rid: str, s: int, p: int, k: str, t: int, m: bool,
                v: bytes) -> None:
        buf[rid] = [s, p, k, t, m, v]
        index.setdefault((p, k), []).append(rid)
        heap = heaps.setdefault(p, [])
        heapq.heappush(heap, (t + self.before + self.after + self.grace, 1, rid))  # retention: then dropped
        if self._outer(s):
            heapq.heappush(heap, (self._close(s, t), 0, rid))  # window close: written if never matched

    def _expire(self, buf: dict[str, list[Any]], index: dict[tuple[int, str], list[str]],
                heap: list[tuple[int, int, str]], now: int, out: list[dict[str, Any]], deleted: set[str]) -> None:
        """One partition's rows past their retention leave the buffer; an outer side's row that never
        matched is written with nulls, and leaves, when its window closes."""
        while heap and heap[0][0] < now:
            _at, retained, rid = heapq.heappop(heap)
            e = buf.get(rid)
            if e is None or (not retained and e[4]):
                continue
            del buf[rid]
            index[(e[1], e[2])].remove(rid)
            deleted.add(rid)
            if not retained:
                out.append(self._null(e[0], e[5], e[3], e[1]))

    def _outer(self, side: int) -> bool:
        return self.how == "outer" or (self.how == "left" and side == 0)

    def _null(self, side: int, v: bytes, t: int, p: int) -> dict[str, Any]:
        return self._pair(v, None, t, None, p) if side == 0 else self._pair(None, v, None, t, p)

    def _pair(self, lv: bytes | None, rv: bytes | None, lt: int | None, rt: int | None, p: int) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for side, v in ((self.left, lv), (self.right, rv)):
            d = orjson.loads(v) if v is not None else {}
            row.update({side.prefix + n: d.get(n) for n, _ in side.columns})
        row["__t"] = max(x for x in (lt, rt) if x is not None)
        row[P] = p
        return row

    def _schema(self) -> dict[str, Any]:
        out = {s.prefix + n: d for s in (self.left, self.right) for n, d in s.columns}
        return {**out, "__t": pl.Int64, P: pl.Int64}

    def _result(self, state: WindowState, buf: dict[str, list[Any]], existing: set[str], changed: set[str],
                deleted: set[str], stream_time: dict[int, int], moved: dict[int, int], out: list[dict[str, Any]],
                late: list[int]) -> WindowStep:
        ups = [(buf[i][1], i, buf[i][3], buf[i][0], buf[i][2], buf[i][4], buf[i][5].decode())
               for i in sorted(changed) if i in buf]
        upserts = pl.DataFrame(ups, schema=_STATE_SCHEMA, orient="row")
        gone = [i for i in deleted if i in existing]
        rows = state.rows
        if rows is not None and rows.height:
            drop = set(gone) | {u[1] for u in ups}
            rows = rows.filter(~pl.col(KEYCOL).is_in(list(drop))) if drop else rows
            deletes = rows.head(0).select(P, KEYCOL, WS)
            if gone:
                deletes = state.rows.filter(pl.col(KEYCOL).is_in(gone)).select(P, KEYCOL, WS)  # type: ignore[union-attr]
            rows = pl.concat([rows.cast(_STATE_SCHEMA, strict=False).select(list(_STATE_SCHEMA)), upserts])
        else:
            rows, deletes = upserts, pl.DataFrame(schema={P: pl.Int64, KEYCOL: pl.String, WS: pl.Int64})
        output = pl.DataFrame(out, schema=self._schema(), orient="row") if out else pl.DataFrame(schema=self._schema())
        return WindowStep(output, WindowState(rows if rows.height else None, stream_time),
                          pl.DataFrame({"__row": late}, schema={"__row": pl.Int64}), upserts, deletes, moved)


def merge_by_time(left: list[Any], right: list[Any], ts: Callable[[Any], int]) -> list[Any]:
    """Two offset-ordered runs of one partition merged as Kafka Streams picks records: the head
    with the smaller timestamp first (the left one on a tie).

    >>> merge_by_time([1, 5, 3], [2, 4], ts=lambda x: x)
    [1, 2, 4, 5, 3]
    """
    out: list[Any] = []
    i = j = 0
    while i < len(left) and j < len(right):
        if ts(right[j]) < ts(left[i]):
            out.append(right[j])
            j += 1
        else:
            out.append(left[i])
            i += 1
    return out + left[i:] + right[j:]
