"""The compiled form of a ksqlDB persistent query and its expressions as Polars SQL (keys: ksql_keys).

Shared by the compiler (:mod:`streamml.query.ksql_compile`) and the modules it delegates to
(:mod:`streamml.query.ksql_rekey`), so that none imports the compiler back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from streamml.errors import QueryError
from streamml.query.ksql import Token
from streamml.query.ksql_table import Source
from streamml.stream import Pipeline

__all__ = ["Query"]

_KEYWORDS = {"AND", "OR", "NOT", "CASE", "WHEN", "THEN", "ELSE", "END", "IS", "NULL", "TRUE", "FALSE", "IN",
             "BETWEEN", "LIKE", "AS", "CAST", "VARCHAR", "STRING", "BIGINT", "INT", "INTEGER", "DOUBLE", "BOOLEAN"}


@dataclass(frozen=True)
class Query:
    """A compiled persistent query: the pipeline, its output topic and key type."""

    name: str
    kind: str
    sink: str
    source: Source
    pipeline: Pipeline
    key_type: str | None
    windowed: bool
    text: str = field(repr=False, default="")
    columns: tuple[str, ...] = ()  # the value columns of its rows, in order
    derived: Source | None = field(repr=False, default=None)  # a STREAM query's output, as a source
    # the re-key stage before ``pipeline`` (GROUP BY a non-key column): it writes the input,
    # keyed by the GROUP BY column, to the internal topic ``pipeline`` reads (ksql_repartition)
    repartition: Pipeline | None = field(repr=False, default=None)

    @property
    def pipelines(self) -> tuple[Pipeline, ...]:
        """The pipelines that run this query, in the order they start (one, or re-key then aggregate)."""
        return (self.pipeline,) if self.repartition is None else (self.repartition, self.pipeline)

    @property
    def window_kind(self) -> str | None:
        """``"tumbling"``, ``"hopping"`` or ``"session"`` for a windowed table, else ``None``."""
        op = self.pipeline.window_op
        return op.spec.kind if self.windowed and op is not None else None




def _expr_text(tokens: tuple[Token, ...], names: dict[str, str], tables: frozenset[str] = frozenset()) -> str:
    """Tokens as Polars SQL: identifiers upper-cased and quoted; a qualifier is dropped, except
    a joined table's alias (in ``tables``): its columns are named ``ALIAS.COLUMN``."""
    parts: list[str] = []
    toks = list(tokens)
    i = 0
    while i < len(toks):
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if t.kind in ("id", "qid") and nxt is not None and nxt.text == "." and i + 2 < len(toks):
            if t.ident in tables:
                col = f"{t.ident}.{toks[i + 2].ident}"
                parts.append('"' + col.replace('"', '""') + '"')
                i += 3
                continue
            i += 2  # the stream's qualifier is dropped
            continue
        plain = t.kind == "qid" or t.upper not in _KEYWORDS
        if t.kind in ("id", "qid") and (nxt is None or nxt.text != "(") and plain:
            name = names.get(t.ident, t.ident)
            parts.append('"' + name.replace('"', '""') + '"')
        else:
            parts.append(t.text)
        i += 1
    return " ".join(parts)


def _sql_expr(text: str, where: str) -> pl.Expr:
    try:
        return pl.sql_expr(text)
    except Exception as exc:
        raise QueryError(f"cannot compile the {where} {text!r}: {str(exc).splitlines()[0]}",
                         hint="use columns, literals, arithmetic, comparisons, CASE and scalar functions") from None


def _columns(tokens: tuple[Token, ...]) -> set[str]:
    out = set()
    for j, t in enumerate(tokens):
        nxt = tokens[j + 1] if j + 1 < len(tokens) else None
        if t.kind in ("id", "qid") and (nxt is None or nxt.text not in ("(", ".")) and \
                (t.kind == "qid" or t.upper not in _KEYWORDS):
            out.add(t.ident)
    return out
