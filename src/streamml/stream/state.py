"""Local state stores (RocksDB through rocksdict), one per input partition, backed by a changelog.

The changelog topic ``<ns>.changelog.<pipeline>-<store>`` is compacted and has as many
partitions as the input; partition *p* of the changelog holds the state of input partition
*p*. Writes reach the local store only after the batch's transaction committed, together
with the changelog offset they correspond to (one atomic RocksDB write batch). A worker
that is assigned a partition first catches its store up from that offset to the end of the
changelog (from the beginning when the local store is missing), then loads it; only then
does it process records of that partition.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, cast

import polars as pl
from confluent_kafka import TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from streamml.config import Settings
from streamml.errors import KafkaError, PipelineError
from streamml.kafka.message import offset_of, partition_of
from streamml.kafka.read import RangeReader, TopicRange, watermarks
from streamml.stream.engine import state_from_records

__all__ = ["PartitionStore", "StateManager", "store_dir"]

_CHECKPOINT = b"\x00changelog_offset"


def store_dir(settings: Settings, pipeline: str, store: str = "window") -> Path:
    """Where the local stores of ``pipeline`` live (per namespace: two namespaces sharing a
    home directory never share state)."""
    return settings.state_dir / "stream" / settings.namespace / pipeline / store


class PartitionStore:
    """The RocksDB store of one partition: state records plus the changelog checkpoint."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        self.path = path
        self.db = Rdict(str(path), opts)

    @property
    def checkpoint(self) -> int:
        """The next changelog offset this store has not applied (0 for a new store)."""
        raw = self.db.get(_CHECKPOINT)
        return int(raw) if raw is not None else 0

    def apply(self, records: Iterable[tuple[bytes, bytes | None]], next_offset: int | None) -> None:
        """Upsert/delete ``records`` and move the checkpoint, atomically."""
        wb = WriteBatch(raw_mode=True)
        for k, v in records:
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        if next_offset is not None:
            wb.put(_CHECKPOINT, str(next_offset).encode())
        self.db.write(wb)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for k, v in self.db.items():
            if k != _CHECKPOINT and isinstance(k, bytes):
                yield k, v

    def close(self) -> None:
        self.db.close()


class StateManager:
    """Opens, restores, updates and releases the stores of the partitions a worker owns."""

    def __init__(self, settings: Settings, pipeline: str, changelog: str, *, store: str = "window",
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.settings = settings
        self.changelog = changelog
        self.root = store_dir(settings, pipeline, store)
        self.stores: dict[int, PartitionStore] = {}
        self.delivered: dict[int, int] = {}
        self._event = on_event or (lambda kind, info: None)

    def restore(self, partitions: list[int], timeout: float = 300.0
                ) -> list[tuple[int, pl.DataFrame | None, dict[int, int]]]:
        """Open and catch up the stores of ``partitions``; returns their (rows, stream time)."""
        todo: dict[int, tuple[int, int]] = {}
        marks = watermarks(self.settings, [TopicPartition(self.changelog, p) for p in partitions], timeout=30.0)
        for p in partitions:
            st = self.stores.get(p) or PartitionStore(self.root / f"p{p}")
            self.stores[p] = st
            low, high = marks[(self.changelog, p)]
            start = max(st.checkpoint, low)
            if start < high:
                todo[p] = (start, high)
        applied = self._catch_up(todo, timeout)
        out = []
        for p in partitions:
            rows, stream_time = state_from_records(self.stores[p].items(), p)
            out.append((p, rows, stream_time))
            self._event("restored", {"partition": p, "records": applied.get(p, 0),
                                     "rows": 0 if rows is None else rows.height})
        return out

    def _catch_up(self, todo: dict[int, tuple[int, int]], timeout: float) -> dict[int, int]:
        """Apply the changelog's committed records ``[start, end)`` of each partition."""
        if not todo:
            return {}
        ranges = [TopicRange(self.changelog, p, start, end) for p, (start, end) in todo.items()]
        buffers: dict[int, list[tuple[bytes, bytes | None]]] = {p: [] for p in todo}
        last: dict[int, int] = {}
        counts: dict[int, int] = {p: 0 for p in todo}
        try:
            with RangeReader(self.settings, ranges, timeout=timeout, idle_timeout=timeout,
                             context=f"restoring {self.changelog}", group_prefix="restore") as reader:
                while not reader.finished:
                    for run in reader.poll(10_000, timeout=0.5):
                        p = partition_of(run[0])
                        # changelog records always have a key (the state's key)
                        buffers[p].extend([(cast(bytes, m.key()), m.value()) for m in run])
                        last[p] = offset_of(run[-1])
                        counts[p] += len(run)
                    for p, buf in buffers.items():
                        if buf and (reader.done(self.changelog, p) or len(buf) >= 50_000):
                            self.stores[p].apply(buf, last[p] + 1)
                            buffers[p] = []
                # everything below the end is applied (markers and aborted records included)
                for p in todo:
                    self.stores[p].apply(buffers[p], reader.position(self.changelog, p))
        except KafkaError as exc:
            if exc.code == "_TIMED_OUT":
                raise PipelineError(exc.message, hint=exc.hint) from None
            raise
        return counts

    def on_delivery(self, err: Any, msg: Any) -> None:
        """Delivery callback for changelog records: remembers their offsets."""
        if err is None:
            p = msg.partition()
            o = msg.offset()
            if o > self.delivered.get(p, -1):
                self.delivered[p] = o

    def apply(self, changelog: list[tuple[int, bytes, bytes | None]]) -> None:
        """Write a committed batch's changelog records to the local stores."""
        by_part: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for p, k, v in changelog:
            by_part.setdefault(p, []).append((k, v))
        for p, recs in by_part.items():
            store = self.stores.get(p)
            if store is not None:
                off = self.delivered.get(p)
                store.apply(recs, None if off is None else off + 1)

    def release(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            store = self.stores.pop(p, None)
            if store is not None:
                store.close()

    def close(self) -> None:
        self.release(list(self.stores))

    def wipe(self) -> None:
        """Delete the local stores (they are rebuilt from the changelog on the next start)."""
        self.close()
        shutil.rmtree(self.root, ignore_errors=True)
