"""``tail("predictions")``: live records as they arrive, as a generator.

The start offsets are pinned when the tail is created (``from_="end"``: each partition's
last stable offset at that moment), so every record committed after ``tail(...)`` returns is
delivered, in offset order within each partition. Records are consumed and decoded a batch
at a time; ``where`` (a Polars expression or a SQL ``WHERE`` clause) filters each batch.

It stops on ``close()``, at the end of a ``with`` block, after ``max_records`` records, after
``timeout`` seconds in all, or after ``idle_timeout`` seconds without a matching record::

    with streamml.tail("predictions", where="score > 0.9", max_records=10) as live:
        for rec in live:
            print(rec["card_id"], rec["score"], rec["_offset"])
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Callable, Iterator

import polars as pl
from confluent_kafka import Message, TopicPartition

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.kafka import clients
from streamml.kafka.read import messages
from streamml.query.reader import Bound, frame, spans
from streamml.query.resolve import default_settings, resolve_topic

__all__ = ["Tail", "tail", "compile_where"]


def compile_where(where: pl.Expr | str | None) -> pl.Expr | None:
    """A filter as a Polars expression (a string is a SQL ``WHERE`` clause).

    >>> df = pl.DataFrame({"a": [1, 5, 9]})
    >>> df.filter(compile_where("a > 3 AND a < 9"))["a"].to_list()
    [5]
    """
    if where is None or isinstance(where, pl.Expr):
        return where
    try:
        return pl.sql_expr(where)
    except Exception as exc:
        raise QueryError(f"cannot parse the filter {where!r}: {str(exc).splitlines()[0]}",
                         hint="use a SQL WHERE clause such as \"amount > 100 AND country = 'FR'\"") from None


class Tail:
    """A live, filtered view of a topic; iterate it for records (dicts) or ``batches()`` for frames."""

    def __init__(self, name: str, *, settings: Settings | None = None, where: pl.Expr | str | None = None,
                 from_: Bound | str = "end", max_records: int | None = None, timeout: float | None = None,
                 idle_timeout: float | None = None, batch_size: int = 1000,
                 transform: Callable[[pl.DataFrame], pl.DataFrame] | None = None, resolve: bool = True,
                 decode: Callable[[list[Message]], pl.DataFrame] | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.settings = settings or default_settings()
        self.topic = resolve_topic(name, self.settings) if resolve else name
        self.where = compile_where(where)
        self.max_records = max_records
        self.timeout = timeout
        self.idle_timeout = idle_timeout
        self.batch_size = batch_size
        self.transform = transform
        self.decode = decode or frame
        self.on_close = on_close
        self.delivered = 0
        self._stop = threading.Event()
        self._busy = False
        self.start_offsets = self._pin(from_)
        self._consumer = clients.consumer(self.settings, f"streamml-tail-{uuid.uuid4().hex[:12]}",
                                          fetch_wait_max_ms=20)
        self._consumer.assign([TopicPartition(self.topic, p, o) for p, o in sorted(self.start_offsets.items())])
        self._closed = False

    def _pin(self, from_: Bound | str) -> dict[int, int]:
        if from_ in ("end", "latest", "now"):
            return {s.partition: s.end for s in spans(self.settings, self.topic)}
        if from_ in ("beginning", "earliest", "start"):
            return {s.partition: s.start for s in spans(self.settings, self.topic)}
        return {s.partition: s.start for s in spans(self.settings, self.topic, start=from_)}

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Tail {self.topic} {state}, {self.delivered} delivered>"

    # -- iteration ------------------------------------------------------------------------
    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield each consumed batch, decoded and filtered (empty batches are skipped)."""
        if self._closed:
            raise QueryError("this tail is closed", hint="create a new one with streamml.tail(...)")
        self._busy = True
        started = last = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if self.timeout is not None and now - started >= self.timeout:
                    return
                if self.idle_timeout is not None and now - last >= self.idle_timeout:
                    return
                good = messages(self._consumer.consume(self.batch_size, timeout=0.2),
                                f"while tailing {self.topic}: ")
                if not good:
                    continue
                df = self._apply(self.decode(good))
                if self.max_records is not None:
                    df = df.head(self.max_records - self.delivered)
                if df.height:
                    last = time.monotonic()
                    self.delivered += df.height
                    yield df
                if self.max_records is not None and self.delivered >= self.max_records:
                    return
        finally:
            self._busy = False
            self._shutdown()

    def _apply(self, df: pl.DataFrame) -> pl.DataFrame:
        if self.where is not None:
            try:
                df = df.filter(self.where)
            except pl.exceptions.ColumnNotFoundError as exc:
                raise QueryError(f"the filter names a column the records of {self.topic} do not have: "
                                 f"{str(exc).splitlines()[0]}", hint="columns: " + ", ".join(df.columns)) from None
        if self.transform is not None:
            df = self.transform(df)
        return df

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for df in self.batches():
            yield from df.iter_rows(named=True)

    def frames(self, last: int | None = None) -> Iterator[pl.DataFrame]:
        """Yield the rows delivered so far as one growing frame, after each batch (the ``last`` rows
        only, if given): a refreshing view, e.g. ``for df in t.frames(20): display(df, clear=True)``."""
        seen: pl.DataFrame | None = None
        for df in self.batches():
            seen = df if seen is None else pl.concat([seen, df], how="diagonal_relaxed")
            if last is not None:
                seen = seen.tail(last)
            yield seen

    def collect(self) -> pl.DataFrame:
        """Run until a stop condition and return everything delivered as one frame."""
        if self.max_records is None and self.timeout is None and self.idle_timeout is None:
            raise QueryError("collect() needs max_records, timeout or idle_timeout, or it never returns")
        parts = list(self.batches())
        return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()

    # -- stopping -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop: a running iteration ends at its next poll; the consumer is closed."""
        self._stop.set()
        if not self._busy:
            self._shutdown()

    def _shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()
            if self.on_close is not None:
                self.on_close()

    def __enter__(self) -> "Tail":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._busy:
                self._shutdown()
        except Exception:
            pass


def tail(name: str, where: pl.Expr | str | None = None, *, from_: Bound | str = "end",
         max_records: int | None = None, timeout: float | None = None, idle_timeout: float | None = None,
         settings: Settings | None = None) -> Tail:
    """Follow topic ``name`` live; iterate the result for records (dicts with ``_partition``, ``_offset``...).

    ``from_``: ``"end"`` (records committed from now on), ``"beginning"``, an offset (negative:
    that many before the end, per partition), a time, or partition -> offset.
    """
    return Tail(name, settings=settings, where=where, from_=from_, max_records=max_records, timeout=timeout,
                idle_timeout=idle_timeout)
