"""A declared ksqlDB TABLE as the stream engine's lookup table, with ksqlDB's column names.

The engine's :class:`~streamml.stream.Table` keeps the latest value per record key of the
whole topic; this one reads the declared topic under its exact name and names each column
``ALIAS.COLUMN`` (upper-cased, declared types, missing ones null), so that a joined stream's
columns never clash with the table's and qualified names in the statement resolve directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.query.ksql import Column
from streamml.stream import Table

__all__ = ["SqlTable", "Source", "dtype", "derived_source"]

_TYPES: dict[str, Any] = {"VARCHAR": pl.String, "STRING": pl.String, "BIGINT": pl.Int64, "INT": pl.Int32,
                          "INTEGER": pl.Int32, "DOUBLE": pl.Float64, "BOOLEAN": pl.Boolean}


@dataclass(frozen=True)
class Source:
    """A declared stream or table: its topic, columns and timestamp column."""

    kind: str
    name: str
    topic: str
    columns: tuple[Column, ...]
    timestamp: str | None
    derived: bool = False  # the output of a CREATE STREAM ... AS SELECT of this session
    value_format: str = "JSON"  # JSON, AVRO or DELIMITED
    delimiter: str = ","        # DELIMITED's VALUE_DELIMITER

    @property
    def key(self) -> Column | None:
        return next((c for c in self.columns if c.key), None)


def dtype(ctype: str, where: str) -> Any:
    """The Polars type of a declared column type (``where`` names the column for the error)."""
    base = ctype.split("(")[0].strip()
    if base not in _TYPES:
        raise QueryError(f"column type {ctype} of {where} is not supported yet",
                         hint="use VARCHAR, BIGINT, INT, DOUBLE or BOOLEAN")
    return _TYPES[base]


_KSQL_TYPES: tuple[tuple[Any, str], ...] = (
    (pl.String, "VARCHAR"), (pl.Int64, "BIGINT"), (pl.Int32, "INT"), (pl.Int16, "INT"), (pl.Int8, "INT"),
    (pl.UInt8, "INT"), (pl.UInt16, "INT"), (pl.UInt32, "BIGINT"), (pl.Float64, "DOUBLE"), (pl.Float32, "DOUBLE"),
    (pl.Boolean, "BOOLEAN"))


def derived_source(name: str, topic: str, key: Column | None, schema: dict[str, Any],
                   proj: list[tuple[pl.Expr, str]], timestamp: str | None) -> Source | None:
    """The stream a ``CREATE STREAM name AS SELECT`` writes, as a source later statements read.

    ksqlDB registers the output of a persistent query as a stream; so does the catalog. Column
    types are those of the projection evaluated over ``schema`` (the input's columns); ``None``
    when one has no ksqlDB type here. The input's ``timestamp`` column stays the event time if
    the SELECT carries it unchanged under its name; otherwise the output records carry only the
    time they were written, and the source has no timestamp (windowing over it is refused).

    >>> s = derived_source("E", "E", Column("CARD", "VARCHAR", True),
    ...                    {"CARD": pl.String, "AMOUNT": pl.Float64, "TS": pl.Int64},
    ...                    [((pl.col("AMOUNT") * 2).alias("A2"), "A2"), (pl.col("TS").alias("TS"), "TS")], "TS")
    >>> [(c.name, c.type, c.key) for c in s.columns], s.timestamp, s.derived
    ([('CARD', 'VARCHAR', True), ('A2', 'DOUBLE', False), ('TS', 'BIGINT', False)], 'TS', True)
    >>> derived_source("E", "E", None, {"TS": pl.Int64}, [((pl.col("TS") + 1).alias("TS"), "TS")], "TS").timestamp
    """
    try:
        out = pl.DataFrame(schema=schema).select([e for e, _ in proj]).schema
    except Exception:
        return None
    cols = [key] if key is not None else []
    for _, n in proj:
        if key is not None and n == key.name:
            continue
        ktype = next((k for d, k in _KSQL_TYPES if out.get(n) == d), None)
        if ktype is None:
            return None
        cols.append(Column(n, ktype, False))
    carried = timestamp is not None and any(
        n == timestamp and e.meta.undo_aliases().meta.is_column() and e.meta.root_names() == [timestamp]
        for e, n in proj)
    return Source("STREAM", name, topic, tuple(cols), timestamp if carried else None, derived=True)


class SqlTable(Table):
    """The table ``src`` (a declared TABLE) joined under ``alias``."""

    def __init__(self, src: Source, alias: str) -> None:
        pk = src.key
        assert pk is not None
        super().__init__(src.topic, key=f"{alias}.{pk.name}")
        self.src = src
        self.alias = alias

    def topic(self, settings: Settings | None) -> str:
        return self.src.topic

    def snapshot(self) -> pl.DataFrame:
        df = super().snapshot()
        cols = {c.name: c for c in self.src.columns if not c.key}
        upper: dict[str, str] = {}
        for c in df.columns:
            if c != self.key and c.upper() in cols and c.upper() not in upper.values():
                upper[c] = c.upper()
        out = df.select([pl.col(self.key), *[pl.col(c).alias(f"{self.alias}.{u}") for c, u in upper.items()]])
        return out.with_columns([
            (pl.col(f"{self.alias}.{n}") if f"{self.alias}.{n}" in out.columns else pl.lit(None))
            .cast(dtype(c.type, n), strict=False).alias(f"{self.alias}.{n}") for n, c in cols.items()])
