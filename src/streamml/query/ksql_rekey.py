"""``PARTITION BY`` (re-keying a stream) and the value formats of a compiled query.

``CREATE STREAM x AS SELECT ... FROM s PARTITION BY expr`` keys every output record by
``expr``, as ksqlDB does: the key is the expression's value in ksqlDB's KAFKA key format, the
column it names leaves the value, and the producer's partitioner sends each record to the
partition of its new key, so the records of one key are in one partition of the output topic
(the topic later statements aggregate or join by that key). As in ksqlDB, the SELECT list
must include the partitioning expression (``SELECT *`` does when it is a column); the key
column is the column's name, or the alias the SELECT gives the expression.

>>> from streamml.query.ksql_compile import Catalog
>>> cat = Catalog()
>>> _ = cat.execute("CREATE STREAM pay (card VARCHAR KEY, shop VARCHAR, amount DOUBLE) WITH (kafka_topic='p')")
>>> q = cat.compile("CREATE STREAM by_shop AS SELECT * FROM pay PARTITION BY shop EMIT CHANGES")
>>> q.key_type, q.columns, [(c.name, c.key) for c in q.derived.columns]
('VARCHAR', ('CARD', 'AMOUNT'), [('SHOP', True), ('CARD', False), ('AMOUNT', False)])
>>> cat.compile("CREATE STREAM b2 AS SELECT card FROM pay PARTITION BY shop EMIT CHANGES")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.QueryError: the SELECT list of B2 must include the partitioning expression SHOP (hint: ...)
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import polars as pl

from streamml.errors import QueryError
from streamml.query.ksql import Column, CreateAs
from streamml.query.ksql_base import Query
from streamml.query.ksql_formats import check_props, sink_format, source_format
from streamml.query.ksql_keys import encode_key
from streamml.query.ksql_table import Source, derived_source, dtype
from streamml.stream import Pipeline

__all__ = ["partition_by", "with_formats"]

_KEY_TYPES: dict[Any, str] = {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Int32: "INT", pl.Float64: "DOUBLE"}


def _key_of(st: CreateAs, proj: list[tuple[pl.Expr, str]]) -> str:
    """The output column that PARTITION BY names (a column, or a SELECT item's expression)."""
    toks = st.select.partition_by or ()
    if len(toks) == 3 and toks[1].text == "." and toks[2].kind in ("id", "qid"):
        toks = toks[2:]
    names = [n for _, n in proj]
    if len(toks) == 1 and toks[0].kind in ("id", "qid"):
        want = toks[0].ident
        if want in names:
            return want
    else:
        text = " ".join(t.upper for t in toks)
        for item in st.select.items:
            if " ".join(t.upper for t in item.tokens) == text and item.alias in names:
                return item.alias or ""
        want = " ".join(t.text for t in toks)
    raise QueryError(f"the SELECT list of {st.name} must include the partitioning expression {want}",
                     hint=f"SELECT {want}{'' if len(toks) == 1 else ' AS new_key'}, ... (or SELECT *) "
                          f"... PARTITION BY {want}")


def partition_by(st: CreateAs, src: Source, p: Pipeline, sink: str, proj: list[tuple[pl.Expr, str]]) -> Query:
    """The stream query of ``st`` (a CSAS with PARTITION BY) keyed by its partitioning expression."""
    key = _key_of(st, proj)
    schema = {c.name: dtype(c.type, c.name) for c in src.columns}
    try:
        out = pl.DataFrame(schema=schema).select([e for e, _ in proj]).schema
    except Exception as exc:
        raise QueryError(f"cannot type the SELECT list of {st.name}: {str(exc).splitlines()[0]}") from None
    ktype = _KEY_TYPES.get(out[key])
    if ktype is None:
        raise QueryError(f"PARTITION BY {key}: a key of type {out[key]} has no KAFKA key format here",
                         hint="partition by a VARCHAR, BIGINT, INT or DOUBLE expression (CAST it)")
    exprs = [e for e, _ in proj]
    values = [n for _, n in proj if n != key]

    def rekey(df: pl.DataFrame) -> pl.DataFrame:
        if df.height == 0:
            return df
        res = df.select(["__row", *exprs])
        return res.select(["__row", *values]).with_columns(
            pl.Series("__ksql_key", encode_key(res[key], ktype), dtype=pl.Binary))

    p = p.map_batch(rekey, name=f"select {', '.join(values)} partition by {key}").to(sink, key="__ksql_key")
    cols = [Column(c.name, c.type, c.name == key) for c in src.columns]
    if key not in schema:
        cols.append(Column(key, ktype, True))
    keysrc = replace(src, columns=tuple(cols))
    der = derived_source(st.name, sink, Column(key, ktype, True), schema, proj, src.timestamp)
    return Query(st.name, "STREAM", sink, keysrc, p, ktype, False, st.text, tuple(values), der)


def with_formats(q: Query, src: Source, props: dict[str, str], registry: str | None) -> Query:
    """``q`` reading ``src``'s value format and writing its own (``WITH (value_format=...)``,
    by default the source's, as in ksqlDB)."""
    given = dict(props)
    given.setdefault("VALUE_FORMAT", src.value_format)
    if given["VALUE_FORMAT"].upper() == src.value_format == "DELIMITED":
        given.setdefault("VALUE_DELIMITER", src.delimiter)
    fmt, delim = check_props(given)
    op = q.pipeline.window_op
    if fmt == "DELIMITED" and op is not None and any(a.fn in ("collect_list", "topk") for _, a in op.aggs):
        raise QueryError(f"{q.name} writes arrays (COLLECT_LIST, TOPK), which value_format DELIMITED cannot hold",
                         hint="write it WITH (value_format='JSON') or 'AVRO'")
    types: dict[str, Any] = {c.name: dtype(c.type, c.name) for c in q.derived.columns} if q.derived else {}
    sink = sink_format(fmt, delim, q.sink, [(n, types.get(n)) for n in q.columns], registry, q.name)
    der = replace(q.derived, value_format=fmt, delimiter=delim) if q.derived is not None else None
    return replace(q, pipeline=q.pipeline.formats(source_format(src, registry), sink), derived=der)
