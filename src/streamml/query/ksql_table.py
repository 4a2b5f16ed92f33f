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

__all__ = ["SqlTable", "Source", "dtype"]

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
