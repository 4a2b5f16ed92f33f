"""One micro-batch through a pipeline, without Kafka: the part every runner shares.

The live runner, replay and the test driver all feed :class:`Engine` a :class:`RawBatch`
(values, keys, partitions, offsets, timestamps, headers) and get a :class:`StepResult`
back: encoded outputs, dead letters, the state changelog and the *next* state. The engine
never changes its committed state by itself: :meth:`Engine.commit` does, after the runner
has committed the batch's transaction, so an aborted batch leaves no trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, cast

import polars as pl

from streamml import headers as H
from streamml._version import __version__
from streamml.errors import PipelineError, ValidationError
from streamml.schema.batch import bad_rows, decode_json, encode_json
from streamml.stream.pipeline import Pipeline, Window
from streamml.stream.stream_join import StreamJoin
from streamml.stream.windows import KEYCOL, WS, P, WindowState

__all__ = ["RawBatch", "StepResult", "Engine", "STREAM_TIME_KEY", "TOMBSTONE", "TIMESTAMP"]

STREAM_TIME_KEY = b"\x00stream_time"
#: A boolean output column: true rows are written as tombstones (key, no value).
TOMBSTONE = "__tombstone"
#: An integer output column (ms): each row's record timestamp (by default the time it is written).
TIMESTAMP = "__timestamp"
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
_CARRY = (H.EVENT_ID, H.EVENT_TIME, H.INGEST_TIME, H.SOURCE)


@dataclass
class RawBatch:
    """Messages of one poll, column-wise."""

    topic: str
    values: list[bytes | None]
    keys: list[bytes | None]
    partitions: list[int]
    offsets: list[int]
    timestamps: list[int] | None = None
    headers: list[Any] | None = None
    topics: list[str] | None = None  # each message's topic, when the batch mixes topics (stream joins)

    @classmethod
    def from_messages(cls, msgs: Sequence[Any], topic: str, *, timestamps: bool = True,
                      topics: bool = False) -> "RawBatch":
        from confluent_kafka import Message

        hdrs = list(map(Message.headers, msgs))
        # a record always has its partition and offset (the stubs type them optional)
        return cls(topic, list(map(Message.value, msgs)), list(map(Message.key, msgs)),
                   cast("list[int]", list(map(Message.partition, msgs))),
                   cast("list[int]", list(map(Message.offset, msgs))),
                   [m.timestamp()[1] for m in msgs] if timestamps else None,
                   hdrs if any(hdrs) else None,
                   cast("list[str]", list(map(Message.topic, msgs))) if topics else None)

    def subset(self, idx: list[int], topic: str) -> "RawBatch":
        """The messages at ``idx`` (all of ``topic``)."""
        def pick(xs: list[Any] | None) -> list[Any] | None:
            return None if xs is None else [xs[i] for i in idx]

        return RawBatch(topic, [self.values[i] for i in idx], [self.keys[i] for i in idx],
                        [self.partitions[i] for i in idx], [self.offsets[i] for i in idx],
                        pick(self.timestamps), pick(self.headers))

    def next_offsets(self) -> list[Any]:
        """The offsets to commit after this batch (messages of a partition come in order)."""
        from confluent_kafka import TopicPartition

        last = dict(zip(self.partitions, self.offsets))
        return [TopicPartition(self.topic, p, o + 1) for p, o in sorted(last.items())]

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class StepResult:
    """What one batch produced; nothing here is applied until :meth:`Engine.commit`."""

    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    headers: list[list[tuple[str, bytes]]] = field(default_factory=list)
    timestamps: list[int | None] | None = None  # the outputs' record timestamps (None: the write time)
    dlq: list[Record] = field(default_factory=list)
    changelog: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    state: WindowState | None = None
    frame: pl.DataFrame | None = None
    n_in: int = 0
    n_late: int = 0
    n_invalid: int = 0


def _b(x: Any) -> bytes | None:
    if x is None:
        return None
    return x if isinstance(x, bytes) else str(x).encode()


class Engine:
    """Runs a :class:`Pipeline` over raw batches, holding the committed window state."""

    def __init__(self, pipeline: Pipeline, *, keep_frames: bool = False) -> None:

        if pipeline.sink_name is None and not keep_frames:
            raise PipelineError(f"pipeline {pipeline.name} has no sink", hint="end it with .to('name')")
        self.pipeline = pipeline
        self.window: Window | None = pipeline.window_op
        self.state = WindowState()
        self.keep_frames = keep_frames
        self.component = f"stream.{pipeline.name}".encode()
        self._base = [(H.COMPONENT, self.component), (H.VERSION, __version__.encode()),
                      (H.PIPELINE_HASH, pipeline.fingerprint().encode())]
        self._schema = dict(pipeline.schema) if pipeline.schema else None
        self.join: StreamJoin | None = pipeline.join_op
        self.needs_timestamps = (self.window is not None and self.window.time is None) or pipeline.record_time \
            or (self.join is not None and self.join.needs_timestamps)
        self._needs_offsets = (self.window is not None and self.window.spec.kind == "sliding") or \
            self.join is not None

    # -- state ownership ------------------------------------------------------------------
    def assign(self, rows: pl.DataFrame | None, stream_time: dict[int, int]) -> None:
        """Add restored state of newly assigned partitions."""
        self.state = self.state.add(rows, stream_time)

    def revoke(self, partitions: Iterable[int]) -> None:
        keep = set(self.state.stream_time) - set(partitions)
        if self.state.rows is not None:
            keep |= set(self.state.rows[P].unique().to_list()) - set(partitions)
        self.state = self.state.only(keep)

    def commit(self, result: StepResult) -> None:
        """Make ``result``'s state the committed state (after its transaction committed)."""
        if result.state is not None:
            self.state = result.state

    # -- one batch ------------------------------------------------------------------------
    def _decode(self, raw: RawBatch, res: StepResult) -> pl.DataFrame:
        """The batch's values as rows; a value that does not decode goes to the dead-letter topic."""
        if None in raw.values:  # tombstones carry no event
            idx = [i for i, v in enumerate(raw.values) if v is not None]
            values = [raw.values[i] for i in idx]
        else:
            idx, values = range(len(raw.values)), raw.values  # type: ignore[assignment]
        fmt = self.pipeline.value_format
        df, bad = fmt.decode(values) if fmt is not None else self._json(values)  # type: ignore[arg-type]
        if bad:
            for j, reason in sorted(bad.items()):
                i = idx[j]
                res.dlq.append((raw.keys[i], raw.values[i], self._dead(raw, i, reason)))
            res.n_invalid += len(bad)
            idx = [i for j, i in enumerate(idx) if j not in bad]
        return self._meta(df, raw, idx)

    def _json(self, values: list[bytes]) -> tuple[pl.DataFrame, dict[int, str]]:
        try:
            return decode_json(values, self._schema), {}
        except ValidationError:
            bad = set(bad_rows(values))
            if not bad:  # valid objects whose types clash across records: build row by row
                import orjson

                rows_ = [orjson.loads(v) for v in values]
                return pl.DataFrame(rows_, infer_schema_length=None, strict=False), {}
            good = [v for j, v in enumerate(values) if j not in bad]
            return decode_json(good, self._schema), dict.fromkeys(sorted(bad), "invalid JSON object")

    def _meta(self, df: pl.DataFrame, raw: RawBatch, idx: list[int]) -> pl.DataFrame:
        rows = pl.Series("__row", idx if len(idx) != len(raw.values) else range(len(raw.values)), dtype=pl.Int64)
        cols = [rows, pl.Series(P, [raw.partitions[i] for i in idx] if len(idx) != len(raw.values)
                                else raw.partitions, dtype=pl.Int64)]
        if self._needs_offsets:
            cols.append(pl.Series("__o", [raw.offsets[i] for i in idx], dtype=pl.Int64))
        if self.pipeline.record_key:
            cols.append(pl.Series("__record_key", [raw.keys[i] for i in idx], dtype=pl.Binary))
        if self.needs_timestamps and raw.timestamps is not None:
            cols.append(pl.Series("__ts", [raw.timestamps[i] for i in idx], dtype=pl.Int64))
        return df.with_columns(cols) if df.width else pl.DataFrame(cols)

    def _dead(self, raw: RawBatch, i: int, reason: str) -> list[tuple[str, bytes]]:
        src = f"{raw.topic}/{raw.partitions[i]}@{raw.offsets[i]}"
        return self._carry(raw.headers[i] if raw.headers else None) + [
            (H.REASON, reason.encode()), (H.SOURCE, src.encode())]

    def _carry(self, hdrs: Any) -> list[tuple[str, bytes]]:
        if not hdrs:
            return self._base
        return self._base + [(k, v) for k, v in hdrs if k in _CARRY]

    def process(self, raw: RawBatch) -> StepResult:
        """Run the pipeline over ``raw``; returns outputs, dead letters and the next state."""
        res = StepResult(n_in=len(raw))
        window_out = False
        ops = self.pipeline.ops
        if self.join is not None:  # the first step: it reads both topics
            df = self._join(raw, res, self.join)
            ops = ops[1:]
        else:
            df = self._decode(raw, res)
        for op in ops:
            if isinstance(op, Window):
                step = op.step(df, self.state)
                res.state = step.state
                res.n_late = step.late.height
                if step.late.height and op.late == "dlq":
                    for i in step.late["__row"].to_list():
                        res.dlq.append((raw.keys[i], raw.values[i], self._dead(
                            raw, i, f"late: window of {op.key} closed (grace {op.spec.grace}ms)")))
                self._changelog(step.upserts, step.deletes, step.stream_time, res)
                df = step.output
                window_out = True
            else:
                df = op.apply(df)
        self._encode(df, raw, res, window_out)
        return res

    def _join(self, raw: RawBatch, res: StepResult, op: StreamJoin) -> pl.DataFrame:
        """Decode each side's messages apart (their columns differ), then join them."""
        topics = raw.topics or [raw.topic] * len(raw)
        frames = []
        for right in (False, True):
            idx = [i for i, t in enumerate(topics) if (t == op.right_topic) == right]
            df = self._decode(raw.subset(idx, op.right_topic if right else raw.topic), res)
            if df.height:
                df = df.with_columns(pl.Series("__row", [idx[r] for r in df["__row"].to_list()], dtype=pl.Int64))
            frames.append(df)
        step = op.step(frames[0], frames[1], self.state)
        res.state = step.state
        res.n_late = step.late.height
        self._changelog(step.upserts, step.deletes, step.stream_time, res)
        return step.output

    def _changelog(self, upserts: pl.DataFrame, deletes: pl.DataFrame, moved: dict[int, int],
                   res: StepResult) -> None:
        import orjson

        if upserts.height:
            keys = upserts.select(pl.format("{}|{}", pl.col(KEYCOL), pl.col(WS))).to_series().to_list()
            vals = encode_json(upserts)
            parts = upserts[P].to_list()
            res.changelog += [(p, k.encode(), v) for p, k, v in zip(parts, keys, vals)]
        if deletes.height:
            keys = deletes.select(pl.format("{}|{}", pl.col(KEYCOL), pl.col(WS))).to_series().to_list()
            res.changelog += [(p, k.encode(), None) for p, k in zip(deletes[P].to_list(), keys)]
        for p, t in sorted(moved.items()):
            res.changelog.append((p, STREAM_TIME_KEY, orjson.dumps({"stream_time": t})))

    def _encode(self, df: pl.DataFrame, raw: RawBatch, res: StepResult, window_out: bool) -> None:
        if df.height == 0:
            res.frame = df if self.keep_frames else None
            return
        public = df.select([c for c in df.columns if not c.startswith("__")])
        if self.keep_frames:
            res.frame = public
        fmt = self.pipeline.sink_format
        res.values = list(fmt.encode(public) if fmt is not None else encode_json(public))
        if TOMBSTONE in df.columns:  # rows that delete their key: the value is None
            res.values = [None if dead else v for v, dead in zip(res.values, df[TOMBSTONE].to_list())]
        if TIMESTAMP in df.columns:
            res.timestamps = df[TIMESTAMP].cast(pl.Int64).to_list()
        key_col = self.pipeline.sink_key or (self.window.key if window_out and self.window else None)
        if key_col is not None:
            if key_col not in df.columns:
                raise PipelineError(f"sink key column {key_col!r} not in the output",
                                    hint=f"columns: {', '.join(public.columns)}")
            res.keys = [_b(k) for k in df[key_col].to_list()]
        elif "__row" in df.columns:
            rk = raw.keys
            res.keys = [rk[i] for i in df["__row"].to_list()]
        else:
            res.keys = [None] * df.height
        if "__row" in df.columns and raw.headers is not None and any(raw.headers):
            rh, carry = raw.headers, self._carry
            res.headers = [carry(rh[i]) for i in df["__row"].to_list()]
        elif window_out and "window_start" in df.columns and self.window is not None:
            ids = df.select(pl.format(f"{self.pipeline.name}:{{}}:{{}}", pl.col(self.window.key),
                                      pl.col("window_start"))).to_series().to_list()
            ends = df["window_end"].to_list() if "window_end" in df.columns else [None] * df.height
            base = self._base
            res.headers = [base + [(H.EVENT_ID, i.encode()), (H.EVENT_TIME, str(e).encode())]
                           for i, e in zip(ids, ends)]
        elif "__t" in df.columns and self.join is not None:  # a joined pair's event time: the later side's
            base = self._base
            res.headers = [base + [(H.EVENT_TIME, str(t).encode())] for t in df["__t"].to_list()]
        else:
            res.headers = [self._base] * df.height


def state_from_records(records: Iterable[tuple[bytes, bytes]],
                       partition: int) -> tuple[pl.DataFrame | None, dict[int, int]]:
    """Rebuild (rows, stream time) of one partition's store from its key/value records."""
    import orjson

    values, stream_time = [], {}
    for k, v in records:
        if k == STREAM_TIME_KEY:
            stream_time = {partition: int(orjson.loads(v)["stream_time"])}
        else:
            values.append(v)
    rows = decode_json(values) if values else None
    return rows, stream_time
