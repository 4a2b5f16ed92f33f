"""A file of ksqlDB statements, checked whole and then previewed or deployed: ``streamml sql --file``.

A file holds what a ksqlDB "queries file" holds: ``SET 'auto.offset.reset' = ...``,
declarations (``CREATE STREAM|TABLE ... WITH (...)``) and persistent queries (``CREATE
STREAM|TABLE ... AS SELECT``, ``INSERT INTO ... SELECT``), separated by ``;`` (``--``
comments allowed). :func:`plan` runs them in order against a fork of the session's catalog,
so that a query reads what an earlier statement declared or a CSAS writes; every statement is
parsed and compiled before anything runs, and the first one that fails is named by its number
and line in an error with a hint (a :class:`~streamml.errors.ConfigError`: exit code 2 on the
command line). Only when the whole file compiles does the session's catalog take it over.

:func:`deploy_file` then runs each persistent query as a :class:`~streamml.query.deploy.Deployment`
(in the file's order, so a chained query finds its input topic); ``streamml sql --file f.sql
--deploy --workers N`` runs the same pipelines in N supervised worker processes.

>>> [(s.number, s.line, s.head) for s in split_located("-- features\\nSET 'a' = 'b';\\n\\n"
...                                                     "CREATE STREAM s (x INT)\\n WITH (kafka_topic='t');")]
[(1, 2, "SET 'a' = 'b'"), (2, 4, 'CREATE STREAM s (x INT)')]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from streamml.config import Settings
from streamml.errors import ConfigError, QueryError
from streamml.query.ksql import CreateSource, is_ksql, parse_ksql, tokenize
from streamml.query.ksql_compile import Catalog, Query, Source
from streamml.query.ksql_select import source_of

__all__ = ["Located", "Plan", "split_located", "read_statements", "plan", "check", "deploy_file"]

_POSITION = re.compile(r"\bat position (\d+)")


@dataclass(frozen=True)
class Located:
    """One statement of a file: its number (from 1), the line it starts on, its text, and where
    its text starts in the file."""

    number: int
    line: int
    text: str
    offset: int = 0

    @property
    def head(self) -> str:
        """The statement's first line, shortened: how an error names it."""
        first = self.text.splitlines()[0].strip() if self.text else ""
        return first if len(first) <= 60 else first[:59].rstrip() + "…"

    def where(self, origin: str) -> str:
        return f"{origin}:{self.line}: statement {self.number} ({self.head})"


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def split_located(text: str, origin: str = "<text>") -> list[Located]:
    """The statements of ``text`` cut at top-level ``;``, each with its number and first line;
    pieces holding only comments or blanks are not statements."""
    try:
        toks = tokenize(text)
    except QueryError as exc:  # a character no statement can hold: name its line
        m = _POSITION.search(exc.message)
        where = origin if m is None else "{}:{}:{}".format(origin, *_line_col(text, int(m.group(1))))
        raise ConfigError(f"{where}: {_POSITION.sub('', exc.message).strip()}", hint=exc.hint) from None
    out: list[Located] = []
    first: int | None = None
    for t in toks:
        if t.text == ";":
            if first is not None:
                out.append(Located(len(out) + 1, _line_col(text, first)[0], text[first:t.pos].strip(), first))
            first = None
        elif first is None:
            first = t.pos
    if first is not None:
        out.append(Located(len(out) + 1, _line_col(text, first)[0], text[first:].strip(), first))
    return out


def read_statements(source: str | os.PathLike[str]) -> tuple[str, str]:
    """(text, origin) of ``source``: a path (a ``PathLike``, or a one-word string ending in
    ``.sql``) is read; any other string is the statements themselves."""
    if isinstance(source, os.PathLike) or (source.strip().lower().endswith(".sql") and len(source.split()) == 1):
        path = Path(source).expanduser() if isinstance(source, os.PathLike) else Path(source.strip()).expanduser()
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the statements file {path}: {exc}",
                              hint="give the path of a UTF-8 text file of ksqlDB statements") from None
    return source, "<text>"


@dataclass
class Plan:
    """A file's statements, compiled: its declarations and its persistent queries, in order."""

    origin: str
    statements: list[Located]
    declared: list[tuple[Located, Source]] = field(default_factory=list)
    queries: list[tuple[Located, Query]] = field(default_factory=list)


_DEPLOYABLE = ("a file to deploy holds SET, CREATE STREAM|TABLE ... WITH (...), CREATE STREAM|TABLE ... AS "
               "SELECT and INSERT INTO ... SELECT statements")


def _one(st: Located, cat: Catalog, plan_: Plan) -> None:
    from streamml.query.ksql_admin import parse_admin
    from streamml.query.ksql_run import set_property

    if st.text.split(None, 1)[0].upper() == "SET":
        set_property(st.text, cat)
        return
    admin = parse_admin(st.text)
    if admin is not None:
        raise QueryError(f"{type(admin).__name__.upper()} is a session statement, not one to deploy",
                         hint=f"{_DEPLOYABLE}; run it with streamml sql or streamml.sql()")
    if source_of(st.text) is not None or st.text.split(None, 1)[0].upper() == "SELECT":
        raise QueryError("a SELECT writes nothing: there is nothing to deploy",
                         hint="make it a persistent query: CREATE STREAM|TABLE name AS SELECT ...; "
                              "a DuckDB SELECT ... EMIT CHANGES deploys alone: streamml sql STATEMENT --deploy --to T")
    if not is_ksql(st.text):
        raise QueryError("not a ksqlDB statement", hint=_DEPLOYABLE)
    parsed = parse_ksql(st.text)
    done = cat.execute(st.text)
    if isinstance(parsed, CreateSource):
        src = done[0]
        assert isinstance(src, Source)
        plan_.declared.append((st, src))
        return
    q = done[0]
    assert isinstance(q, Query)
    for other_st, other in plan_.queries:
        if other.name == q.name:
            raise QueryError(f"{q.name} is created twice (statement {other_st.number} creates it too)",
                             hint="give each query its own name")
    plan_.queries.append((st, q))


def _locate(text: str, offset: int) -> Callable[[re.Match[str]], str]:
    """A replacement of the parser's "at position N" (in a statement at ``offset``) by the file's line and column."""
    def sub(m: re.Match[str]) -> str:
        return "at line {}, column {}".format(*_line_col(text, offset + int(m.group(1))))
    return sub


def plan(text: str, cat: Catalog, origin: str = "<text>") -> Plan:
    """Run the statements of ``text`` into a fork of ``cat``; on success ``cat`` takes them over.

    A statement that fails raises a :class:`~streamml.errors.ConfigError` naming ``origin``, its
    line, its number and its first line (and the line and column of the error when the parser
    knows them), with the hint of the underlying error; ``cat`` is then unchanged.

    >>> c = Catalog()
    >>> p = plan("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE) WITH (kafka_topic='payments');\\n"
    ...          "CREATE TABLE n AS SELECT card, COUNT(*) AS n FROM pay GROUP BY card EMIT CHANGES;", c)
    >>> [(st.number, q.name, q.sink) for st, q in p.queries], sorted(c.sources)
    ([(2, 'N', 'N')], ['PAY'])
    >>> plan("CREATE TABLE m AS\\n SELECT card, COUNT(*) FROM nope GROUP BY card EMIT CHANGES;", c, "f.sql")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamml.errors.ConfigError: f.sql:1: statement 1 (CREATE TABLE m AS): NOPE is not a declared stream ...
    """
    statements = split_located(text, origin)
    if not statements:
        raise ConfigError(f"{origin} holds no statement", hint="separate statements with ';'")
    fork = cat.fork()
    out = Plan(origin, statements)
    for st in statements:
        try:
            _one(st, fork, out)
        except QueryError as exc:
            message = _POSITION.sub(_locate(text, st.offset), exc.message)
            raise ConfigError(f"{st.where(origin)}: {message}", hint=exc.hint) from None
    cat.adopt(fork)
    return out


def check(text: str, origin: str = "<text>") -> Plan:
    """:func:`plan` into an empty catalog that takes topic names as written: every statement is
    parsed and compiled without a broker (what the command line does before it connects)."""
    return plan(text, Catalog(), origin)


def deploy_file(source: str | os.PathLike[str], *, settings: Settings | None = None, start: bool = True,
                **options: Any) -> list[Any]:
    """Deploy every persistent query of a file (or text) of ksqlDB statements; returns the
    :class:`~streamml.query.deploy.Deployment` of each, in the file's order.

    ``source`` is a path (a ``Path``, or a string such as ``"features.sql"``) or the statements
    themselves. The whole file is parsed and compiled first (:func:`plan`): a statement that
    fails raises a :class:`~streamml.errors.ConfigError` naming its number and line, and nothing
    runs. Declarations enter the session's catalog, so ``streamml.sql`` pull queries and
    ``SHOW QUERIES`` see the deployed tables. ``options`` are the stream runner's
    (``max_batch=...``); with ``start=False`` nothing runs until each ``.start()`` (start them
    in order: a chained query's input topic is created by the query before it).

    >>> import streamml.query as q
    >>> text = '''
    ... CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT)
    ...   WITH (kafka_topic='payments', value_format='JSON', timestamp='ts');
    ... CREATE TABLE per_card AS SELECT card, COUNT(*) AS n, SUM(amount) AS total FROM pay
    ...   WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS) GROUP BY card EMIT FINAL;
    ... '''
    >>> deployments = q.deploy_file(text)  # doctest: +SKIP
    >>> [(d.query_id, d.sink) for d in deployments]  # doctest: +SKIP
    [('CTAS_PER_CARD_1', 'PER_CARD')]
    >>> for d in deployments: d.stop()  # doctest: +SKIP
    """
    from streamml.query.deploy import Deployment
    from streamml.query.ksql_run import catalog
    from streamml.query.resolve import default_settings

    s = settings or default_settings()
    text, origin = read_statements(source)
    p = plan(text, catalog(s), origin)
    if not p.queries:
        raise ConfigError(f"{origin} has no persistent query to deploy",
                          hint="add a CREATE STREAM|TABLE ... AS SELECT or an INSERT INTO ... SELECT")
    deployments = [Deployment(q, settings=s, **options) for _, q in p.queries]
    if start:
        try:
            for d in deployments:
                d.start()
        except BaseException:
            for d in deployments:
                if d.running:
                    d.stop()
            raise
    return deployments
