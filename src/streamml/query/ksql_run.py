"""ksqlDB statements from Python: the session's catalog, previews, and the deployed pipeline.

``streamml.sql("CREATE STREAM ...")`` declares a source in the session's catalog;
``streamml.sql("CREATE TABLE x AS SELECT ...")`` previews the query over what its topic holds
now (the compiled pipeline replayed by the stream engine, so windows, grace and late records
behave exactly as deployed) and returns the rows it would write; ``deploy(...)`` of the same
statement runs that pipeline on the runtime, writing to the ksqlDB-default topic.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.kafka.admin import list_topics
from streamml.query.ksql import CreateSource, parse_ksql, split_statements
from streamml.query.ksql_compile import Catalog, Query, Source, decode_record
from streamml.query.resolve import pick

__all__ = ["catalog", "run_ksql", "compile_query", "preview"]

_catalogs: dict[tuple[str, str], Catalog] = {}


def catalog(settings: Settings) -> Catalog:
    """The catalog of sources declared in this process for ``settings``' cluster and namespace."""
    key = (str(settings.bootstrap_servers), settings.namespace)
    if key not in _catalogs:
        def resolve(topic: str) -> str:
            existing = list_topics(settings)
            if topic in existing:
                return topic
            try:
                return pick(topic, settings.namespace, existing)
            except QueryError:
                raise QueryError(f"topic {topic!r} does not exist",
                                 hint="create it (or ingest into it) before declaring a stream over it") from None
        _catalogs[key] = Catalog(resolve)
    return _catalogs[key]


def compile_query(text: str, settings: Settings) -> Query:
    """The one persistent query of ``text`` (declarations before it are run first)."""
    return catalog(settings).compile(text)


def preview(q: Query, settings: Settings) -> pl.DataFrame:
    """The rows ``q`` writes for what its input topic holds now (the pipeline replayed)."""
    from streamml.stream import replay

    out = replay(q.pipeline, settings, keys=True)
    if out.height == 0:
        return pl.DataFrame()
    recs = list(zip(out["_key"].to_list(), [None if dead else 1 for dead in out["_tombstone"].to_list()]))
    values = out.drop(["_key", "_tombstone"])
    rows: list[dict[str, Any]] = []
    for (k, alive), v in zip(recs, values.iter_rows(named=True)):
        row = decode_record(q, k, None)
        if alive:
            row.pop("_tombstone")
            row.update(v)
            row["_tombstone"] = False
        rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def run_ksql(text: str, settings: Settings) -> pl.DataFrame | Source | Query:
    """Run ksqlDB statements: declarations register; the last ``CREATE ... AS`` is previewed."""
    pieces = split_statements(text)
    result: Any = None
    for piece in pieces:
        st = parse_ksql(piece)
        if isinstance(st, CreateSource):
            result = catalog(settings).execute(piece)[0]
        else:
            result = preview(catalog(settings).compile(piece), settings)
    if result is None:
        raise QueryError("no statement to run")
    return result  # type: ignore[no-any-return]
