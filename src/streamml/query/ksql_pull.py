"""Pull queries: a materialised table's current rows, looked up by key, as ksqlDB answers them.

``SELECT * FROM per_card WHERE card = 'c1'`` on a ``CREATE TABLE per_card AS SELECT ...``
(deployed, so its topic holds its changelog) reads the table's topic through the read layer
(a snapshot pinned now, committed records only) and folds it into the table's state: the
latest row per key, for a windowed table per (key, window start); a tombstone (a row that
failed HAVING) deletes. The WHERE clause then selects rows of that state. A declared
``CREATE TABLE t (...) WITH (kafka_topic=...)`` is its topic's latest value per record key.

As in ksqlDB (with ``ksql.query.pull.table.scan.enabled=false``), the WHERE clause must look
up keys: ``KEY = literal`` or ``KEY IN (literals)``, ANDed with other conditions (window
bounds ``WINDOWSTART >= ...``/``WINDOWEND < ...`` on windowed tables, value columns). A
WINDOWSTART/WINDOWEND bound may be a number (ms) or an ISO time string.

>>> from streamml.query.ksql_compile import Catalog, encode_key
>>> cat = Catalog()
>>> _ = cat.execute("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE) WITH (kafka_topic='p');"
...                 "CREATE TABLE tot AS SELECT card, SUM(amount) AS total FROM pay GROUP BY card EMIT CHANGES;")
>>> q = cat.queries["TOT"]
>>> k = encode_key(pl.Series(["a", "b"]), "VARCHAR")
>>> state = table_rows(q, [(k[0], b'{"TOTAL": 1.0}'), (k[1], b'{"TOTAL": 5.0}'), (k[0], b'{"TOTAL": 3.0}')])
>>> state.to_dicts()
[{'CARD': 'a', 'TOTAL': 3.0}, {'CARD': 'b', 'TOTAL': 5.0}]
>>> answer(parse_pull("SELECT total FROM tot WHERE card = 'a'"), q, state).to_dicts()
[{'TOTAL': 3.0}]
>>> answer(parse_pull("SELECT * FROM tot WHERE total > 1"), q, state)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.QueryError: a pull query looks up keys: the WHERE clause of ... needs CARD = <value> ...
"""

from __future__ import annotations

from typing import Any, Iterable

import polars as pl

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.query.ksql import Item, Token
from streamml.query.ksql_base import _columns, _expr_text, _sql_expr
from streamml.query.ksql_compile import Catalog, Query, _decoder, decode_record
from streamml.query.ksql_formats import source_format
from streamml.query.ksql_select import PullQuery, parse_transient
from streamml.query.ksql_table import Source, dtype
from streamml.query.reader import as_millis, decode_values, read_spans, spans

__all__ = ["pull", "parse_pull", "table_rows", "source_rows", "answer", "key_column", "read_records", "select_rows",
           "conjuncts"]

_WINDOW_COLS = ("WINDOWSTART", "WINDOWEND")


def parse_pull(text: str) -> PullQuery:
    """A pull query (refuses a push query)."""
    st = parse_transient(text)
    if not isinstance(st, PullQuery):
        raise QueryError("expected a pull query (a SELECT without EMIT)")
    return st


def key_column(q: Query) -> str:
    """The name of ``q``'s key column (its GROUP BY column, or its source's key)."""
    op = q.pipeline.window_op
    if op is not None:
        return op.key
    if q.source.key is None:
        raise QueryError(f"{q.name} has no key column", hint="pull queries need a table with a key")
    return q.source.key.name


def _empty(names: list[str], types: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame(schema={n: types.get(n, pl.Null) for n in names})


def table_rows(q: Query, records: Iterable[tuple[bytes | None, bytes | None]]) -> pl.DataFrame:
    """The state of table ``q`` after its output ``records`` (key, value) in order: the latest
    row per record key (key and window start), a ``None`` value deleting; sorted by key."""
    state: dict[bytes, dict[str, Any]] = {}
    for k, v in records:
        if k is None:
            continue
        if v is None:
            state.pop(k, None)
        else:
            row = decode_record(q, k, v)
            row.pop("_tombstone", None)
            state[k] = row
    key = key_column(q)
    names = [key, *(_WINDOW_COLS if q.windowed else ()), *q.columns]
    types = {key: dtype(q.key_type or "VARCHAR", key), "WINDOWSTART": pl.Int64, "WINDOWEND": pl.Int64}
    if not state:
        return _empty(names, types)
    df = pl.DataFrame(list(state.values()), infer_schema_length=None)
    names += [c for c in df.columns if c not in names]
    df = df.select([pl.col(c) if c in df.columns else pl.lit(None).alias(c) for c in names])
    return df.sort([key, *(["WINDOWSTART"] if q.windowed else [])], nulls_last=True)


def source_rows(src: Source, records: Iterable[tuple[bytes | None, bytes | None]],
                registry: str | None = None) -> pl.DataFrame:
    """The state of a declared TABLE: the latest value per record key of its topic, as its columns
    (values in its value format; ``registry``: the schema registry's URL for AVRO)."""
    state: dict[bytes, bytes] = {}
    for k, v in records:
        if k is None:
            continue
        if v is None:
            state.pop(k, None)
        else:
            state[k] = v
    names = [c.name for c in src.columns]
    if not state:
        return _empty(names, {c.name: dtype(c.type, c.name) for c in src.columns})
    fmt = source_format(src, registry)
    keys, values = list(state), list(state.values())
    if fmt is None:
        df = decode_values(values)
    else:  # a value that does not decode is left out, as the engine leaves it out of a stream
        df, bad = fmt.decode(values)
        keys = [k for i, k in enumerate(keys) if i not in bad]
    df = df.with_columns(pl.Series("__record_key", keys, dtype=pl.Binary))
    out = _decoder(src)(df).select(names)
    assert src.key is not None
    return out.sort(src.key.name, nulls_last=True)


def conjuncts(tokens: tuple[Token, ...]) -> list[tuple[Token, ...]]:
    """Top-level AND terms (the AND of BETWEEN x AND y stays inside its term)."""
    out: list[tuple[Token, ...]] = []
    cur: list[Token] = []
    depth, between = 0, False
    for t in tokens:
        depth += t.text == "("
        depth -= t.text == ")"
        if depth == 0 and t.kind == "id" and t.upper == "BETWEEN":
            between = True
        elif depth == 0 and t.kind == "id" and t.upper == "AND":
            if between:
                between = False
            else:
                out.append(tuple(cur))
                cur = []
                continue
        cur.append(t)
    out.append(tuple(cur))
    return out


def _unqualified(term: tuple[Token, ...]) -> list[Token]:
    toks = list(term)
    return [t for i, t in enumerate(toks)
            if not (t.kind in ("id", "qid") and i + 1 < len(toks) and toks[i + 1].text == ".")
            and not (t.text == "." and i > 0)]


def _is_lookup(term: tuple[Token, ...], key: str) -> bool:
    """``KEY = literal``, ``literal = KEY`` or ``KEY IN (literal, ...)``."""
    t = _unqualified(term)
    lit = ("num", "str")
    if len(t) == 3 and t[1].text == "=":
        return (t[0].kind in ("id", "qid") and t[0].ident == key and t[2].kind in lit) or \
               (t[2].kind in ("id", "qid") and t[2].ident == key and t[0].kind in lit)
    if len(t) >= 4 and t[0].kind in ("id", "qid") and t[0].ident == key and t[1].upper == "IN" \
            and t[2].text == "(" and t[-1].text == ")":
        inner = t[3:-1]
        return bool(inner) and all(x.kind in lit if i % 2 == 0 else x.text == "," for i, x in enumerate(inner))
    return False


def _times(term: tuple[Token, ...]) -> tuple[Token, ...]:
    """ISO time strings compared with WINDOWSTART/WINDOWEND become milliseconds."""
    idents = {t.ident for t in term if t.kind in ("id", "qid")}
    if not idents & set(_WINDOW_COLS):
        return term
    return tuple(Token("num", str(as_millis(t.text[1:-1])), t.pos) if t.kind == "str" else t for t in term)


def answer(st: PullQuery, q: Query | Source, state: pl.DataFrame) -> pl.DataFrame:
    """The rows of pull query ``st`` on table ``q`` whose current rows are ``state``."""
    name = q.name
    windowed = isinstance(q, Query) and q.windowed
    if isinstance(q, Query):
        key = key_column(q)
    else:
        assert q.key is not None
        key = q.key.name
    where = conjuncts(st.where) if st.where is not None else []
    if not any(_is_lookup(term, key) for term in where):
        raise QueryError(f"a pull query looks up keys: the WHERE clause of a query on {name} needs {key} = <value> "
                         f"(or {key} IN (...))",
                         hint=f"add WHERE {key} = ...; ksqlDB scans whole tables only with "
                              "ksql.query.pull.table.scan.enabled. To see every row, read the table's topic with "
                              "streamml.topic(...), or follow its changes with ... EMIT CHANGES")
    return select_rows(st.items, where, state, name, windowed=windowed, limit=st.limit)


def select_rows(items: tuple[Item, ...], where: list[tuple[Token, ...]], rows: pl.DataFrame, name: str, *,
                windowed: bool, limit: int | None = None) -> pl.DataFrame:
    """``rows`` (of table or stream ``name``) filtered by the ANDed ``where`` terms, projected to ``items``."""
    mentioned = set().union(*(_columns(term) for term in where)) if where else set()
    if not windowed and mentioned & set(_WINDOW_COLS):
        raise QueryError(f"{name} is not windowed: WINDOWSTART and WINDOWEND exist on windowed tables only",
                         hint="drop the window bounds")
    missing = sorted(mentioned - set(rows.columns))
    if missing:
        raise QueryError(f"{', '.join(missing)} is not a column of {name}", hint="columns: " + ", ".join(rows.columns))
    out = rows
    if where:
        cond = " AND ".join(f"({_expr_text(_times(term), {})})" for term in where)
        try:
            keep = _sql_expr(cond, "WHERE clause")
            if "_tombstone" in rows.columns:  # a deletion is a change whatever the WHERE says
                keep = keep.fill_null(False) | pl.col("_tombstone")
            out = rows.filter(keep)
        except pl.exceptions.PolarsError as exc:
            raise QueryError(f"cannot evaluate the WHERE clause on {name}: {str(exc).splitlines()[0]}",
                             hint="compare columns with literals of their types") from None
    exprs: list[pl.Expr] = []
    for i, item in enumerate(items):
        t = item.tokens
        if len(t) == 1 and t[0].text == "*":
            exprs += [pl.col(c) for c in rows.columns if c != "_tombstone"]
            continue
        unknown = sorted(_columns(t) - set(rows.columns))
        if unknown:
            raise QueryError(f"{', '.join(unknown)} is not a column of {name}",
                             hint="columns: " + ", ".join(c for c in rows.columns if c != "_tombstone"))
        simple = len(t) == 1 and t[0].kind in ("id", "qid")
        alias = item.alias or (t[0].ident if simple else f"KSQL_COL_{i}")
        exprs.append(_sql_expr(_expr_text(t, {}), "expression").alias(alias))
    if "_tombstone" in rows.columns:
        exprs.append(pl.col("_tombstone"))
    out = out.select(exprs)
    return out.head(limit) if limit is not None else out


def read_records(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every committed record of ``topic`` now, per partition in offset order."""
    from streamml.kafka.admin import list_topics

    if topic not in list_topics(settings):
        raise QueryError(f"the table's topic {topic} does not exist: it is not materialised",
                         hint="deploy its CREATE TABLE ... AS SELECT first (streamml.deploy(...)), "
                              "then pull from it")
    return [(m.key(), m.value()) for m in read_spans(settings, spans(settings, topic))]


def pull(st: PullQuery, cat: Catalog, settings: Settings) -> pl.DataFrame:
    """Answer pull query ``st`` from the current state of its table (see the module doc)."""
    if st.source in cat.queries:
        q = cat.queries[st.source]
        if q.kind != "TABLE":
            raise QueryError(f"{q.name} is a stream: pull queries are on tables",
                             hint=f"add EMIT CHANGES to follow it: SELECT ... FROM {q.name} EMIT CHANGES")
        topic = q.pipeline.sink_topic(settings) or q.sink
        return answer(st, q, table_rows(q, read_records(settings, topic)))
    src = cat.source(st.source)
    if src.kind != "TABLE":
        raise QueryError(f"{src.name} is a stream: pull queries are on tables",
                         hint=f"add EMIT CHANGES for a push query: SELECT ... FROM {src.name} EMIT CHANGES")
    return answer(st, src, source_rows(src, read_records(settings, src.topic), cat.registry))
