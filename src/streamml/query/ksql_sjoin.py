"""ksqlDB stream-stream joins (``... JOIN s WITHIN ... ON a.k = b.k``) compiled onto the engine's
:class:`~streamml.stream.stream_join.StreamJoin`.

``FROM a [INNER | LEFT [OUTER] | FULL [OUTER]] JOIN b WITHIN (n unit | (BEFORE n unit, AFTER m
unit)) [GRACE PERIOD g] ON a.x = b.y``: a record of ``a`` at time *t* joins each record of ``b``
with the same key and a time in ``[t - BEFORE, t + AFTER]``; a pair is written once, when the
later of the two arrives. LEFT writes an ``a`` record that matched nothing with null ``b``
columns once its window closed (stream time past ``t + AFTER + GRACE``), FULL does so for
both sides (ksqlDB >= 0.25 semantics). Without GRACE PERIOD the grace is ksqlDB's legacy
default, 24 hours: unmatched records of an outer join are then written a day (of stream time)
after their window, and records up to a day late still join. A record that arrives after its
window closed is dropped and counted as late.

The output record's key is the join key (the value of the left join column; for FULL the
right one where the left is null) in ksqlDB's KAFKA key format; a SELECT item that is the join
column names the key column and leaves the value, as in ksqlDB. Both streams must be
co-partitioned: same partition count, and on a topic of several partitions the join column
must be the record key (re-key with PARTITION BY first).

>>> from streamml.query.ksql_compile import Catalog
>>> cat = Catalog()
>>> _ = cat.execute("CREATE STREAM o (id VARCHAR KEY, total DOUBLE, ts BIGINT) WITH (kafka_topic='orders', "
...                 "timestamp='ts'); CREATE STREAM s (id VARCHAR KEY, wh VARCHAR, ts BIGINT) "
...                 "WITH (kafka_topic='shipments', timestamp='ts')")
>>> q = cat.compile("CREATE STREAM shipped AS SELECT o.id AS order_id, o.total, s.wh FROM o "
...                 "LEFT JOIN s WITHIN 1 HOUR GRACE PERIOD 5 MINUTES ON o.id = s.id EMIT CHANGES")
>>> q.columns, q.source.key.name
(('TOTAL', 'WH'), 'ORDER_ID')
>>> print(q.pipeline.describe().splitlines()[2])
  1 sjoin    left shipments on ID = ID within (before=3600000ms, after=3600000ms) grace=300000ms
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import polars as pl

from streamml.errors import QueryError
from streamml.query.ksql import DEFAULT_GRACE_MS, Column, CreateAs, Token
from streamml.query.ksql_base import Query, _expr_text, _sql_expr
from streamml.query.ksql_keys import encode_key
from streamml.query.ksql_table import Source, derived_source, dtype
from streamml.stream import stream
from streamml.stream.stream_join import JoinSide, StreamJoin

__all__ = ["stream_join"]

_HOW: dict[str, Any] = {"inner": "inner", "left": "left", "full": "outer"}


def _side_column(tokens: tuple[Token, ...], sides: dict[str, Source]) -> tuple[str, str]:
    """(alias, column) of one side of the join condition."""
    ids = [t.ident for t in tokens if t.kind in ("id", "qid")]
    if len(ids) == 2 and len(tokens) == 3 and tokens[1].text == ".":
        qual, col = ids
        for alias, src in sides.items():
            if qual in (alias, src.name) and col in {c.name for c in src.columns}:
                return alias, col
    elif len(ids) == 1 and len(tokens) == 1:
        for alias, src in sides.items():
            if ids[0] in {c.name for c in src.columns}:
                return alias, ids[0]
    text = " ".join(t.text for t in tokens)
    raise QueryError(f"the join condition's {text} is not a column of either stream",
                     hint="ON a.column = b.column (columns of the two streams)")


def _check(st: CreateAs, left: Source, right: Source, la: str, ra: str) -> None:
    sel = st.select
    if right.kind != "STREAM":
        raise QueryError(f"{right.name} is a table: WITHIN joins two streams",
                         hint=f"drop WITHIN to join the table {right.name}")
    if la == ra or left.topic == right.topic:
        raise QueryError("a stream joined with itself is not supported yet",
                         hint="copy the stream with CREATE STREAM ... AS SELECT, then join the copy")
    for s in (left, right):
        if s.value_format != "JSON":
            raise QueryError(f"a stream-stream join of {s.name} (value_format {s.value_format}) is not supported yet",
                             hint="join streams of value_format JSON (copy one WITH (value_format='JSON'))")
    if sel.group_by or sel.window is not None or sel.partition_by is not None:
        raise QueryError("aggregating or re-keying a join in the same statement is not supported yet",
                         hint="write the join as CREATE STREAM ... AS SELECT, then aggregate or re-key that stream")


def _copartitioned(left: Source, right: Source, keys: dict[str, str], la: str,
                   partitions: Callable[[str], int] | None) -> None:
    if partitions is None:
        return
    n = {s.name: partitions(s.topic) for s in (left, right)}
    if n[left.name] != n[right.name]:
        raise QueryError(f"{left.name} ({left.topic}) has {n[left.name]} partitions, {right.name} "
                         f"({right.topic}) {n[right.name]}: a stream-stream join needs co-partitioned inputs",
                         hint="give both topics the same partition count (re-key one side with PARTITION BY into "
                              "a topic created beforehand with as many partitions)")
    for s, alias in ((left, la), (right, next(a for a in keys if a != la))):
        col = keys[alias]
        if n[s.name] > 1 and (s.key is None or s.key.name != col):
            raise QueryError(f"joining on {s.name}.{col}: {col} is not the key of {s.name}, whose topic has "
                             f"{n[s.name]} partitions, so the records of one key are spread over them",
                             hint=f"re-key it first: CREATE STREAM {s.name}_BY_{col} AS SELECT * FROM {s.name} "
                                  f"PARTITION BY {col} EMIT CHANGES; then join {s.name}_BY_{col}")


def stream_join(st: CreateAs, left: Source, right: Source, sink: str,
                decoder: Callable[[Source], Callable[[pl.DataFrame], pl.DataFrame]],
                partitions: Callable[[str], int] | None) -> Query:
    """The stream query of ``st`` (a CSAS whose join has WITHIN) over ``left`` and ``right``."""
    sel = st.select
    j = sel.join
    assert j is not None and j.within is not None
    la, ra = sel.alias, j.alias
    _check(st, left, right, la, ra)
    sides = {la: left, ra: right}
    a, b = _side_column(j.left, sides), _side_column(j.right, sides)
    if a[0] == b[0]:
        raise QueryError("the join condition must compare a column of each stream", hint=f"ON {la}.x = {ra}.y")
    keys = dict([a, b])
    types = {alias: next(c.type for c in sides[alias].columns if c.name == keys[alias]) for alias in sides}
    if dtype(types[la], keys[la]) != dtype(types[ra], keys[ra]):
        raise QueryError(f"the join columns {la}.{keys[la]} ({types[la]}) and {ra}.{keys[ra]} ({types[ra]}) "
                         "differ in type", hint=f"CAST one of them in a first statement, e.g. CAST(x AS {types[la]})")
    _copartitioned(left, right, keys, la, partitions)
    before, after = j.within
    grace = DEFAULT_GRACE_MS if j.grace is None else j.grace

    def side(alias: str) -> JoinSide:
        src = sides[alias]
        return JoinSide(decoder(src), keys[alias], src.timestamp, f"{alias}.",
                        tuple((c.name, dtype(c.type, c.name)) for c in src.columns))

    op = StreamJoin(right.topic, side(la), side(ra), before, after, grace, _HOW[j.how])
    p = stream(left.topic, name=f"ksql-{st.name.lower()}").exact(record_key=True).stream_join(op)
    names = {c.name: f"{ra}.{c.name}" for c in right.columns} | {c.name: f"{la}.{c.name}" for c in left.columns}
    tables = frozenset({la, ra})
    if sel.where is not None:
        p = p.filter(_sql_expr(_expr_text(sel.where, names, tables), "WHERE clause"))
    proj: list[tuple[pl.Expr, str]] = []
    keyname = None
    for i, item in enumerate(sel.items):
        t = item.tokens
        if any(x.text == "*" and k + 1 == len(t) for k, x in enumerate(t)):
            raise QueryError("SELECT * over a join is not supported yet", hint="list the columns you need")
        simple = len(t) == 1 and t[0].kind in ("id", "qid")
        qual = len(t) == 3 and t[1].text == "."
        name = item.alias or (t[0].ident if simple else t[2].ident if qual else f"KSQL_COL_{i}")
        text = _expr_text(t, names, tables)
        if keyname is None and text in (f'"{la}.{keys[la]}"', f'"{ra}.{keys[ra]}"'):
            keyname = name
        proj.append((_sql_expr(text, "expression").alias(name), name))
    keyname = keyname or keys[la]
    ktype = types[la]
    lkey, rkey = pl.col(f"{la}.{keys[la]}"), pl.col(f"{ra}.{keys[ra]}")
    keyexpr = pl.coalesce(lkey, rkey) if j.how == "full" else lkey
    exprs = [e for e, _ in proj]
    values = [n for _, n in proj if n != keyname]

    def finish(df: pl.DataFrame) -> pl.DataFrame:
        if df.height == 0:
            return df
        out = df.select([*exprs, "__t"]).select([*values, "__t"])  # __t: the event time (a header)
        return out.with_columns(pl.Series("__ksql_key", encode_key(df.select(keyexpr).to_series(), ktype),
                                          dtype=pl.Binary))

    p = p.map_batch(finish, name="select " + ", ".join(n for _, n in proj)).to(sink, key="__ksql_key")
    kcol = Column(keyname, ktype, True)
    keysrc = replace(left, columns=(kcol, *[c for c in left.columns if not c.key and c.name != keyname]))
    schema = {f"{alias}.{c.name}": dtype(c.type, c.name) for alias, s in sides.items() for c in s.columns}
    der = derived_source(st.name, sink, kcol, schema, proj, None)
    return Query(st.name, "STREAM", sink, keysrc, p, ktype, False, st.text, tuple(values), der)
