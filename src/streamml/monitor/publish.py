"""Metric snapshots on ``<ns>.metrics``, and reading them back as time series.

Every process that records metrics can run a :class:`SnapshotPublisher`: every
``interval`` seconds it writes ``Metrics.snapshot()`` (plus whatever ``extra()`` returns,
e.g. the monitor's drift and quality reports) as one JSON record keyed by its instance id.
:class:`MetricsHistory` tails the topic and folds the snapshots into bounded time series
for the dashboard and ``streamml status``.

Two latency figures come out of the snapshots (:func:`headline_latency`): the headline,
**ingest -> prediction** (stage ``ingest``), the latency the pipeline controls; and the
**event-time lag**, event time -> prediction (stage ``e2e``), which also counts how long the
events took to reach ingest (a replayed history, a late source, a clock that drifts).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import deque
from typing import Any, Callable, Iterable, Mapping

import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streamml.config import Settings
from streamml.monitor.metrics import Metrics, get_metrics

__all__ = ["SnapshotPublisher", "MetricsHistory", "ensure_metrics_topic", "headline_latency"]

_QS = ("p50", "p95", "p99")


def headline_latency(components: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float | None]]:
    """The two latency figures over components' snapshot entries (the worst of each percentile).

    ``ingest``: ingest -> prediction (stage ``ingest``), the dashboard's headline;
    ``event_lag``: event time -> prediction (stage ``e2e``), shown on its own.

    >>> pipe = {"latency_ms": {"p50": 7000.0, "p95": 7810.0, "p99": 8000.0},
    ...         "latency_by_stage": {"ingest": {"p50": 90.0, "p95": 200.0, "p99": 250.0}}}
    >>> h = headline_latency([pipe, {"latency_ms": {"p50": 5.0, "p95": 9.0, "p99": 12.0}}])
    >>> h["ingest"]["p95"], h["event_lag"]["p95"]
    (200.0, 7810.0)
    >>> headline_latency([{"latency_ms": {"p50": 5.0, "p95": 9.0, "p99": 12.0}}])["ingest"]
    {'p50': None, 'p95': None, 'p99': None}
    """
    out: dict[str, dict[str, float | None]] = {"ingest": dict.fromkeys(_QS), "event_lag": dict.fromkeys(_QS)}
    for c in components:
        stages = c.get("latency_by_stage") or {}
        for figure, lat in (("ingest", stages.get("ingest")), ("event_lag", c.get("latency_ms") or stages.get("e2e"))):
            for q in _QS:
                v = (lat or {}).get(q)
                if v is not None:
                    cur = out[figure][q]
                    out[figure][q] = v if cur is None else max(cur, v)
    return out


def ensure_metrics_topic(settings: Settings) -> str:
    """Create ``<ns>.metrics`` (1 partition, one day of retention) when missing; return its name."""
    from streamml.kafka.admin import ensure_topic

    topic = settings.topic("metrics")
    ensure_topic(settings, topic, 1, config={"retention.ms": 86_400_000})
    return topic


class SnapshotPublisher:
    """Publishes metric snapshots to ``<ns>.metrics`` from a background thread."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None, *, instance: str | None = None,
                 interval: float = 5.0, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or get_metrics()
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.interval = float(interval)
        self.extra = extra
        self.topic = ensure_metrics_topic(settings)
        from streamml.kafka import clients

        self._producer = clients.producer(settings, linger_ms=20)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0

    def publish_once(self) -> dict[str, Any]:
        """Write one snapshot now and return it."""
        snap = self.metrics.snapshot()
        snap["instance"] = self.instance
        if self.extra is not None:
            snap.update(self.extra())
        self._producer.produce(self.topic, orjson.dumps(snap, option=orjson.OPT_SERIALIZE_NUMPY),
                               self.instance.encode(), headers=[("sm.component", b"monitor.metrics")])
        self._producer.flush(10)
        self.published += 1
        return snap

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish_once()
            except Exception:  # a failed snapshot must not take the process down; the next one retries
                pass

    def start(self) -> "SnapshotPublisher":
        self._thread = threading.Thread(target=self._run, name="streamml-metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self, final: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        if final:
            self.publish_once()
        self._producer.flush(10)


class MetricsHistory:
    """Tails ``<ns>.metrics`` and folds the snapshots into aligned time series.

    Each snapshot that arrives adds one point computed over the latest snapshot of every
    instance heard from in the last ``stale_s`` seconds: throughput (records/s summed over
    instances, in total and per component), latency percentiles (the worst over components),
    total consumer lag, drift per feature and live quality (from monitor snapshots). Other
    records on the topic (e.g. a scorer's ``{"kind": "serve.model", ...}`` swap events) are
    kept in :attr:`events`.
    """

    def __init__(self, settings: Settings, *, keep: int = 720, since_ms: int | None = None,
                 stale_s: float = 30.0) -> None:
        from streamml.kafka import clients

        self.settings = settings
        self.topic = ensure_metrics_topic(settings)
        self.stale_ms = int(stale_s * 1000)
        self._consumer = clients.consumer(settings, f"{settings.namespace}.metrics-reader-{uuid.uuid4().hex[:8]}",
                                          isolation_level="read_uncommitted")
        start = OFFSET_BEGINNING
        if since_ms is not None:
            tp = self._consumer.offsets_for_times([TopicPartition(self.topic, 0, since_ms)], timeout=10)[0]
            start = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        self._consumer.assign([TopicPartition(self.topic, 0, start)])
        self.snapshots: deque[dict[str, Any]] = deque(maxlen=keep)
        self.points: deque[dict[str, Any]] = deque(maxlen=keep)
        self.events: deque[dict[str, Any]] = deque(maxlen=500)
        self.latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def poll(self, timeout: float = 0.2, max_messages: int = 2000) -> int:
        """Read what arrived; returns how many snapshots were added."""
        msgs = self._consumer.consume(max_messages, timeout=timeout)
        added = 0
        with self._lock:
            for m in msgs:
                value = m.value()
                if m.error() or not value:
                    continue
                try:
                    snap = orjson.loads(value)
                except orjson.JSONDecodeError:
                    continue
                if not isinstance(snap, dict):
                    continue
                if "components" not in snap:
                    snap.setdefault("ts", m.timestamp()[1])
                    self.events.append(snap)
                    continue
                self.snapshots.append(snap)
                self.latest[str(snap.get("instance", ""))] = snap
                self.points.append(self._point(int(snap.get("ts", 0))))
                added += 1
        return added

    def _point(self, t: int) -> dict[str, Any]:
        live = [s for s in self.latest.values() if t - int(s.get("ts", 0)) <= self.stale_ms]
        comps: dict[str, float] = {}
        lag_rows: list[dict[str, Any]] = []
        drift: dict[str, float] = {}
        quality: dict[str, float | None] = {}
        for s in live:
            for name, c in s.get("components", {}).items():
                comps[name] = round(comps.get(name, 0.0) + float(c.get("rate", 0.0)), 3)
            lag_rows += s.get("lag") or []
            mon = s.get("monitor") or {}
            for fname, f in ((mon.get("drift") or {}).get("features") or {}).items():
                drift[fname] = float(f.get("psi", 0.0))
            q = mon.get("quality") or {}
            if q.get("n"):
                for k in ("precision", "recall", "auc"):
                    quality[k] = q.get(k)
        lag: dict[tuple[str, str, int], int] = {}
        for r in lag_rows:
            lag[(r["group"], r["topic"], int(r["partition"]))] = int(r["lag"])
        lat = headline_latency(c for s in live for c in s.get("components", {}).values())
        return {"ts": t, "rate": round(sum(v for k, v in comps.items() if not k.startswith("monitor.")), 3),
                "components": comps, **lat["ingest"], "event_lag": lat["event_lag"],
                "lag": sum(lag.values()) if lag else None, "drift": drift, "quality": quality}

    def close(self) -> None:
        self._consumer.close()

    def series(self) -> dict[str, Any]:
        """Aligned columns for charts: ``ts`` (seconds) and one list per series (``None`` = no value)."""
        with self._lock:
            pts = sorted(self.points, key=lambda p: p["ts"])
        comps = sorted({k for p in pts for k in p["components"]})
        feats = sorted({k for p in pts for k in p["drift"]})
        return {
            "ts": [p["ts"] / 1000.0 for p in pts],
            "rate": [p["rate"] for p in pts],
            "components": {c: [p["components"].get(c) for p in pts] for c in comps},
            # ingest -> prediction (the headline) and the event-time lag, on its own
            "p50": [p["p50"] for p in pts], "p95": [p["p95"] for p in pts], "p99": [p["p99"] for p in pts],
            "event_lag": {q: [p["event_lag"][q] for p in pts] for q in _QS},
            "lag": [p["lag"] for p in pts],
            "drift": {f: [p["drift"].get(f) for p in pts] for f in feats},
            "quality": {k: [p["quality"].get(k) for p in pts] for k in ("precision", "recall", "auc")},
        }
