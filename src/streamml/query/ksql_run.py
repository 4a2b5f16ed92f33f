"""ksqlDB statements from Python: the session's catalog, previews, and the deployed pipeline.

``streamml.sql("CREATE STREAM ...")`` declares a source in the session's catalog;
``streamml.sql("CREATE TABLE x AS SELECT ...")`` previews the query over what its topic holds
now (the compiled pipeline replayed by the stream engine, so windows, grace and late records
behave exactly as deployed) and returns the rows it would write; ``deploy(...)`` of the same
statement runs that pipeline on the runtime, writing to the ksqlDB-default topic.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.kafka.admin import list_topics
from streamml.query.ksql import CreateSource, parse_ksql, split_statements, tokenize
from streamml.query.ksql_admin import parse_admin, run_admin
from streamml.query.ksql_compile import Catalog, Query, decode_record
from streamml.query.ksql_pull import pull
from streamml.query.ksql_push import push
from streamml.query.ksql_repartition import preview_frames
from streamml.query.ksql_select import PullQuery, parse_transient, source_of
from streamml.query.resolve import pick

__all__ = ["catalog", "run_ksql", "compile_query", "preview", "is_transient"]

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
        _catalogs[key] = Catalog(resolve, registry=settings.schema_registry_url,
                                 partitions=lambda topic: list_topics(settings).get(topic, 1),
                                 namespace=settings.namespace)
    cat = _catalogs[key]
    if settings.schema_registry_url:  # a registry configured after the session began
        cat.registry = settings.schema_registry_url
    return cat


def compile_query(text: str, settings: Settings) -> Query:
    """The one persistent query of ``text`` (declarations before it are run first)."""
    return catalog(settings).compile(text)


def preview(q: Query, settings: Settings) -> pl.DataFrame:
    """The rows ``q`` writes for what its input topic holds now (the pipeline replayed)."""
    from streamml.stream import replay

    if q.repartition is not None:  # GROUP BY a non-key column: both stages, re-keyed in memory
        frames = preview_frames(q, settings)
        out = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    else:
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


_SET = re.compile(r"^\s*SET\b", re.I)


def set_property(text: str, cat: Catalog) -> pl.DataFrame:
    """``SET 'auto.offset.reset' = 'earliest'|'latest'``: where this session's push queries start.

    >>> c = Catalog()
    >>> set_property("SET 'auto.offset.reset' = 'earliest'", c).to_dicts(), c.properties
    ([{'property': 'auto.offset.reset', 'value': 'earliest'}], {'AUTO.OFFSET.RESET': 'earliest'})
    """
    toks = tokenize(text)
    if len(toks) != 4 or toks[1].kind != "str" or toks[2].text != "=" or toks[3].kind != "str":
        raise QueryError("expected SET 'property' = 'value'", hint="e.g. SET 'auto.offset.reset' = 'earliest'")
    name, value = toks[1].text[1:-1], toks[3].text[1:-1]
    if name.lower() != "auto.offset.reset":
        raise QueryError(f"property {name!r} is not supported", hint="supported: SET 'auto.offset.reset' = ...")
    if value.lower() not in ("earliest", "latest"):
        raise QueryError(f"auto.offset.reset is 'earliest' or 'latest', not {value!r}",
                         hint="SET 'auto.offset.reset' = 'earliest' (from the beginning) or 'latest' (new records)")
    cat.properties[name.upper()] = value.lower()
    return pl.DataFrame({"property": [name], "value": [value.lower()]})


def is_transient(text: str, settings: Settings) -> bool:
    """Whether ``text`` is a SELECT over a stream or table this session declared (a pull or push query)."""
    name = source_of(text)
    cat = catalog(settings)
    return name is not None and (name in cat.sources or name in cat.queries)


def run_ksql(text: str, settings: Settings) -> Any:
    """Run ksqlDB statements: declarations register; the last ``CREATE ... AS`` is previewed;
    a pull query answers a DataFrame, a push query a live :class:`~streamml.query.tail.Tail`."""
    pieces = split_statements(text)
    result: Any = None
    for piece in pieces:
        if _SET.match(piece):
            result = set_property(piece, catalog(settings))
            continue
        admin = parse_admin(piece)
        if admin is not None:
            result = run_admin(admin, catalog(settings), settings)
            continue
        if source_of(piece) is not None:
            tq = parse_transient(piece)
            cat = catalog(settings)
            result = pull(tq, cat, settings) if isinstance(tq, PullQuery) else push(tq, cat, settings)
            continue
        st = parse_ksql(piece)
        if isinstance(st, CreateSource):
            result = catalog(settings).execute(piece)[0]
        else:
            result = preview(catalog(settings).compile(piece), settings)
    if result is None:
        raise QueryError("no statement to run")
    return result
