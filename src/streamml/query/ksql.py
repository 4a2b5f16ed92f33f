"""The ksqlDB dialect: statements parsed into small typed objects, with ksqlDB's errors.

A hand-written recursive-descent parser over a tokenizer: neither DuckDB's parser nor
Polars' SQL knows ksqlDB's DDL (``CREATE STREAM ... WITH (...)``, ``KEY``/``PRIMARY KEY``
columns) or its ``WINDOW``/``EMIT`` clauses, and no ksqlDB grammar library is installed. Only
the statement structure is parsed here; scalar expressions stay token lists that
:mod:`streamml.query.ksql_compile` turns into Polars expressions (``pl.sql_expr``).
Unquoted identifiers are upper-cased as ksqlDB does; backquoted ones keep their case.

>>> st = parse_ksql("CREATE STREAM pay (card VARCHAR KEY, amount DOUBLE, ts BIGINT) "
...                 "WITH (kafka_topic='payments', value_format='JSON', timestamp='ts');")
>>> st.kind, st.name, [(c.name, c.type, c.key) for c in st.columns], st.props["TIMESTAMP"]
('STREAM', 'PAY', [('CARD', 'VARCHAR', True), ('AMOUNT', 'DOUBLE', False), ('TS', 'BIGINT', False)], 'ts')
>>> q = parse_ksql("CREATE TABLE per_card AS SELECT card, COUNT(*) AS n FROM pay "
...                "WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 10 SECONDS) GROUP BY card EMIT FINAL")
>>> q.select.window, q.select.emit, q.select.group_by
(Window(kind='TUMBLING', size=60000, advance=60000, grace=10000), 'FINAL', ['CARD'])
>>> parse_ksql("CREATE TABLE s AS SELECT k, COUNT(*) FROM a WINDOW SESSION (5 MINUTES, GRACE PERIOD 1 MINUTE) "
...            "GROUP BY k EMIT CHANGES").select.window
Window(kind='SESSION', size=300000, advance=300000, grace=60000)
>>> parse_ksql("CREATE TABLE s AS SELECT k, COUNT(*) FROM a WINDOW SESSION (SIZE 5 MINUTES) GROUP BY k EMIT FINAL")
... # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.QueryError: a SESSION window takes its inactivity gap without SIZE, at position 60 ... (hint: ...)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from streamml.errors import QueryError

__all__ = ["Token", "Column", "Window", "Item", "Join", "Select", "CreateSource", "CreateAs", "InsertInto",
           "parse_ksql", "split_statements", "tokenize", "is_ksql", "DEFAULT_GRACE_MS"]

#: ksqlDB's grace period when a window names none (Kafka Streams' old default: 24 hours).
DEFAULT_GRACE_MS = 24 * 3_600_000
_UNITS = {"MILLISECOND": 1, "SECOND": 1000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
_TOKEN = re.compile(r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<str>'(?:[^']|'')*')
  | (?P<qid>`(?:[^`]|``)*`|"(?:[^"]|"")*")
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<id>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op><=|>=|<>|!=|\|\||->|[-+*/%=<>(),.;:\[\]])
""", re.VERBOSE)
_KSQL_START = re.compile(r"^\s*(CREATE|INSERT|DROP|SHOW|LIST|DESCRIBE|TERMINATE|PRINT|EXPLAIN|SET|UNSET)\b", re.I)
_KSQL_CLAUSE = re.compile(r"\bWINDOW\s+(TUMBLING|HOPPING|SESSION)\b|\bEMIT\s+FINAL\b", re.I)


@dataclass(frozen=True)
class Token:
    """One lexical token: ``kind`` is str, qid (quoted identifier), num, id or op."""

    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "id" else self.text

    @property
    def ident(self) -> str:
        """The identifier it names (unquoted: upper-cased; quoted: as written)."""
        if self.kind == "qid":
            q = self.text[0]
            return self.text[1:-1].replace(q + q, q)
        return self.text.upper()


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` (whitespace and ``--`` comments dropped)."""
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise QueryError(f"unexpected character {text[pos]!r} at position {pos}",
                             hint="check the quoting: strings use 'single quotes', names `backquotes`")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos))
        pos = m.end()
    return out


def split_statements(text: str) -> list[str]:
    """``text`` cut at top-level semicolons (not inside strings), empty pieces dropped.

    >>> split_statements("CREATE STREAM a (x INT) WITH (kafka_topic='a;b'); SELECT 1;")
    ["CREATE STREAM a (x INT) WITH (kafka_topic='a;b')", 'SELECT 1']
    """
    parts, start = [], 0
    for t in tokenize(text):
        if t.text == ";":
            parts.append(text[start:t.pos])
            start = t.pos + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def is_ksql(text: str) -> bool:
    """Whether ``text`` is a ksqlDB statement (DDL, or a SELECT with a WINDOW clause / EMIT FINAL).

    >>> is_ksql("SELECT a FROM t EMIT CHANGES"), is_ksql("create table x as select 1 from y emit changes")
    (False, True)
    """
    return bool(_KSQL_START.match(text) or _KSQL_CLAUSE.search(text))


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    key: bool = False


@dataclass(frozen=True)
class Window:
    """A WINDOW clause: ``size`` is a SESSION window's inactivity gap; ``grace`` in ms."""

    kind: str
    size: int
    advance: int
    grace: int


@dataclass(frozen=True)
class Item:
    """A select item: its expression tokens (``*`` alone for all columns) and output name."""

    tokens: tuple[Token, ...]
    alias: str | None


@dataclass(frozen=True)
class Join:
    how: str             # "inner", "left" or "full"
    source: str
    alias: str
    left: tuple[Token, ...]
    right: tuple[Token, ...]
    within: tuple[int, int] | None = None  # a stream-stream join's (BEFORE, AFTER) in ms
    grace: int | None = None               # its GRACE PERIOD (None: not given)


@dataclass(frozen=True)
class Select:
    items: tuple[Item, ...]
    source: str
    alias: str
    join: Join | None
    window: Window | None
    where: tuple[Token, ...] | None
    group_by: list[str]
    having: tuple[Token, ...] | None
    emit: str            # "CHANGES" or "FINAL"
    partition_by: tuple[Token, ...] | None = None  # PARTITION BY: the new key of a stream


@dataclass(frozen=True)
class CreateSource:
    """``CREATE STREAM|TABLE name (columns) WITH (props)``: a topic declared as a source."""

    kind: str
    name: str
    columns: list[Column]
    props: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateAs:
    """``CREATE STREAM|TABLE name [WITH (props)] AS SELECT ...``: a persistent query."""

    kind: str
    name: str
    props: dict[str, str]
    select: Select
    text: str


@dataclass(frozen=True)
class InsertInto:
    """``INSERT INTO stream SELECT ... FROM ...``: a persistent query writing into an existing stream."""

    target: str
    props: dict[str, str]
    select: Select
    text: str


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # -- cursor ---------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> Token | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def at(self, *words: str) -> bool:
        for j, w in enumerate(words):
            t = self.peek(j)
            if t is None or t.upper != w:
                return False
        return True

    def accept(self, *words: str) -> bool:
        if self.at(*words):
            self.i += len(words)
            return True
        return False

    def error(self, message: str, hint: str | None = None, tok: Token | None = None) -> QueryError:
        t = tok or self.peek()
        where = f", at position {t.pos} near {t.text!r}" if t is not None else ", at the end of the statement"
        return QueryError(message + where, hint=hint)

    def expect(self, *words: str, hint: str | None = None) -> None:
        if not self.accept(*words):
            raise self.error(f"expected {' '.join(words)}", hint=hint)

    def name(self, what: str) -> str:
        t = self.peek()
        if t is None or t.kind not in ("id", "qid"):
            raise self.error(f"expected {what}")
        self.i += 1
        return t.ident

    def until(self, stops: set[str], *, allow_end: bool = True) -> tuple[Token, ...]:
        """Tokens up to (not including) a top-level stop word."""
        start, depth = self.i, 0
        while (t := self.peek()) is not None:
            if t.text == "(":
                depth += 1
            elif t.text == ")":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and (t.upper in stops or t.text in stops) and t.kind in ("id", "op"):
                break
            self.i += 1
        if self.i == start:
            raise self.error("expected an expression")
        if not allow_end and self.peek() is None:
            raise self.error("unexpected end of statement")
        return tuple(self.toks[start:self.i])

    def done(self) -> None:
        self.accept(";")
        if self.peek() is not None:
            raise self.error("unexpected text after the statement")

    # -- statements -----------------------------------------------------------------------
    def insert(self) -> InsertInto:
        self.expect("INTO")
        target = self.name("the stream to insert into")
        if self.at("(") or self.at("VALUES"):
            raise self.error("INSERT INTO ... VALUES is not supported yet",
                             hint="produce the records to the stream's topic, e.g. with streamml ingest")
        props = self.props() if self.at("WITH") else {}
        start = self.peek()
        if start is None or start.upper != "SELECT":
            raise self.error("expected SELECT after INSERT INTO name", hint="INSERT INTO s SELECT ... FROM other")
        body = self.text[start.pos:]
        toks = tokenize(body)
        depth, has_emit = 0, False
        for t in toks:
            depth += t.text == "("
            depth -= t.text == ")"
            has_emit = has_emit or (depth == 0 and t.kind == "id" and t.upper == "EMIT")
        if not has_emit:  # ksqlDB's INSERT INTO needs no EMIT clause: it is always EMIT CHANGES
            body = body.rstrip().rstrip(";") + " EMIT CHANGES"
        sub = _Parser(body)
        sel = sub.select("STREAM")
        sub.done()
        return InsertInto(target, props, sel, self.text[start.pos:])

    def statement(self) -> CreateSource | CreateAs | InsertInto:
        first = self.peek()
        if self.accept("INSERT"):
            return self.insert()
        if not self.accept("CREATE"):
            word = first.upper if first is not None else ""
            hint = ("follow a topic with streamml.tail('topic')" if word == "PRINT" else
                    "supported: CREATE STREAM|TABLE, INSERT INTO ... SELECT, SELECT (pull and push queries), "
                    "SHOW STREAMS|TABLES|QUERIES, DESCRIBE, DROP STREAM|TABLE, TERMINATE, SET")
            raise self.error(f"{word or 'this'} statements are not supported yet", hint=hint)
        self.accept("OR", "REPLACE")
        if self.at("SOURCE") or self.at("TYPE"):
            raise self.error(f"CREATE {self.peek().upper} is not supported",  # type: ignore[union-attr]
                             hint="declare sources with CREATE STREAM|TABLE name (...) WITH (...)")
        kind_tok = self.peek()
        if not (self.accept("STREAM") or self.accept("TABLE")):
            raise self.error("expected STREAM or TABLE after CREATE")
        kind = kind_tok.upper  # type: ignore[union-attr]
        self.accept("IF", "NOT", "EXISTS")
        name = self.name(f"the {kind.lower()}'s name")
        if self.at("("):
            cols = self.columns(kind)
            props = self.props() if self.at("WITH") else {}
            if self.at("AS"):
                raise self.error("CREATE ... AS SELECT takes no column list", hint="the columns come from the SELECT")
            self.done()
            return CreateSource(kind, name, cols, props)
        props = self.props() if self.at("WITH") else {}
        if props and not self.at("AS"):  # no columns: the value columns come from the registered schema (AVRO)
            self.done()
            return CreateSource(kind, name, [], props)
        self.expect("AS", hint=f"write CREATE {kind} {name} (columns) WITH (...) or CREATE {kind} {name} AS SELECT ...")
        start = self.peek()
        sel = self.select(kind)
        self.done()
        return CreateAs(kind, name, props, sel, self.text[start.pos:] if start else "")

    def columns(self, kind: str) -> list[Column]:
        self.expect("(")
        cols: list[Column] = []
        while True:
            name = self.name("a column name")
            type_toks = self.until({",", "KEY", "PRIMARY", ")"}, allow_end=False)
            ctype = " ".join(t.upper for t in type_toks)
            key = False
            if self.accept("PRIMARY", "KEY"):
                if kind == "STREAM":
                    raise self.error("a stream has KEY columns, not PRIMARY KEY", hint=f"write {name} {ctype} KEY")
                key = True
            elif self.at("KEY"):
                if kind == "TABLE":
                    raise self.error("a table's key column is declared PRIMARY KEY",
                                     hint=f"write {name} {ctype} PRIMARY KEY")
                self.i += 1
                key = True
            cols.append(Column(name, ctype, key))
            if self.accept(")"):
                break
            self.expect(",")
        if len({c.name for c in cols}) != len(cols):
            raise self.error("a column is declared twice")
        if kind == "TABLE" and not any(c.key for c in cols):
            raise self.error("a table needs a PRIMARY KEY column", hint="e.g. (id VARCHAR PRIMARY KEY, ...)")
        return cols

    def props(self) -> dict[str, str]:
        self.expect("WITH")
        self.expect("(")
        out: dict[str, str] = {}
        while True:
            key = self.name("a property name")
            self.expect("=")
            t = self.peek()
            if t is None or t.kind not in ("str", "num", "id"):
                raise self.error(f"expected a value for {key}")
            self.i += 1
            out[key] = t.text[1:-1].replace("''", "'") if t.kind == "str" else t.text
            if self.accept(")"):
                return out
            self.expect(",")

    def duration(self) -> int:
        t = self.peek()
        if t is None or t.kind != "num" or "." in t.text:
            raise self.error("expected a duration such as 30 SECONDS")
        self.i += 1
        u = self.peek()
        unit = (u.upper if u is not None else "").rstrip("S")
        if unit not in _UNITS:
            raise self.error("expected a time unit", hint="MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS")
        self.i += 1
        return int(t.text) * _UNITS[unit]

    def window(self) -> Window:
        t = self.peek()
        kind = t.upper if t is not None else ""
        if kind not in ("TUMBLING", "HOPPING", "SESSION"):
            raise self.error("expected TUMBLING, HOPPING or SESSION after WINDOW")
        self.i += 1
        self.expect("(")
        size = advance = grace = retention = None
        closed = False
        if kind == "SESSION":  # SESSION (gap [, GRACE PERIOD ...] [, RETENTION ...])
            if self.at("SIZE"):
                raise self.error("a SESSION window takes its inactivity gap without SIZE",
                                 hint="e.g. WINDOW SESSION (5 MINUTES, GRACE PERIOD 1 MINUTE)")
            size = self.duration()
            closed = self.accept(")")
            if not closed:
                self.expect(",", hint="e.g. WINDOW SESSION (5 MINUTES, GRACE PERIOD 1 MINUTE)")
        while not closed:
            if kind != "SESSION" and self.accept("SIZE"):
                size = self.duration()
            elif kind != "SESSION" and self.accept("ADVANCE", "BY"):
                advance = self.duration()
            elif self.accept("GRACE", "PERIOD"):
                grace = self.duration()
            elif self.accept("RETENTION"):
                retention = self.duration()
            elif kind == "SESSION":
                raise self.error("expected GRACE PERIOD or RETENTION after a SESSION window's gap",
                                 hint="WINDOW SESSION (5 MINUTES, GRACE PERIOD 1 MINUTE, RETENTION 1 DAY)")
            else:
                raise self.error("expected SIZE, ADVANCE BY, GRACE PERIOD or RETENTION")
            closed = self.accept(")")
            if not closed:
                self.expect(",")
        if size is None or size <= 0:
            raise self.error(f"a {kind} window needs SIZE", hint="e.g. WINDOW TUMBLING (SIZE 1 MINUTE)")
        if kind == "TUMBLING" and advance is not None:
            raise self.error("a TUMBLING window has no ADVANCE BY", hint="use WINDOW HOPPING for overlapping windows")
        if kind == "HOPPING":
            if advance is None:
                raise self.error("a HOPPING window needs ADVANCE BY",
                                 hint="e.g. (SIZE 1 MINUTE, ADVANCE BY 10 SECONDS)")
            if advance <= 0 or advance > size or size % advance:
                raise self.error(f"ADVANCE BY ({advance} ms) must divide SIZE ({size} ms)",
                                 hint="choose a size that is a multiple of the advance")
        g = DEFAULT_GRACE_MS if grace is None else grace
        what = "the session gap" if kind == "SESSION" else "SIZE"
        if retention is not None and retention < size + g:
            raise self.error(f"RETENTION ({retention} ms) must be at least {what} + GRACE PERIOD ({size + g} ms)")
        return Window(kind, size, advance or size, g)

    def select(self, kind: str) -> Select:
        self.expect("SELECT", hint="CREATE ... AS is followed by a SELECT")
        items: list[Item] = []
        while True:
            toks = self.until({",", "FROM", "AS"})
            alias = self.name("an alias") if self.accept("AS") else None
            items.append(Item(toks, alias))
            if self.accept(","):
                continue
            break
        self.expect("FROM")
        source = self.name("a stream or table name")
        alias = self.alias(source)
        join = None
        t = self.peek()
        if self.at("RIGHT") or self.at("CROSS"):
            raise self.error(f"{t.upper} joins are not supported",  # type: ignore[union-attr]
                             hint="use [INNER] JOIN, LEFT [OUTER] JOIN or FULL [OUTER] JOIN")
        how = "left" if self.accept("LEFT") else "full" if self.accept("FULL") else "inner"
        self.accept("OUTER") if how != "inner" else self.accept("INNER")
        if self.accept("JOIN"):
            other = self.name("the joined table")
            oalias = self.alias(other)
            within = grace = None
            if self.accept("WITHIN"):  # WITHIN n unit | WITHIN (BEFORE n unit, AFTER m unit) [GRACE PERIOD g]
                if self.accept("("):
                    self.expect("BEFORE", hint="WITHIN (BEFORE 1 HOUR, AFTER 2 HOURS)")
                    before = self.duration()
                    self.expect(",")
                    self.expect("AFTER", hint="WITHIN (BEFORE 1 HOUR, AFTER 2 HOURS)")
                    within = (before, self.duration())
                    self.expect(")")
                else:
                    n = self.duration()
                    within = (n, n)
                if self.accept("GRACE", "PERIOD"):
                    grace = self.duration()
            self.expect("ON")
            left = self.until({"="})
            self.expect("=", hint="a join condition is ON a.col = b.col")
            right = self.until({"WINDOW", "WHERE", "GROUP", "HAVING", "PARTITION", "EMIT", "JOIN", "LEFT",
                                "INNER", "FULL", "AND"})
            if self.at("AND"):
                raise self.error("a join condition is one equality", hint="ON a.col = b.col")
            join = Join(how, other, oalias, left, right, within, grace)
            if self.at("JOIN") or self.at("LEFT") or self.at("INNER") or self.at("FULL"):
                raise self.error("only one join per statement is supported yet",
                                 hint="chain statements: join the first result in a second statement")
        elif how != "inner":
            raise self.error(f"expected JOIN after {how.upper()}")
        window = None
        if self.accept("WINDOW"):
            window = self.window()
        where = self.until({"GROUP", "HAVING", "PARTITION", "EMIT", "WINDOW"}) if self.accept("WHERE") else None
        if self.at("WINDOW"):
            raise self.error("the WINDOW clause comes before WHERE", hint="FROM s WINDOW ... WHERE ... GROUP BY ...")
        group_by: list[str] = []
        if self.accept("GROUP", "BY"):
            while True:
                t = self.peek()
                expr = self.until({",", "HAVING", "PARTITION", "EMIT"})
                if len(expr) == 3 and expr[1].text == "." and expr[2].kind in ("id", "qid"):
                    expr = expr[2:]
                if len(expr) != 1 or expr[0].kind not in ("id", "qid"):
                    raise self.error("GROUP BY takes column names here", tok=t,
                                     hint="compute the expression in a first statement, then GROUP BY its column")
                group_by.append(expr[0].ident)
                if not self.accept(","):
                    break
        having = None
        if self.accept("HAVING"):
            having = self.until({"PARTITION", "EMIT"})
        partition_by = None
        pb = self.peek()
        if self.accept("PARTITION", "BY"):
            if group_by or kind == "TABLE":
                raise self.error("PARTITION BY re-keys a stream: it does not go with GROUP BY", tok=pb,
                                 hint="GROUP BY already keys the table by its columns; drop PARTITION BY")
            partition_by = self.until({"EMIT", ","})
            if self.at(","):
                raise self.error("PARTITION BY more than one expression needs key_format JSON, not supported yet",
                                 hint="PARTITION BY one column or expression")
        if not self.accept("EMIT"):
            raise self.error("a persistent query ends with EMIT CHANGES or EMIT FINAL")
        t = self.peek()
        if not (self.accept("CHANGES") or self.accept("FINAL")):
            raise self.error("expected CHANGES or FINAL after EMIT")
        emit = t.upper  # type: ignore[union-attr]
        if self.at("LIMIT"):
            raise self.error("LIMIT is not allowed in a persistent query", hint="drop it")
        if emit == "FINAL" and window is None:
            raise self.error("EMIT FINAL is only supported for windowed aggregations", tok=t,
                             hint="add a WINDOW clause, or use EMIT CHANGES")
        if kind == "TABLE" and not group_by and join is None:
            raise self.error("CREATE TABLE AS SELECT needs GROUP BY (or a join of tables)", tok=t,
                             hint="aggregate with GROUP BY, or use CREATE STREAM ... AS SELECT")
        if kind == "STREAM" and group_by:
            raise self.error("an aggregation is a table", tok=t, hint="write CREATE TABLE ... AS SELECT ... GROUP BY")
        return Select(tuple(items), source, alias, join, window, where, group_by, having, emit, partition_by)

    def alias(self, source: str) -> str:
        self.accept("AS")
        t = self.peek()
        stop = {"JOIN", "LEFT", "INNER", "FULL", "RIGHT", "CROSS", "OUTER", "WINDOW", "WHERE", "GROUP", "HAVING",
                "PARTITION", "EMIT", "ON", "WITHIN"}
        if t is not None and t.kind in ("id", "qid") and t.upper not in stop:
            self.i += 1
            return t.ident
        return source


def parse_ksql(text: str) -> CreateSource | CreateAs | InsertInto:
    """Parse one ksqlDB statement; raise :class:`QueryError` (what, where, what to write) if not."""
    if not text.strip():
        raise QueryError("empty statement")
    return _Parser(text).statement()
