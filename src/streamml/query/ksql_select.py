"""ksqlDB's transient queries, parsed: pull queries (``SELECT ... FROM t WHERE k = ...``) and
push queries (``SELECT ... FROM s ... EMIT CHANGES|FINAL [LIMIT n]``).

A *pull* query has no EMIT clause: it asks a materialised table for its current rows and ends.
A *push* query ends with ``EMIT CHANGES`` (or, for a windowed aggregation, ``EMIT FINAL``;
optionally ``LIMIT n``): it follows the stream and emits rows as records arrive (as windows
close), writing nothing to Kafka. Both are statements that do not start
with CREATE; :func:`source_of` finds the name they select FROM, so that the session can tell a
ksqlDB transient query (a declared stream or table) from DuckDB SQL over topics.

>>> q = parse_transient("SELECT * FROM per_card WHERE card = 'c1' AND WINDOWSTART >= 60000;")
>>> type(q).__name__, q.source, q.limit, [t.text for t in q.where or ()][:3]
('PullQuery', 'PER_CARD', None, ['card', '=', "'c1'"])
>>> p = parse_transient("SELECT card, amount FROM pay WHERE amount > 10 EMIT CHANGES LIMIT 3")
>>> type(p).__name__, p.select.source, p.limit
('PushQuery', 'PAY', 3)
>>> source_of("select x from `Pay` p where x > 1"), source_of("SHOW TABLES")
('Pay', None)
>>> parse_transient("SELECT card, COUNT(*) FROM per_card GROUP BY card")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.QueryError: pull queries do not support GROUP BY, at position ... (hint: ...)
"""

from __future__ import annotations

from dataclasses import dataclass

from streamml.errors import QueryError
from streamml.query.ksql import Item, Select, Token, _Parser, tokenize

__all__ = ["PullQuery", "PushQuery", "parse_transient", "source_of", "is_push"]


@dataclass(frozen=True)
class PullQuery:
    """``SELECT items FROM table [WHERE ...] [LIMIT n]``: the table's current rows."""

    items: tuple[Item, ...]
    source: str
    where: tuple[Token, ...] | None
    limit: int | None
    text: str


@dataclass(frozen=True)
class PushQuery:
    """``SELECT ... EMIT CHANGES|FINAL [LIMIT n]``: a transient query over a stream (or a table's changes)."""

    select: Select
    limit: int | None
    text: str


def _top_level(toks: list[Token], word: str) -> int | None:
    depth = 0
    for i, t in enumerate(toks):
        depth += t.text == "("
        depth -= t.text == ")"
        if depth == 0 and t.kind == "id" and t.upper == word:
            return i
    return None


def source_of(text: str) -> str | None:
    """The name a ``SELECT`` reads FROM (as ksqlDB names it), or None for other statements."""
    try:
        toks = tokenize(text)
    except QueryError:
        return None
    if not toks or toks[0].upper != "SELECT":
        return None
    i = _top_level(toks, "FROM")
    if i is None or i + 1 >= len(toks) or toks[i + 1].kind not in ("id", "qid"):
        return None
    return toks[i + 1].ident


def is_push(text: str) -> bool:
    """Whether a SELECT has a top-level ``EMIT`` clause (a push query)."""
    return _top_level(tokenize(text), "EMIT") is not None


class _TransientParser(_Parser):
    def limit(self) -> int | None:
        if not self.accept("LIMIT"):
            return None
        t = self.peek()
        if t is None or t.kind != "num" or "." in t.text or int(t.text) <= 0:
            raise self.error("LIMIT takes a positive whole number")
        self.i += 1
        return int(t.text)

    def pull(self) -> PullQuery:
        self.expect("SELECT")
        items: list[Item] = []
        while True:
            toks = self.until({",", "FROM", "AS"})
            alias = self.name("an alias") if self.accept("AS") else None
            items.append(Item(toks, alias))
            if not self.accept(","):
                break
        self.expect("FROM")
        source = self.name("a table name")
        self.alias(source)
        for words, what in ((("JOIN",), "JOIN"), (("LEFT",), "JOIN"), (("INNER",), "JOIN"), (("WINDOW",), "WINDOW"),
                            (("GROUP", "BY"), "GROUP BY"), (("HAVING",), "HAVING"),
                            (("PARTITION", "BY"), "PARTITION BY")):
            if self.at(*words):
                raise self.error(f"pull queries do not support {what}",
                                 hint="aggregate or join in a CREATE TABLE ... AS SELECT, then pull from that "
                                      "table; or add EMIT CHANGES for a push query")
        where = self.until({"LIMIT", ";"}) if self.accept("WHERE") else None
        limit = self.limit()
        self.done()
        return PullQuery(tuple(items), source, where, limit, self.text)


def parse_transient(text: str) -> PullQuery | PushQuery:
    """Parse a pull query (no EMIT) or a push query (``EMIT CHANGES|FINAL [LIMIT n]``)."""
    toks = tokenize(text)
    if not toks or toks[0].upper != "SELECT":
        raise QueryError("expected a SELECT")
    emit = _top_level(toks, "EMIT")
    if emit is None:
        return _TransientParser(text).pull()
    # the persistent-query parser reads everything up to EMIT CHANGES; LIMIT is ours
    cut = emit + 2
    end = toks[cut].pos if cut < len(toks) else len(text)
    tail = _TransientParser(text[end:])
    limit = tail.limit()
    tail.done()
    body = text[:end]
    kind = "TABLE" if _top_level(toks[:emit], "GROUP") is not None else "STREAM"
    sel = _Parser(body).select(kind)
    return PushQuery(sel, limit, text)
