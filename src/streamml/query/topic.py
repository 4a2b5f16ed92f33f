"""``topic("payments")``: a topic as a table you can look at.

A :class:`Topic` is a description (a resolved topic name and optional bounds); records
are read when a method asks for them, over a snapshot pinned at that moment::

    t = streamml.topic("payments")            # <ns>.raw.payments (see resolve)
    t.head(5)                                 # the first 5 records by time
    t.range(start="2026-01-01T10:00:00Z").to_pandas()
    t.range(start=-100).to_polars()           # the last 100 of each partition
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from streamml.config import Settings
from streamml.extras import require
from streamml.query.reader import META_COLUMNS, Bound, Span, frame, read_spans, spans
from streamml.query.resolve import default_settings, resolve_topic

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["Topic", "topic"]


class Topic:
    """One topic (or a bounded range of it) with the value columns plus ``_topic``, ``_partition``,
    ``_offset``, ``_timestamp``, ``_key``."""

    def __init__(self, name: str, settings: Settings | None = None, *, start: Bound = None, end: Bound = None,
                 resolve: bool = True) -> None:
        self.settings = settings or default_settings()
        self.name = resolve_topic(name, self.settings) if resolve else name
        self.start = start
        self.end = end

    def __repr__(self) -> str:
        bounds = "" if self.start is None and self.end is None else f" [{self.start!r}, {self.end!r})"
        return f"<Topic {self.name}{bounds}>"

    def range(self, start: Bound = None, end: Bound = None) -> "Topic":
        """The records between ``start`` and ``end`` (offsets, times, or partition -> offset).

        An int offset applies to every partition (negative: counted back from the end); a
        ``datetime`` or ISO string selects by record timestamp. ``end`` is exclusive.
        """
        return Topic(self.name, self.settings, start=start, end=end, resolve=False)

    def spans(self) -> list[Span]:
        """Pin the offsets this topic view covers now."""
        return spans(self.settings, self.name, self.start, self.end)

    def partitions(self) -> int:
        """How many partitions the topic has."""
        return len(self.spans())

    def offsets(self) -> dict[int, tuple[int, int]]:
        """partition -> (start, end) offsets of this view, pinned now."""
        return {s.partition: (s.start, s.end) for s in self.spans()}

    def to_polars(self) -> pl.DataFrame:
        """All records of this view as a Polars DataFrame (partition, then offset order)."""
        return frame(read_spans(self.settings, self.spans()))

    def to_arrow(self) -> "pa.Table":
        """All records of this view as an Arrow table."""
        return self.to_polars().to_arrow()

    def to_pandas(self) -> "pd.DataFrame":
        """All records of this view as a pandas DataFrame."""
        require("pandas", "to_pandas()")
        return self.to_polars().to_pandas()

    def head(self, n: int = 10) -> pl.DataFrame:
        """The first ``n`` records of this view by timestamp (ties: partition, offset)."""
        msgs = read_spans(self.settings, self.spans(), limit_per_partition=n)
        return _by_time(frame(msgs)).head(n)

    def last(self, n: int = 10) -> pl.DataFrame:
        """The last ``n`` records of this view by timestamp."""
        pinned = self.spans()
        tail = [Span(s.topic, s.partition, max(s.start, s.end - n), s.end) for s in pinned]
        return _by_time(frame(read_spans(self.settings, tail))).tail(n)

    def columns(self, sample: int = 100) -> dict[str, Any]:
        """Column name -> Polars dtype, inferred from the first ``sample`` records."""
        return dict(self.head(sample).schema)

    @staticmethod
    def meta_columns() -> tuple[str, ...]:
        return META_COLUMNS


def _by_time(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(["_timestamp", "_partition", "_offset"], maintain_order=True)


def topic(name: str, *, settings: Settings | None = None) -> Topic:
    """The topic ``name`` resolves to (exact name, ``kind.name``, or ``<ns>.<kind>.name``).

    ``settings`` default to the session's (``streamml.connect()`` from the environment).
    """
    return Topic(name, settings)
