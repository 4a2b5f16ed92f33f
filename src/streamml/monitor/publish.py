"""Metric snapshots on ``<ns>.metrics``, and reading them back as time series.

Every process that records metrics can run a :class:`SnapshotPublisher`: every
``interval`` seconds it writes ``Metrics.snapshot()`` (plus whatever ``extra()`` returns,
e.g. the monitor's drift and quality reports) as one JSON record keyed by its instance id.
:class:`MetricsHistory` tails the topic and folds the snapshots into bounded time series
for the dashboard and ``streamml status``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import deque
from typing import Any, Callable

import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streamml.config import Settings
from streamml.monitor.metrics import Metrics, get_metrics

__all__ = ["SnapshotPublisher", "MetricsHistory", "ensure_metrics_topic"]


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
        self._producer.poll(0)
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
    """Tails ``<ns>.metrics`` and keeps the last ``keep`` snapshots as time series.

    ``series()`` returns, per time stamp: throughput (records/s summed over components,
    and per component), latency percentiles (the worst p50/p95/p99 over components),
    total consumer lag, drift per feature and live quality (from monitor snapshots).
    """

    def __init__(self, settings: Settings, *, keep: int = 720, since_ms: int | None = None) -> None:
        from streamml.kafka import clients

        self.settings = settings
        self.topic = ensure_metrics_topic(settings)
        self._consumer = clients.consumer(settings, f"{settings.namespace}.metrics-reader-{uuid.uuid4().hex[:8]}",
                                          isolation_level="read_uncommitted", enable_partition_eof=False)
        start = OFFSET_BEGINNING
        if since_ms is not None:
            tp = self._consumer.offsets_for_times([TopicPartition(self.topic, 0, since_ms)], timeout=10)[0]
            start = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        self._consumer.assign([TopicPartition(self.topic, 0, start)])
        self.snapshots: deque[dict[str, Any]] = deque(maxlen=keep)
        self.latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def poll(self, timeout: float = 0.2, max_messages: int = 2000) -> int:
        """Read what arrived; returns how many snapshots were added."""
        msgs = self._consumer.consume(max_messages, timeout=timeout)
        added = 0
        with self._lock:
            for m in msgs:
                if m.error() or not m.value():
                    continue
                try:
                    snap = orjson.loads(m.value())
                except orjson.JSONDecodeError:
                    continue
                self.snapshots.append(snap)
                self.latest[str(snap.get("instance", ""))] = snap
                added += 1
        return added

    def close(self) -> None:
        self._consumer.close()

    def series(self) -> dict[str, Any]:
        """Time series for charts (see the class doc)."""
        with self._lock:
            snaps = list(self.snapshots)
        ts, rate, p50, p95, p99, lag = [], [], [], [], [], []
        per_comp: dict[str, list[tuple[int, float]]] = {}
        drift: dict[str, list[tuple[int, float]]] = {}
        quality: dict[str, list[tuple[int, float | None]]] = {"precision": [], "recall": [], "auc": []}
        for s in snaps:
            t = int(s.get("ts", 0))
            comps = s.get("components", {})
            ts.append(t)
            rate.append(round(sum(float(c.get("rate", 0.0)) for c in comps.values()), 3))
            for name, c in comps.items():
                per_comp.setdefault(name, []).append((t, float(c.get("rate", 0.0))))
            lats = [c.get("latency_ms") or {} for c in comps.values()]
            p50.append(max((x["p50"] for x in lats if x), default=None))
            p95.append(max((x["p95"] for x in lats if x), default=None))
            p99.append(max((x["p99"] for x in lats if x), default=None))
            rows = s.get("lag") or []
            lag.append(sum(int(r.get("lag", 0)) for r in rows) if rows else None)
            mon = s.get("monitor") or {}
            for fname, f in ((mon.get("drift") or {}).get("features") or {}).items():
                drift.setdefault(fname, []).append((t, float(f.get("psi", 0.0))))
            q = mon.get("quality") or {}
            if q.get("n"):
                for k in quality:
                    quality[k].append((t, q.get(k)))
        return {"ts": ts, "rate": rate, "p50": p50, "p95": p95, "p99": p99, "lag": lag,
                "components": {k: v for k, v in per_comp.items()}, "drift": drift, "quality": quality}
