"""Ingest files (CSV, Parquet, JSONL: a file, a glob or a folder) into ``<ns>.raw.<stream>``.

Exactly once, resumable: the files are read in chunks, and each chunk is written in one
Kafka transaction together with the checkpoint (where the next chunk starts, stored as the
committed offset metadata of a consumer group named after the stream and the source). A
crash anywhere leaves either the whole chunk and its checkpoint or neither; a re-run with
the same arguments continues after the last committed chunk, so read_committed readers
never see a record twice. Event ids are deterministic: ``<file hash>-<line>`` (JSONL, CSV;
1-based physical line) or ``<file hash>-<row>`` (Parquet; 0-based row).

>>> detect_format("data/day1.csv"), detect_format("x.ndjson"), detect_format("t.parquet")
('csv', 'jsonl', 'parquet')
"""

from __future__ import annotations

import glob as _glob
import hashlib
import time
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson
import pyarrow.parquet as pq
from confluent_kafka import KafkaException, TopicPartition

from streamml import headers as H
from streamml.config import Settings
from streamml.errors import ConfigError, KafkaError
from streamml.ingest.decode import Decoded, RecordSpec, decode_csv, decode_jsonl, decode_table
from streamml.ingest.writer import IngestCounts, RecordWriter
from streamml.kafka.clients import consumer as make_consumer
from streamml.kafka.errors import classify, retry_unavailable
from streamml.kafka.produce import send_all
from streamml.kafka.transactions import TransactionalSession
from streamml.schema.codec import codec_for, schema_headers
from streamml.schema.core import Schema
from streamml.schema.registry import SchemaRegistry

__all__ = ["ingest_files", "FileIngestReport", "check_source", "discover", "detect_format", "FORMATS_BY_SUFFIX"]

FORMATS_BY_SUFFIX = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
                     ".parquet": "parquet", ".pq": "parquet"}
COMPONENT = "ingest.file"
_CHECKPOINT_VERSION = 1


@dataclass
class FileIngestReport:
    """What one run of :func:`ingest_files` did; ``total`` adds up every run of the same source."""

    stream: str
    topic: str
    files: list[str]
    counts: IngestCounts
    total: IngestCounts
    resumed: bool
    seconds: float
    dlq_topic: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "topic": self.topic, "files": self.files, "resumed": self.resumed,
                "seconds": round(self.seconds, 3), **self.counts.as_dict(), "total": self.total.as_dict()}


def detect_format(path: str | Path) -> str:
    """The file format by suffix (csv, jsonl, parquet)."""
    fmt = FORMATS_BY_SUFFIX.get(Path(path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"cannot tell the format of {path}", hint="pass --format csv|jsonl|parquet")
    return fmt


def discover(source: str | Path) -> list[Path]:
    """The files of a file, a folder (recursively, known suffixes) or a glob, sorted."""
    text = str(source)
    p = Path(text).expanduser()
    if p.is_file():
        return [p.resolve()]
    if p.is_dir():
        found = sorted(f.resolve() for f in p.rglob("*") if f.is_file() and f.suffix.lower() in FORMATS_BY_SUFFIX)
        if not found:
            raise ConfigError(f"folder {p} holds no CSV, JSONL or Parquet files")
        return found
    if any(ch in text for ch in "*?["):
        found = sorted(Path(f).resolve() for f in _glob.glob(str(p), recursive=True) if Path(f).is_file())
        if not found:
            raise ConfigError(f"no file matches {text}")
        return found
    raise ConfigError(f"{text} does not exist", hint="give a file, a folder or a glob such as 'data/*.csv'")


def _digest(text: str, n: int = 12) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


# -- reading files in chunks --------------------------------------------------------------
@dataclass
class _Pos:
    offset: int = 0        # byte offset (text formats) or row (parquet) where the next chunk starts
    line: int = 1          # 1-based line number at ``offset`` (text formats)


def _text_chunks(path: Path, fmt: str, pos: _Pos, spec: RecordSpec, chunk_bytes: Callable[[], int],
                 delimiter: str) -> Iterator[tuple[Decoded, _Pos, int]]:
    with path.open("rb") as fh:
        columns: list[str] = []
        if fmt == "csv":
            header = fh.readline()
            columns = [c.strip() for c in header.decode("utf-8", "replace").rstrip("\r\n").split(delimiter)]
            if not header or not any(columns):
                return
            if pos.offset == 0:
                pos = _Pos(len(header), 2)
        fh.seek(pos.offset)
        rest = b""
        while True:
            data = fh.read(chunk_bytes())
            buf = rest + data
            if not buf:
                return
            if data:
                cut = buf.rfind(b"\n") + 1
                if cut == 0:
                    rest = buf
                    continue
                chunk, rest = buf[:cut], buf[cut:]
                while fmt == "csv" and chunk.count(b'"') % 2 and rest:      # keep quoted newlines whole
                    more = rest.find(b"\n") + 1 or len(rest)
                    chunk, rest = chunk + rest[:more], rest[more:]
            else:
                chunk, rest = buf, b""
            decoded = (decode_csv(chunk, pos.line, columns, spec, delimiter) if fmt == "csv"
                       else decode_jsonl(chunk, pos.line, spec))
            pos = _Pos(pos.offset + len(chunk), pos.line + chunk.count(b"\n"))
            yield decoded, pos, len(chunk)


def _parquet_chunks(path: Path, pos: _Pos, spec: RecordSpec, rows: int) -> Iterator[tuple[Decoded, _Pos, int]]:
    pf = pq.ParquetFile(path)
    size, total_rows = path.stat().st_size, max(1, pf.metadata.num_rows)
    seen = 0
    for batch in pf.iter_batches(batch_size=rows):
        start = seen
        seen += batch.num_rows
        if seen <= pos.offset:
            continue
        import pyarrow as pa

        table = pa.Table.from_batches([batch])
        if start < pos.offset:
            table = table.slice(pos.offset - start)
            start = pos.offset
        yield decode_table(table, start, spec), _Pos(seen, 0), size * table.num_rows // total_rows


def _prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``items`` in a background thread, ``depth`` items ahead.

    Reading and decoding (Arrow and Polars release the GIL) of the next chunks overlap with
    producing the current one.
    """
    import queue
    import threading

    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer of the items
            q.put(("error", exc))

    thread = threading.Thread(target=work, name="streamml-ingest-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(5)


# -- the checkpoint -----------------------------------------------------------------------
class _Checkpoint:
    """The committed position of one file source, kept as offset metadata of its own group."""

    def __init__(self, settings: Settings, topic: str, group: str) -> None:
        self.topic = topic
        self.group = group
        self.consumer = make_consumer(settings, group)

    def load(self) -> dict[str, Any] | None:
        # the group coordinator may be moving (a broker starting or restarting)
        tps = retry_unavailable(lambda left: self.consumer.committed([TopicPartition(self.topic, 0)],
                                                                     timeout=max(1.0, left)),
                                "cannot read the ingest checkpoint: ", timeout=30, pause=0.5)
        meta = tps[0].metadata if tps and tps[0].offset >= 0 else None
        if not meta:
            return None
        try:
            data = orjson.loads(meta)
        except orjson.JSONDecodeError:
            return None
        return data if data.get("v") == _CHECKPOINT_VERSION else None

    def offsets(self, state: dict[str, Any]) -> list[TopicPartition]:
        return [TopicPartition(self.topic, 0, int(state.get("seq", 0)), metadata=orjson.dumps(state).decode())]

    def close(self) -> None:
        self.consumer.close()


# -- the run ------------------------------------------------------------------------------
def check_source(source: str | Path, format: str | None = None,
                 rate: float | None = None) -> tuple[list[Path], list[str]]:
    """The files of ``source`` and the format of each, checked before anything connects:
    a missing source, an unknown ``format``, a file whose format cannot be told, a rate <= 0.

    >>> check_source("nowhere/*.csv")
    Traceback (most recent call last):
    ...
    streamml.errors.ConfigError: no file matches nowhere/*.csv
    """
    files = discover(source)
    if format is not None and format not in ("csv", "jsonl", "parquet"):
        raise ConfigError(f"--format {format!r} is not one of csv, jsonl, parquet", hint="e.g. --format csv")
    fmts = [format or detect_format(f) for f in files]
    if rate is not None and rate <= 0:
        raise ConfigError("--rate must be positive")
    return files, fmts


def ingest_files(settings: Settings, source: str | Path, stream: str, *, schema: Schema | None = None,
                 format: str | None = None, key: str | None = None, time_column: str | None = None,
                 rate: float | None = None, wire_format: str = "json", restart: bool = False,
                 lineage_headers: bool = True, chunk_bytes: int = 4 << 20, partitions: int = 3,
                 progress: bool | Any = False, on_chunk: Callable[[IngestCounts], None] | None = None,
                 commit_interval: float = 1.0) -> FileIngestReport:
    """Ingest a file, a folder or a glob of CSV/JSONL/Parquet files into ``<ns>.raw.<stream>``.

    Parameters
    ----------
    schema
        Validate every record; invalid ones go to ``<ns>.dlq`` with the reason. The schema is
        registered for the stream (an incompatible change to an earlier version is refused).
    key, time_column
        Columns giving the Kafka key and the event time (ms, ISO-8601 or a timestamp type).
    rate
        At most this many records per second.
    commit_interval
        Seconds a transaction (records plus checkpoint) stays open; a crash redoes at most this much.
    restart
        Ignore the checkpoint of an earlier run and start from the first file.
    lineage_headers
        Write the lineage headers (event id, event time, component, schema) on every record
        (the default). Without them the event id becomes the key when no key column is given.
    progress
        Show a progress bar (True) or use a given ``rich.progress.Progress``.

    Returns the counts of this run and of all runs of this source; ``records_in ==
    accepted + dead_lettered`` holds for both.
    """
    t0 = time.monotonic()
    files, fmts = check_source(source, format, rate)
    if schema is not None:
        schema = SchemaRegistry.for_settings(settings).register(stream, schema)
    codec = codec_for(wire_format, schema)
    spec = RecordSpec(schema, key, time_column, None if wire_format == "json" else codec)

    sid = _digest(f"{stream}|{Path(str(source)).expanduser().absolute()}")
    ident = f"{settings.namespace}.ingest.file.{stream}.{sid}"
    writer = RecordWriter(settings, stream, COMPONENT, partitions=partitions, transactional_id=ident)
    producer = writer.producer
    try:
        producer.init_transactions(60)
    except KafkaException as exc:
        raise classify(exc, "cannot start the ingest transaction: ") from None
    ckpt = _Checkpoint(settings, writer.topic, ident)
    state = None if restart else ckpt.load()
    resumed = state is not None
    if state is None or state.get("names") != _digest("|".join(map(str, files[: state.get("done", 0)])), 16):
        if state is not None:
            raise ConfigError("the files of this source changed since its last checkpoint",
                              hint="pass --restart to ingest everything again (this duplicates records)")
        state = {"v": _CHECKPOINT_VERSION, "done": 0, "names": _digest("", 16), "file": None, "off": 0,
                 "line": 1, "seq": 0, "c": [0, 0, 0]}
    total = IngestCounts(*state["c"])
    counts = IngestCounts()


    const: list[tuple[str, bytes]] = H.lineage(component=COMPONENT)
    if schema is not None or wire_format != "json":
        const += schema_headers(schema, wire_format)
    chunk_size = [(min(chunk_bytes, 64 << 10) if rate >= 1000 else 1) if rate else chunk_bytes]

    bar, task, own_bar = _progress(progress, files, state)
    pacer = _Pacer(rate)
    txn = _Txn(writer, ckpt, commit_interval)
    pending = IngestCounts()
    try:
        for index in range(state["done"], len(files)):
            path, fmt = files[index], fmts[index]
            fkey = _digest(str(path)).encode() + b"-"
            pos = _Pos(state["off"], state["line"]) if state.get("file") == _digest(str(path)) else _Pos()
            chunks = (_parquet_chunks(path, pos, spec, max(1, min(65536, int(rate or 65536))))
                      if fmt == "parquet"
                      else _text_chunks(path, fmt, pos, spec, lambda: chunk_size[0],
                                        "\t" if path.suffix.lower() == ".tsv" else ","))
            for decoded, nxt, nbytes in _prefetch(chunks):
                n = len(decoded)
                _mark_oversized(writer, decoded, const, lineage_headers)
                chunk_counts = IngestCounts(records_in=n, accepted=int(decoded.ok.sum()))
                chunk_counts.dead_lettered = n - chunk_counts.accepted
                for reason in decoded.reasons.values():
                    chunk_counts.reasons[reason] += 1
                txn.begin()
                _produce_chunk(writer, decoded, fkey, str(path), const, lineage_headers, pacer)
                pending.add(chunk_counts)
                tc = IngestCounts(*state["c"])
                tc.add(chunk_counts)
                state = {**state, "file": _digest(str(path)), "off": nxt.offset, "line": nxt.line,
                         "seq": state["seq"] + 1, "c": [tc.records_in, tc.accepted, tc.dead_lettered]}
                if rate and n:
                    avg = max(1, nbytes // n)
                    chunk_size[0] = int(min(chunk_bytes, max(avg + 1, avg * rate * commit_interval)))
                if txn.due():
                    txn.commit(state)
                    counts.add(pending)
                    pending = IngestCounts()
                if bar is not None:
                    bar.update(task, advance=nbytes, accepted=counts.accepted + pending.accepted,
                               dlq=counts.dead_lettered + pending.dead_lettered)
                if on_chunk is not None:
                    on_chunk(counts)
            if bar is not None:
                bar.update(task, completed=sum(f.stat().st_size for f in files[: index + 1]))
            state = {**state, "done": index + 1, "file": None, "off": 0, "line": 1,
                     "names": _digest("|".join(map(str, files[: index + 1])), 16), "seq": state["seq"] + 1}
        txn.begin()
        txn.commit(state)
        counts.add(pending)
        total = IngestCounts(*state["c"])
    except BaseException:
        txn.abort()
        raise
    finally:
        if own_bar and bar is not None:
            bar.stop()
        ckpt.close()
    return FileIngestReport(stream, writer.topic, [str(f) for f in files], counts, total, resumed,
                            time.monotonic() - t0, writer.dlq_topic, dict(counts.reasons))


class _Pacer:
    """Keep to ``rate`` records per second over the whole run (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0
        self.step = max(1, int(rate // 20)) if rate else 0

    def tick(self) -> None:
        self.done += 1
        if self.rate and self.done % self.step == 0:
            ahead = self.start + self.done / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


class _Txn:
    """The open transaction: records of one or more chunks, committed with their checkpoint.

    A transaction stays open across chunks for ``interval`` seconds, so the producer is not
    drained after every chunk. Begin, commit and abort are the shared
    :class:`~streamml.kafka.transactions.TransactionalSession`'s (its retries of retriable
    errors, its bounded ``send_offsets_to_transaction``). A failed commit aborts: nothing of
    the transaction is visible, and a re-run continues from the last committed checkpoint.
    """

    def __init__(self, writer: RecordWriter, ckpt: _Checkpoint, interval: float) -> None:
        self.session = TransactionalSession(writer.producer, ckpt.consumer, init=False)
        self.ckpt = ckpt
        self.interval = interval
        self.opened: float | None = None

    def begin(self) -> None:
        if self.opened is None:
            try:
                self.session.begin()
            except KafkaError as exc:
                raise exc.__class__(f"cannot begin the ingest transaction: {exc.message}", code=exc.code,
                                    hint=exc.hint) from None
            self.opened = time.monotonic()

    def due(self) -> bool:
        return self.opened is not None and time.monotonic() - self.opened >= self.interval

    def commit(self, state: dict[str, Any]) -> None:
        try:
            self.session.commit(self.ckpt.offsets(state))
        except KafkaError as exc:
            self.abort()
            raise exc.__class__(f"ingest transaction failed: {exc.message}", code=exc.code,
                                hint="run the same command again: it continues after the last committed chunk") \
                from None
        self.opened = None

    def abort(self) -> None:
        if self.opened is not None:
            self.opened = None
            try:
                self.session.abort()
            except KafkaError:  # fenced: the transaction is aborted by whoever fenced it
                pass


def _mark_oversized(writer: RecordWriter, d: Decoded, const: list[tuple[str, bytes]], lineage: bool) -> None:
    """Turn records too large for the topic into dead letters before anything is produced."""
    room = writer.max_bytes - 256 - (sum(len(k) + len(v) + 4 for k, v in const) if lineage else 0)
    if max(map(len, d.values), default=0) + 64 <= room:
        return
    for i, value in enumerate(d.values):
        key = d.keys[i] if d.keys is not None else None
        if d.ok[i] and len(value) + (len(key) if key else 64) > room:
            d.ok[i] = False
            d.reasons[i] = writer.too_large_reason(value, key, const if lineage else None)


def _produce_chunk(writer: RecordWriter, d: Decoded, fkey: bytes, path: str, const: list[tuple[str, bytes]],
                   lineage: bool, pacer: _Pacer) -> None:
    """Produce a chunk's records (the hot loop: no per-record work beyond what the record needs)."""
    values, positions = d.values, d.positions
    n = len(values)
    ok = d.ok.tolist()
    bad = [i for i, good in enumerate(ok) if not good]
    for i in bad:
        writer.dead_letter(d.originals[i], f"{path}:{positions[i]}", d.reasons.get(i, "invalid record"),
                           event_id=(fkey + b"%d" % positions[i]).decode())
    keys = d.keys
    if keys is None and not lineage:
        keys = [fkey + b"%d" % p for p in positions]            # the event id is the key
    elif keys is None:
        keys = [None] * n
    times = d.times
    producer, topic = writer.producer, writer.topic
    if not bad and not pacer.rate and not lineage:            # the common case, as tight as the raw client
        send_all(producer, topic, zip(keys, values, repeat(None)))
        producer.poll(0)
        return
    if not bad and not pacer.rate and times is None:
        id_header = H.EVENT_ID
        send_all(producer, topic, ((key, value, [(id_header, fkey + b"%d" % pos), *const])
                                   for value, key, pos in zip(values, keys, positions)))
        producer.poll(0)
        return
    tick = pacer.tick if pacer.rate else None
    event_id, event_time = H.EVENT_ID, H.EVENT_TIME

    def records() -> Iterator[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]]:
        for i in range(n) if not bad else (i for i in range(n) if ok[i]):
            if tick is not None:
                tick()
            headers: list[tuple[str, bytes]] | None
            if lineage:
                if times is None:
                    headers = [(event_id, fkey + b"%d" % positions[i]), *const]
                else:
                    t = times[i]
                    assert t is not None, "an accepted record has its event time"
                    headers = [(event_id, fkey + b"%d" % positions[i]), (event_time, b"%d" % t), *const]
            else:
                headers = None
            yield keys[i], values[i], headers

    send_all(producer, topic, records())
    producer.poll(0)


def _progress(progress: bool | Any, files: list[Path], state: dict[str, Any]) -> tuple[Any, Any, bool]:
    if not progress:
        return None, None, False
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    own = progress is True
    bar: Any = (Progress(TextColumn("[bold]ingest[/bold]"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                         TextColumn("accepted {task.fields[accepted]:,}  dead-lettered {task.fields[dlq]:,}"),
                         TimeRemainingColumn(), transient=False) if own else progress)
    total = sum(f.stat().st_size for f in files)
    done = sum(f.stat().st_size for f in files[: state["done"]]) + int(state.get("off") or 0)
    task = bar.add_task("ingest", total=total, completed=min(done, total), accepted=0, dlq=0)
    if own:
        bar.start()
    return bar, task, own
