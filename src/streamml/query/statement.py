"""Parsed SQL statements: what :func:`~streamml.query.sql` runs once and :mod:`~streamml.query.continuous` deploys.

The statement layer shared by both, so neither imports the other's module: :func:`parse`
(DuckDB's own parser, via ``json_serialize_sql``) finds the table references,
:meth:`Statement.rewrite` swaps them for registered views, :func:`run_statement` runs the
statement over given tables (no Kafka here).

>>> st = parse("SELECT p.card_id, c.limit_ FROM payments p JOIN raw.cards c USING (card_id) EMIT CHANGES")
>>> [t.name for t in st.tables], st.emit_changes
(['payments', 'raw.cards'], True)
>>> st.rewrite({"payments": "__t0", "raw.cards": "__t1"})
'SELECT p.card_id, c.limit_ FROM "__t0" AS "p" JOIN "__t1" AS "c" USING (card_id)'
>>> run_statement(parse("SELECT v * 2 AS w FROM t"), {"t": pl.DataFrame({"v": [1, 2]})})["w"].to_list()
[2, 4]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import duckdb
import polars as pl

from streamml.errors import QueryError
from streamml.extras import require

__all__ = ["Statement", "TableRef", "parse", "run_statement", "quote", "Output"]

_EMIT = re.compile(r"\s+EMIT\s+CHANGES\s*;?\s*$", re.IGNORECASE | re.DOTALL)
#: What a statement's result is returned as.
Output = Literal["polars", "pandas", "arrow"]


def quote(identifier: str) -> str:
    """A DuckDB quoted identifier.

    >>> quote('a"b')
    '"a""b"'
    """
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class TableRef:
    """One table reference in a statement: the name as written and where it is."""

    name: str
    alias: str
    location: int
    length: int


@dataclass(frozen=True)
class Statement:
    """A parsed SELECT statement and the topics it reads."""

    text: str
    body: str
    emit_changes: bool
    node: dict[str, Any] = field(repr=False)
    tables: tuple[TableRef, ...]

    @property
    def topic_names(self) -> list[str]:
        """The distinct table names, in order of first appearance."""
        return list(dict.fromkeys(t.name for t in self.tables))

    def rewrite(self, names: dict[str, str]) -> str:
        """The body with each table reference replaced by ``names[ref.name] AS alias``."""
        data = self.body.encode()
        out, pos = [], 0
        for ref in sorted(self.tables, key=lambda r: r.location):
            alias = ref.alias or ref.name.split(".")[-1]
            out.append(data[pos:ref.location])
            out.append(f"{quote(names[ref.name])} AS {quote(alias)}".encode())
            pos = ref.location + ref.length
        out.append(data[pos:])
        return b"".join(out).decode()


def _walk(obj: Any, ctes: set[str], out: list[dict[str, Any]]) -> None:
    if isinstance(obj, dict):
        cte_map = obj.get("cte_map")
        if isinstance(cte_map, dict):
            ctes.update(entry["key"] for entry in cte_map.get("map", []))
        if obj.get("type") == "BASE_TABLE" and "qualified_name" in obj:
            out.append(obj)
        for value in obj.values():
            _walk(value, ctes, out)
    elif isinstance(obj, list):
        for value in obj:
            _walk(value, ctes, out)


def _serialize(body: str) -> dict[str, Any]:
    con = duckdb.connect()
    try:
        raw = con.execute("SELECT json_serialize_sql(?)", [body]).fetchall()[0][0]
    finally:
        con.close()
    tree: dict[str, Any] = json.loads(raw)
    return tree


def parse(text: str) -> Statement:
    """Parse one SELECT statement (optionally ending in ``EMIT CHANGES``)."""
    body = text.strip()
    emit = bool(_EMIT.search(" " + body))
    body = _EMIT.sub("", " " + body).strip().rstrip(";").strip()
    if not body:
        raise QueryError("empty SQL statement")
    tree = _serialize(body)
    if tree.get("error"):
        raise QueryError(f"SQL does not parse: {tree.get('error_message', 'syntax error')}",
                         hint="only SELECT statements are supported, optionally ending in EMIT CHANGES")
    statements = tree.get("statements", [])
    if len(statements) != 1:
        raise QueryError(f"expected one SELECT statement, got {len(statements)}")
    node = statements[0]["node"]
    ctes: set[str] = set()
    found: list[dict[str, Any]] = []
    _walk(node, ctes, found)
    refs = []
    for t in found:
        path = t["qualified_name"]["path"]
        name = ".".join(path)
        if len(path) == 1 and name in ctes:
            continue
        refs.append(TableRef(name, t.get("alias") or "", int(t["query_location"]), int(t["query_location_length"])))
    return Statement(text, body, emit, node, tuple(refs))


def run_statement(stmt: Statement, tables: dict[str, Any], output: Output = "polars") -> Any:
    """Run ``stmt`` with each topic name bound to an Arrow table / Polars frame in ``tables``."""
    names = {name: f"__sm_t{i}" for i, name in enumerate(stmt.topic_names)}
    con = duckdb.connect()
    try:
        for name, view in names.items():
            data = tables[name]
            con.register(view, data.to_arrow() if isinstance(data, pl.DataFrame) else data)
        rel = con.sql(stmt.rewrite(names))
        if rel is None:
            raise QueryError("the statement returns no rows", hint="only SELECT statements are supported")
        if output == "pandas":
            require("pandas", "output='pandas'")
            return rel.df()
        if output == "arrow":
            return rel.arrow().read_all()
        return rel.pl()
    except duckdb.Error as exc:
        empty = [n for n in stmt.topic_names if _height(tables[n]) == 0]
        hint = (f"topic(s) {', '.join(empty)} have no records, so only the _topic, _partition, _offset, "
                "_timestamp, _key columns exist" if empty else None)
        raise QueryError(f"SQL failed: {str(exc).strip()}", hint=hint) from None
    finally:
        con.close()


def _height(data: Any) -> int:
    return data.height if isinstance(data, pl.DataFrame) else data.num_rows
