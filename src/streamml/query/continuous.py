"""Continuous SQL: the statement tried in the notebook is the statement that runs in production.

A statement ending in ``EMIT CHANGES`` describes a stream, not a result::

    SELECT card_id, amount * 100 AS cents FROM payments WHERE amount > 10 EMIT CHANGES

``streamml.sql(...)`` runs it over what the topic holds now (a preview);
:func:`deploy` turns it into a stream pipeline (``stream(topic).sql(...).to(...)``) that
applies it to every micro-batch, forever, in Kafka transactions. Both see the same table:
the records' value columns (no ``_offset``/``_key`` metadata columns, which a pipeline's
batches do not have).

What can be deployed is what gives the same rows whether it runs once over everything or
batch by batch: one topic in FROM, projections, derived columns, scalar functions, CASE,
casts, and WHERE filters. Refused, with the reason:

- GROUP BY and aggregate functions (a stream never ends: aggregate over windows with
  ``stream(...).window(...).agg(...)``);
- joins and subqueries (joining a stream needs windows or a table: ``Pipeline.join``);
- DISTINCT, ORDER BY, LIMIT/OFFSET, window functions (OVER), QUALIFY, SAMPLE, CTEs,
  set operations (they need the whole stream at once);
- non-deterministic functions (random(), now(), ...: preview and pipeline would differ);
- metadata columns (``_offset``, ``_key``, ...).

>>> check("SELECT card_id, amount * 100 AS cents FROM payments WHERE amount > 10 EMIT CHANGES").topic_names
['payments']
>>> check("SELECT card_id, avg(amount) FROM payments GROUP BY card_id")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.QueryError: cannot deploy: GROUP BY over a stream needs a window (hint: aggregate with ...)
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterable

import duckdb

from streamml.errors import QueryError
from streamml.query.reader import META_COLUMNS
from streamml.query.statement import Statement, parse, quote

__all__ = ["check", "to_batch_sql", "NONDETERMINISTIC"]

#: Functions whose result differs between two runs over the same records.
NONDETERMINISTIC = frozenset({
    "random", "uuid", "gen_random_uuid", "uuidv4", "uuidv7", "now", "current_timestamp", "get_current_timestamp",
    "current_date", "current_time", "today", "transaction_timestamp", "current_localtimestamp",
    "current_localtime", "get_current_time", "nextval", "currval", "setseed",
})
_WINDOW_HINT = ("aggregate with stream(topic).window(key=..., size=tumbling('1m')).agg(...), "
                "or run it once with streamml.sql()")
_SELECT = re.compile(r"^\s*SELECT\b", re.IGNORECASE)


@functools.lru_cache(maxsize=1)
def _aggregates() -> frozenset[str]:
    con = duckdb.connect()
    try:
        rows = con.execute("SELECT DISTINCT function_name FROM duckdb_functions() "
                           "WHERE function_type = 'aggregate'").fetchall()
    finally:
        con.close()
    return frozenset(r[0].lower() for r in rows)


def _nodes(obj: Any) -> Iterable[dict[str, Any]]:
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _nodes(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _nodes(v)


def _refuse(reason: str, hint: str | None = None) -> QueryError:
    return QueryError(f"cannot deploy: {reason}", hint=hint)


def check(statement: str | Statement) -> Statement:
    """Parse ``statement`` and make sure it can run batch by batch; raise :class:`QueryError` if not."""
    st = parse(statement) if isinstance(statement, str) else statement
    node = st.node
    if node.get("type") != "SELECT_NODE":
        raise _refuse("UNION/INTERSECT/EXCEPT over streams is not supported",
                      hint="deploy one statement per input topic to the same output")
    if node.get("cte_map", {}).get("map"):
        raise _refuse("WITH (common table expressions) is not supported", hint="inline the expression")
    src = node.get("from_table") or {}
    if src.get("type") != "BASE_TABLE":
        what = "a join" if src.get("type") == "JOIN" else "a subquery or table function" if src else "no FROM"
        raise _refuse(f"the statement reads {what}; a continuous statement reads exactly one topic",
                      hint="joining a stream needs a window or a table (Pipeline.join)")
    if node.get("group_expressions") or node.get("having") is not None:
        raise _refuse("GROUP BY over a stream needs a window", hint=_WINDOW_HINT)
    for mod in node.get("modifiers", []):
        kind = {"DISTINCT_MODIFIER": "DISTINCT", "ORDER_MODIFIER": "ORDER BY",
                "LIMIT_MODIFIER": "LIMIT", "LIMIT_PERCENT_MODIFIER": "LIMIT"}.get(mod.get("type"), mod.get("type"))
        raise _refuse(f"{kind} needs the whole stream at once", hint="run it once with streamml.sql()")
    if node.get("qualify") is not None or node.get("sample") is not None or src.get("sample") is not None:
        raise _refuse("QUALIFY and SAMPLE are not supported over a stream")
    aggregates = _aggregates()
    for n in _nodes([node.get("select_list"), node.get("where_clause")]):
        cls = n.get("class")
        if cls == "WINDOW":
            raise _refuse(f"window function {n.get('function_name')}() OVER (...) needs the whole stream",
                          hint=_WINDOW_HINT)
        if cls == "SUBQUERY":
            raise _refuse("subqueries are not supported in a continuous statement")
        if cls == "FUNCTION":
            fn = str(n.get("function_name", "")).lower()
            if fn in aggregates and not n.get("is_operator"):
                raise _refuse(f"aggregate {fn}() over a stream needs a window", hint=_WINDOW_HINT)
            if fn in NONDETERMINISTIC:
                raise _refuse(f"{fn}() is not deterministic: the pipeline's rows would differ from the preview",
                              hint="use a column of the records (event time) instead")
        if cls == "COLUMN_REF" and n.get("column_names") and n["column_names"][-1] in META_COLUMNS:
            raise _refuse(f"metadata column {n['column_names'][-1]} is not part of a stream's batches",
                          hint="use columns of the record values")
    if not _SELECT.match(st.body):
        raise _refuse("the statement must start with SELECT")
    return st


def to_batch_sql(st: Statement, table: str = "batch", *, row_column: str | None = "__row") -> str:
    """The statement over one micro-batch (the table ``table``), keeping ``row_column`` first.

    The row column lets the engine give each output row its input record's key and lineage
    headers; the engine drops ``__``-prefixed columns from what it writes.

    >>> to_batch_sql(check("SELECT a, b * 2 AS c FROM payments p WHERE a > 1"))
    'SELECT "__row", a, b * 2 AS c FROM "batch" AS "p" WHERE a > 1'
    """
    body = st.rewrite({name: table for name in st.topic_names})
    if row_column:
        body = _SELECT.sub(lambda m: f"{m.group(0)} {quote(row_column)},", body, count=1)
    return body
