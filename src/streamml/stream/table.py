"""Tables: a compacted topic materialised as a lookup table (like a GlobalKTable).

Every worker reads the whole topic (all partitions) before it processes anything, then
keeps up with it between batches. The latest value per key wins; a tombstone (``None``
value) deletes the key. The record key becomes the column named ``key``.

>>> t = Table("cards", key="card")
>>> t.load({"c1": {"limit": 500}, "c2": {"limit": 900}})
>>> t.snapshot().sort("card").to_dicts()
[{'limit': 500, 'card': 'c1'}, {'limit': 900, 'card': 'c2'}]
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import orjson
import polars as pl
from confluent_kafka import TopicPartition

from streamml.config import Settings
from streamml.errors import KafkaError, PipelineError
from streamml.kafka import clients
from streamml.kafka.names import resolve_topic
from streamml.kafka.read import pin, read_ranges
from streamml.schema.batch import decode_json

__all__ = ["Table"]


class Table:
    """A lookup table kept in sync with the compacted topic ``name``.

    ``name`` resolves like a pipeline source (``"cards"`` -> ``<ns>.raw.cards``; see
    :func:`streamml.kafka.names.resolve_topic`). ``key`` names the column that holds the record key.
    """

    def __init__(self, name: str, *, key: str = "key") -> None:
        self.name = name
        self.key = key
        self._data: dict[bytes, bytes] = {}
        self._frame: pl.DataFrame | None = None
        self._consumer: Any = None

    def describe(self) -> str:
        return f"table {self.name} (key={self.key})"

    def topic(self, settings: Settings | None) -> str:
        """The topic read (resolved like a pipeline source; without settings, without namespace)."""
        return resolve_topic(self.name, settings.namespace if settings is not None else None, kind="raw")

    # -- in-memory use (tests, replay) ------------------------------------------------
    def load(self, rows: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Set rows directly: ``{key: value-dict or None}`` (no broker)."""
        for k, v in rows.items():
            self._put(k.encode(), None if v is None else orjson.dumps(v))

    def _put(self, k: bytes | None, v: bytes | None) -> None:
        if k is None:
            return
        if v is None:
            self._data.pop(k, None)
        else:
            self._data[k] = v
        self._frame = None

    # -- live use -----------------------------------------------------------------------
    def start(self, settings: Settings, timeout: float = 120.0) -> None:
        """Read the topic to its end (blocking), then keep the consumer for :meth:`refresh`."""
        topic = self.topic(settings)
        ranges = pin(settings, topic, error=PipelineError)
        try:
            for msgs in read_ranges(settings, ranges, timeout=timeout, idle_timeout=timeout,
                                    context=f"loading table {topic}"):
                for m in msgs:
                    self._put(m.key(), m.value())
        except KafkaError as exc:
            if exc.code == "_TIMED_OUT":
                raise PipelineError(f"table {topic} did not load within {timeout}s", hint=exc.hint) from None
            raise
        c = clients.consumer(settings, f"streamml-table-{time.time_ns()}")
        c.assign([TopicPartition(r.topic, r.partition, r.end) for r in ranges])
        self._consumer = c

    def refresh(self) -> int:
        """Apply what arrived on the topic since the last call (non-blocking)."""
        if self._consumer is None:
            return 0
        n = 0
        while True:
            msgs = self._consumer.consume(10_000, timeout=0)
            if not msgs:
                return n
            for m in msgs:
                if m.error() is None:
                    self._put(m.key(), m.value())
                    n += 1

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def snapshot(self) -> pl.DataFrame:
        """The table as a DataFrame (one row per live key)."""
        if self._frame is None:
            keys = list(self._data)
            df = decode_json(list(self._data.values())) if keys else pl.DataFrame()
            keycol = pl.Series(self.key, [k.decode() for k in keys], dtype=pl.String)
            if self.key in df.columns:
                df = df.drop(self.key)
            self._frame = df.with_columns(keycol) if df.width else pl.DataFrame([keycol])
        return self._frame
