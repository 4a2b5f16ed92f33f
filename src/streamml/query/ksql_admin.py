"""ksqlDB's statements about the session: SHOW / LIST, DESCRIBE, DROP, TERMINATE.

They work on this process's session (:func:`streamml.query.ksql_run.catalog`): the streams and
tables declared or created, and the persistent queries deployed (``deploy(...)`` of a
``CREATE ... AS SELECT`` or ``INSERT INTO``, or ``POST /ksql``), each under a ksqlDB-style id
(``CTAS_PER_CARD_1``, ``CSAS_BIG_2``, ``INSERTQUERY_1``). Each answers a DataFrame:

- ``SHOW STREAMS`` / ``SHOW TABLES``: name, topic, key_format, value_format, windowed, origin
  (``declared`` or the query's kind);
- ``SHOW QUERIES``: query_id, status (RUNNING, ERROR, NOT_RUNNING), sink, sink_topic, statement;
- ``DESCRIBE x``: one row per column: field, type (``None`` when the query computes it), key;
- ``DROP STREAM|TABLE [IF EXISTS] x [DELETE TOPIC]``: refused while a running query reads or
  writes ``x`` (as ksqlDB: TERMINATE it first); ``DELETE TOPIC`` also deletes the topic; the
  internal repartition topic of a query that has one is deleted with it in either case;
- ``TERMINATE query_id`` / ``TERMINATE ALL``: stops the deployment (its output stays).

>>> parse_admin("SHOW TABLES;"), parse_admin("LIST STREAMS EXTENDED")
(Show(what='TABLES'), Show(what='STREAMS'))
>>> parse_admin("DROP TABLE IF EXISTS per_card DELETE TOPIC")
Drop(kind='TABLE', name='PER_CARD', if_exists=True, delete_topic=True)
>>> parse_admin("TERMINATE ALL"), parse_admin("CREATE STREAM s (a INT) WITH (kafka_topic='t')") is None
(Terminate(query_id=None), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.query.ksql import _Parser
from streamml.query.ksql_compile import Catalog, Query
from streamml.query.ksql_pull import key_column
from streamml.query.ksql_repartition import internal_topics
from streamml.query.ksql_table import Source, SqlTable
from streamml.stream.pipeline import Join

__all__ = ["Show", "Describe", "Drop", "Terminate", "parse_admin", "run_admin"]


@dataclass(frozen=True)
class Show:
    what: str  # STREAMS, TABLES or QUERIES


@dataclass(frozen=True)
class Describe:
    name: str


@dataclass(frozen=True)
class Drop:
    kind: str
    name: str
    if_exists: bool
    delete_topic: bool


@dataclass(frozen=True)
class Terminate:
    query_id: str | None  # None: ALL


Admin = Show | Describe | Drop | Terminate


class _AdminParser(_Parser):
    def admin(self) -> Admin | None:
        if self.accept("SHOW") or self.accept("LIST"):
            t = self.peek()
            what = t.upper if t is not None else ""
            if what not in ("STREAMS", "TABLES", "QUERIES"):
                raise self.error(f"SHOW {what or '...'} is not supported",
                                 hint="SHOW STREAMS, SHOW TABLES or SHOW QUERIES; topics: streamml.topics()")
            self.i += 1
            self.accept("EXTENDED")
            self.done()
            return Show(what)
        if self.accept("DESCRIBE"):
            self.accept("EXTENDED")
            if self.at("STREAMS") or self.at("TABLES") or self.at("FUNCTION"):
                raise self.error("DESCRIBE takes one stream or table name", hint="DESCRIBE name; SHOW STREAMS")
            name = self.name("a stream or table name")
            self.accept("EXTENDED")
            self.done()
            return Describe(name)
        if self.accept("DROP"):
            t = self.peek()
            kind = t.upper if t is not None else ""
            if kind not in ("STREAM", "TABLE"):
                raise self.error(f"DROP {kind or '...'} is not supported", hint="DROP STREAM name or DROP TABLE name")
            self.i += 1
            if_exists = self.accept("IF", "EXISTS")
            name = self.name(f"the {kind.lower()}'s name")
            delete = self.accept("DELETE", "TOPIC")
            self.done()
            return Drop(kind, name, if_exists, delete)
        if self.accept("TERMINATE"):
            if self.accept("ALL"):
                self.done()
                return Terminate(None)
            t = self.peek()
            if t is None or t.kind not in ("id", "qid"):
                raise self.error("expected a query id", hint="TERMINATE CTAS_X_1 (see SHOW QUERIES) or TERMINATE ALL")
            self.i += 1
            self.done()
            return Terminate(t.text if t.kind == "id" else t.ident)
        return None


def parse_admin(text: str) -> Admin | None:
    """The SHOW/LIST, DESCRIBE, DROP or TERMINATE statement ``text``, or None for other statements."""
    return _AdminParser(text).admin()


def _origin(name: str, cat: Catalog) -> tuple[str, str, bool, str] | None:
    """(kind, topic, windowed, origin) of a stream or table of the session."""
    if name in cat.queries:
        q = cat.queries[name]
        return q.kind, q.sink, q.windowed, "query"
    if name in cat.sources:
        s = cat.sources[name]
        return s.kind, s.topic, False, "declared"
    return None


def _value_format(name: str, cat: Catalog) -> str:
    if name in cat.queries:
        f = cat.queries[name].pipeline.sink_format
        return f.name.upper() if f is not None else "JSON"
    return cat.sources[name].value_format


def _status(d: Any) -> str:
    if d.error is not None:
        return "ERROR"
    return "RUNNING" if d.running else "NOT_RUNNING"


def _show(st: Show, cat: Catalog) -> pl.DataFrame:
    if st.what == "QUERIES":
        rows = [{"query_id": qid, "status": _status(d), "sink": d.query.name if d.query else None,
                 "sink_topic": d.sink, "statement": d.query.text.strip() if d.query else ""}
                for qid, d in cat.running.items()]
        return pl.DataFrame(rows, schema={"query_id": pl.String, "status": pl.String, "sink": pl.String,
                                          "sink_topic": pl.String, "statement": pl.String})
    kind = st.what[:-1]
    rows = []
    for name in sorted({*cat.sources, *cat.queries}):
        o = _origin(name, cat)
        if o is not None and o[0] == kind:
            rows.append({"name": name, "topic": o[1], "key_format": "KAFKA", "value_format": _value_format(name, cat),
                         "windowed": o[2], "origin": o[3]})
    return pl.DataFrame(rows, schema={"name": pl.String, "topic": pl.String, "key_format": pl.String,
                                      "value_format": pl.String, "windowed": pl.Boolean, "origin": pl.String})


def _describe(st: Describe, cat: Catalog) -> pl.DataFrame:
    rows: list[tuple[str, str | None, bool]]
    if st.name in cat.queries:
        q: Query = cat.queries[st.name]
        types = {c.name: c.type for c in q.source.columns}
        key = key_column(q) if q.key_type is not None else None
        rows = [(key, q.key_type, True)] if key is not None else []
        rows += [(w, "BIGINT", False) for w in (("WINDOWSTART", "WINDOWEND") if q.windowed else ())]
        rows += [(c, types.get(c), False) for c in q.columns]
    elif st.name in cat.sources:
        src: Source = cat.sources[st.name]
        rows = [(c.name, c.type, c.key) for c in src.columns]
    else:
        cat.source(st.name)  # raises: not declared, with the known names
        rows = []
    return pl.DataFrame(rows, schema={"field": pl.String, "type": pl.String, "key": pl.Boolean}, orient="row")


def _users(name: str, topic: str, cat: Catalog) -> list[str]:
    """Running queries that read from or write to ``name``."""
    out = []
    for qid, d in cat.running.items():
        q = d.query
        if q is None or not d.running:
            continue
        joined = [op.table.src.name for op in q.pipeline.ops if isinstance(op, Join) and isinstance(op.table, SqlTable)]
        if q.source.name == name or name in joined or q.name == name or d.sink == topic:
            out.append(qid)
    return out


def _drop(st: Drop, cat: Catalog, settings: Settings) -> pl.DataFrame:
    o = _origin(st.name, cat)
    if o is None:
        if st.if_exists:
            return pl.DataFrame({"name": [st.name], "dropped": [False], "topic_deleted": [False]})
        cat.source(st.name)  # raises with the known names
    assert o is not None
    kind, topic, _, _ = o
    if kind != st.kind:
        raise QueryError(f"{st.name} is a {kind.lower()}, not a {st.kind.lower()}", hint=f"DROP {kind} {st.name}")
    users = _users(st.name, topic, cat)
    if users:
        raise QueryError(f"cannot drop {st.name}: running queries read from or write to it: {', '.join(users)}",
                         hint=f"TERMINATE {users[0]} first (SHOW QUERIES lists them)")
    q = cat.queries.pop(st.name, None)
    cat.sources.pop(st.name, None)
    internal = internal_topics(q) if q is not None else []  # nothing else reads them: dropped with the query
    if st.delete_topic or internal:
        from streamml.kafka.admin import delete_topics

        delete_topics(settings, ([topic] if st.delete_topic else []) + internal)  # missing ones are ignored
    return pl.DataFrame({"name": [st.name], "dropped": [True], "topic_deleted": [st.delete_topic]})


def _terminate(st: Terminate, cat: Catalog) -> pl.DataFrame:
    if st.query_id is None:
        ids = list(cat.running)
    else:
        match = [q for q in cat.running if q.upper() == st.query_id.upper()]
        if not match:
            known = ", ".join(cat.running) or "none running"
            raise QueryError(f"no query {st.query_id} in this session (queries: {known})",
                             hint="SHOW QUERIES lists the query ids")
        ids = match
    for qid in ids:
        d = cat.running.pop(qid)
        try:
            d.stop()
        except Exception:  # noqa: BLE001 - a failed query is terminated all the same
            pass
    return pl.DataFrame({"query_id": ids, "status": ["TERMINATED"] * len(ids)}, schema={
        "query_id": pl.String, "status": pl.String})


def run_admin(st: Admin, cat: Catalog, settings: Settings) -> pl.DataFrame:
    """Run one SHOW, DESCRIBE, DROP or TERMINATE statement on the session ``cat``."""
    if isinstance(st, Show):
        return _show(st, cat)
    if isinstance(st, Describe):
        return _describe(st, cat)
    if isinstance(st, Drop):
        return _drop(st, cat, settings)
    return _terminate(st, cat)
