"""Fixtures for scoring: fraud-like feature events, small ONNX models, and a read_committed reader.

Used by the tests, the examples and the benchmark, so all three score the same thing.

>>> df = fraud_frame(1000, seed=1)
>>> df.columns[:3], df.height, 0.0 < df["is_fraud"].mean() < 0.2
(['event_id', 'event_time', 'card_id'], 1000, True)
>>> m = onnx_model("fraud", 1, train_fraud_onnx(seed=1))
>>> s = m.predict(df.select(FRAUD_FEATURES).to_numpy().astype("float32"))
>>> len(s), bool(((s.label == df["is_fraud"].to_numpy()).mean()) > 0.9)
(1000, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import orjson
import polars as pl

from streamml.kafka.message import offset_of, partition_of
from streamml.serve.base import Candidate, ModelRef
from streamml.serve.onnxmodel import OnnxModel, sha256, sklearn_to_onnx

__all__ = ["FRAUD_FEATURES", "fraud_frame", "fraud_events", "train_fraud_onnx", "onnx_model", "onnx_candidate",
           "Record", "read_topic", "produce_events"]

FRAUD_FEATURES = ("amount", "log_amount", "hour", "merchant_risk", "tx_count_1h", "amount_ratio")


def fraud_frame(n: int, *, seed: int = 0, start_ms: int = 1_700_000_000_000, prefix: str = "e",
                cards: int = 1000) -> pl.DataFrame:
    """``n`` feature rows of card payments with a ``is_fraud`` label (about 3 % fraud)."""
    rng = np.random.default_rng(seed)
    fraud = rng.random(n) < 0.03
    amount = np.where(fraud, rng.lognormal(5.5, 1.0, n), rng.lognormal(3.5, 1.0, n))
    hour = np.where(fraud, rng.integers(0, 6, n), rng.integers(0, 24, n)).astype(np.float64)
    risk = np.clip(np.where(fraud, rng.normal(0.7, 0.15, n), rng.normal(0.2, 0.15, n)), 0, 1)
    count = rng.poisson(np.where(fraud, 6.0, 1.5)).astype(np.float64)
    ratio = amount / np.where(fraud, rng.lognormal(3.4, 0.5, n), amount * rng.lognormal(0, 0.3, n))
    return pl.DataFrame({
        "event_id": [f"{prefix}{i}" for i in range(n)],
        "event_time": np.arange(n, dtype=np.int64) * 10 + start_ms,
        "card_id": [f"c{v}" for v in rng.integers(0, cards, n)],
        "amount": np.round(amount, 2), "log_amount": np.round(np.log1p(amount), 4), "hour": hour,
        "merchant_risk": np.round(risk, 4), "tx_count_1h": count, "amount_ratio": np.round(ratio, 4),
        "is_fraud": fraud.astype(np.int64),
    })


def fraud_events(n: int, *, seed: int = 0, start_ms: int | None = None, prefix: str = "e",
                 label: bool = False) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` JSON feature records (key: card id); ``label=True`` keeps ``is_fraud`` in the value."""
    df = fraud_frame(n, seed=seed, start_ms=start_ms or int(time.time() * 1000), prefix=prefix)
    keys = [k.encode() for k in df["card_id"].to_list()]
    if not label:
        df = df.drop("is_fraud")
    from streamml.schema.batch import encode_json

    return list(zip(keys, encode_json(df)))


def train_fraud_onnx(*, seed: int = 0, kind: str = "logreg", flip: bool = False, n: int = 4000,
                     columns: Sequence[str] = FRAUD_FEATURES) -> bytes:
    """Train a small classifier on :func:`fraud_frame` data and return its ONNX bytes.

    ``flip=True`` trains on inverted labels: a deliberately bad model (for quality-based tests).
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    df = fraud_frame(n, seed=seed + 1000)
    x = df.select(list(columns)).to_numpy().astype(np.float32)
    y = df["is_fraud"].to_numpy()
    if flip:
        y = 1 - y
    if kind == "forest":
        est: Any = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=seed).fit(x, y)
    else:
        est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=1.0 + seed * 1e-3)).fit(x, y)
    return sklearn_to_onnx(est, x.shape[1])


def onnx_model(name: str, version: int, data: bytes, columns: Sequence[str] = FRAUD_FEATURES) -> OnnxModel:
    return OnnxModel.from_bytes(data, name=name, version=version, input_columns=tuple(columns))


def onnx_candidate(name: str, version: int, data: bytes, *, columns: Sequence[str] = FRAUD_FEATURES,
                   stage: str = "production", sha: str | None = None) -> Candidate:
    """A :class:`Candidate` over ONNX bytes; ``sha`` overrides the descriptor hash (to test refusals)."""
    ref = ModelRef(name, version, stage, "onnx", sha if sha is not None else sha256(data), tuple(columns))

    def load() -> OnnxModel:
        m = OnnxModel.from_bytes(data, name=name, version=version, input_columns=tuple(columns))
        return m

    return Candidate(ref, load)


@dataclass
class Record:
    """A record as read back: where it is, what it holds."""

    partition: int
    offset: int
    key: bytes | None
    value: dict[str, Any]               # the JSON object, or {"_raw": bytes} when it is not one
    headers: dict[str, str]
    timestamp_ms: int
    read_at_ms: float


def produce_events(settings: Any, topic: str, events: Sequence[tuple[bytes, bytes]]) -> None:
    """Write ``(key, value)`` events and wait for every acknowledgement."""
    from streamml.kafka import clients
    from streamml.kafka.produce import send_all

    p = clients.producer(settings)
    send_all(p, topic, ((k, v, None) for k, v in events))
    p.flush(60)


def _value(raw: bytes | None) -> dict[str, Any]:
    try:
        v = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        return {"_raw": raw}
    return v if isinstance(v, dict) else {"_raw": raw}


def read_topic(settings: Any, topic: str, *, expect: int | None = None, timeout: float = 30.0,
               quiet_s: float = 1.0) -> list[Record]:
    """Read ``topic`` from the beginning, read_committed, until ``expect`` records arrived
    and no new one has for ``quiet_s`` (or ``timeout``: then what was read is returned).

    Each round pins the committed end of every partition and reads up to it with the read
    layer (:func:`streamml.kafka.read.read_ranges`), continuing where the last round ended.
    """
    from streamml.errors import ConfigError, KafkaError
    from streamml.headers import as_dict
    from streamml.kafka.read import TopicRange, read_ranges, watermarks

    out: list[Record] = []
    pos: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + timeout
    quiet = time.monotonic()
    while time.monotonic() < deadline:
        try:
            marks = watermarks(settings, topic, timeout=max(1.0, min(10.0, deadline - time.monotonic())))
        except ConfigError:  # the topic is not there yet
            marks = {}
        ranges = [TopicRange(t, p, pos.get((t, p), low), high) for (t, p), (low, high) in sorted(marks.items())
                  if pos.get((t, p), low) < high]
        got = 0
        try:
            left = max(1.0, deadline - time.monotonic())
            for msgs in read_ranges(settings, ranges, timeout=left, idle_timeout=left, group_prefix="testing"):
                now = time.time() * 1000
                out.extend(Record(partition_of(m), offset_of(m), m.key(), _value(m.value()), as_dict(m.headers()),
                                  m.timestamp()[1], now) for m in msgs)
                got += len(msgs)
        except KafkaError as exc:
            if exc.code != "_TIMED_OUT":
                raise
            break
        pos.update({(r.topic, r.partition): r.end for r in ranges})
        if got:
            quiet = time.monotonic()
        done = len(out) >= expect if expect is not None else bool(out)
        if done and time.monotonic() - quiet >= quiet_s:
            break
        time.sleep(0.1)
    return out
