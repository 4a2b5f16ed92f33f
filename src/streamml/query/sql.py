"""SQL over topics: DuckDB runs the statement over bounded snapshots of the topics it names.

Every table name in the statement is a topic name, resolved like :func:`~streamml.query.topic`
does (``payments``, ``raw.payments``, ``"t1.raw.payments"``). Each topic is pinned (its last
stable offsets at call time), read, decoded to Arrow and registered with DuckDB; the statement
then runs unchanged except for the table references, so joins between topics, CTEs,
subqueries, window functions and everything else DuckDB offers work.

A trailing ``EMIT CHANGES`` marks a continuous statement: here it runs over the snapshot (what
the stream holds now); :func:`~streamml.query.deploy` runs the same statement over the stream.
Parsing and running a statement over given tables live in :mod:`streamml.query.statement`
(re-exported here), which :mod:`streamml.query.continuous` shares.

>>> st = parse("SELECT card_id FROM payments EMIT CHANGES")
>>> st.topic_names, st.emit_changes
(['payments'], True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamml.config import Settings
from streamml.query.continuous import check
from streamml.query.ksql import is_ksql
from streamml.query.ksql_run import is_transient, run_ksql
from streamml.query.reader import META_COLUMNS, frame, read_spans, spans
from streamml.query.resolve import default_settings, resolve_topic
from streamml.query.statement import Output, Statement, TableRef, parse, quote, run_statement

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = ["Statement", "TableRef", "parse", "sql", "run_statement", "quote"]


def sql(statement: str, *, settings: Settings | None = None, output: Output = "polars",
        topics: dict[str, str] | None = None) -> "pl.DataFrame | pd.DataFrame | pa.Table":
    """Run a SELECT over bounded snapshots of the topics it names; return the result.

    ``output`` picks ``"polars"`` (default), ``"pandas"`` or ``"arrow"``. ``topics`` maps a
    table name to a topic name when the short-name rules are not enough.

    Each table is a topic's values as columns plus ``_topic``, ``_partition``, ``_offset``,
    ``_timestamp`` and ``_key``. All snapshots are pinned before any is read.

    A statement ending in ``EMIT CHANGES`` must be deployable (see
    :mod:`streamml.query.continuous`) and sees the value columns only: its result here is
    exactly what :func:`~streamml.query.deploy` writes for the same records.

    A ksqlDB statement (``CREATE STREAM ...``, ``CREATE TABLE x AS SELECT ... WINDOW ...``; see
    :mod:`streamml.query.ksql_compile`) declares a source, or previews a persistent query: the
    rows its deployment would write for what the topics hold now.
    """
    s = settings or default_settings()
    if is_ksql(statement) or is_transient(statement, s):  # ksqlDB statements: see streamml.query.ksql_run
        return run_ksql(statement, s)
    stmt = parse(statement)
    if stmt.emit_changes:
        check(stmt)
    pinned = {}
    for name in stmt.topic_names:
        full = (topics or {}).get(name) or resolve_topic(name, s)
        pinned[name] = spans(s, full)
    tables = {name: frame(read_spans(s, sp)) for name, sp in pinned.items()}
    if stmt.emit_changes:  # the preview sees what a pipeline's batches see: the value columns
        tables = {n: df.drop([c for c in META_COLUMNS if c in df.columns]) for n, df in tables.items()}
    return run_statement(stmt, tables, output)
