"""Metrics every component reports, cheaply, once per batch.

One :class:`Metrics` object per process (:func:`get_metrics` returns the shared one) holds
counters and histograms in NumPy arrays and exposes them to Prometheus as a custom
collector, so recording a batch of 10,000 latencies costs one ``np.searchsorted`` and one
``np.bincount``, never a Python call per record. Latencies are recorded in milliseconds (what
the lineage headers carry) and exposed in seconds, Prometheus' base unit: the families and
their names are listed in :mod:`streamml.monitor.exposition`.

The API other components call (all vectorised, all thread-safe):

``observe_batch(component, n, latencies_ms=None, *, stage="e2e")``
    ``n`` records processed; ``latencies_ms`` an array of per-record latencies (e.g. from
    :func:`latencies_from_headers` or ``now - event_time``). Stages: ``e2e`` is event time ->
    processed (so it includes how late events reached ingest); ``ingest`` is ingest time
    (``sm.ingest_time``) -> processed, the latency the pipeline itself controls; ``serve`` is
    a scorer's own batch time.
``observe_latency(component, latencies_ms, *, stage)``
    another stage's latencies for records :meth:`observe_batch` counted already.
``observe_errors(component, n=1, kind="error")`` / ``observe_dlq(component, n, reasons=None)``
    failed records and dead letters (with optional per-record reasons, counted by reason).
``set_model(component, model, version)``
    the model version a scorer currently uses.
``observe_predictions(model, scores)``
    the distribution of scores a model emits (10 bins on [0, 1] by default).
``set_lag(group, topic, partition, lag)``
    consumer lag (the monitor computes it with :func:`streamml.monitor.lag.consumer_lag`).
``set_gauge(name, value, **labels)``
    a free-form gauge ``streamml_<name>`` (drift and quality figures); the name must follow the
    naming guide (:func:`streamml.monitor.exposition.check_gauge_name`).

>>> import numpy as np
>>> m = Metrics()
>>> m.observe_batch("serve.fraud", 3, np.array([4.0, 12.0, 250.0]))
>>> m.observe_dlq("ingest.http", 2, ["bad json", "bad json"])
>>> snap = m.snapshot()
>>> snap["components"]["serve.fraud"]["records"], snap["components"]["ingest.http"]["dlq"]
(3, 2)
>>> snap["components"]["serve.fraud"]["latency_ms"]["p50"]
12.0
>>> b"streamml_records_total" in m.exposition(), b"streamml_latency_seconds_bucket" in m.exposition()
(True, True)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from streamml.monitor.exposition import check_gauge_name, families

__all__ = ["Metrics", "get_metrics", "serve_metrics", "latencies_from_headers", "LATENCY_BUCKETS_MS",
           "LATENCY_BUCKETS_SECONDS", "SCORE_BUCKETS"]

#: Histogram upper bounds for latencies, in milliseconds (how latencies are recorded).
LATENCY_BUCKETS_MS = np.array([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000],
                              dtype=np.float64)
#: The same bounds in seconds (how ``streamml_latency_seconds`` exposes them).
LATENCY_BUCKETS_SECONDS = LATENCY_BUCKETS_MS / 1000.0
#: Histogram upper bounds for prediction scores.
SCORE_BUCKETS = np.round(np.linspace(0.1, 1.0, 10), 2)
_RECENT = 4096          # latencies kept per component for percentiles in snapshots


@dataclass
class _Component:
    records: int = 0
    batches: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    dlq: int = 0
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    # stage -> (bucket counts incl. +Inf, sum)
    hist: dict[str, tuple[np.ndarray, list[float]]] = field(default_factory=dict)
    recent: dict[str, deque[np.ndarray]] = field(default_factory=dict)
    last_seen: float = 0.0


class Metrics(Collector):
    """A registry of component metrics, exposed to Prometheus and as JSON snapshots.

    Parameters
    ----------
    registry:
        The Prometheus registry to register with; a private one by default (so tests and
        several instances never clash).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._components: dict[str, _Component] = {}
        self._models: dict[tuple[str, str], str] = {}
        self._scores: dict[str, np.ndarray] = {}
        self._score_sums: dict[str, float] = {}
        self._lag: dict[tuple[str, str, int], int] = {}
        self._gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._started = time.time()
        self._rate_base: tuple[float, dict[str, int]] = (time.monotonic(), {})
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    # -- recording --------------------------------------------------------------------
    def _comp(self, component: str) -> _Component:
        c = self._components.get(component)
        if c is None:
            c = self._components[component] = _Component()
        c.last_seen = time.time()
        return c

    def observe_batch(self, component: str, n: int, latencies_ms: Sequence[float] | np.ndarray | None = None,
                      *, stage: str = "e2e") -> None:
        """Count ``n`` records of one batch and, when given, their latencies (ms)."""
        self._observe(component, n, latencies_ms, stage, batch=True)

    def observe_latency(self, component: str, latencies_ms: Sequence[float] | np.ndarray, *, stage: str) -> None:
        """Record one more stage's latencies (ms) of records already counted by :meth:`observe_batch`."""
        self._observe(component, 0, latencies_ms, stage, batch=False)

    def _observe(self, component: str, n: int, latencies_ms: Sequence[float] | np.ndarray | None, stage: str,
                 *, batch: bool) -> None:
        lat = None
        if latencies_ms is not None:
            lat = np.asarray(latencies_ms, dtype=np.float64).ravel()
            lat = lat[np.isfinite(lat)]
            counts = np.bincount(np.searchsorted(LATENCY_BUCKETS_MS, lat, side="left"),
                                 minlength=len(LATENCY_BUCKETS_MS) + 1)
            total = float(lat.sum())
        with self._lock:
            c = self._comp(component)
            c.records += int(n)
            c.batches += int(batch)
            if lat is not None and lat.size:
                h = c.hist.get(stage)
                if h is None:
                    h = c.hist[stage] = (np.zeros(len(LATENCY_BUCKETS_MS) + 1, dtype=np.int64), [0.0])
                h[0][:] += counts
                h[1][0] += total
                c.recent.setdefault(stage, deque()).append(lat[-_RECENT:].copy())
                _trim(c.recent[stage])

    def observe_errors(self, component: str, n: int = 1, kind: str = "error") -> None:
        """Count ``n`` failed records (or failed calls) of kind ``kind``."""
        with self._lock:
            c = self._comp(component)
            c.errors[kind] = c.errors.get(kind, 0) + int(n)

    def observe_dlq(self, component: str, n: int, reasons: Iterable[str] | None = None) -> None:
        """Count ``n`` dead letters; ``reasons`` (one per record) are counted by reason."""
        with self._lock:
            c = self._comp(component)
            c.dlq += int(n)
            if reasons is not None:
                values, counts = np.unique(np.asarray(list(reasons), dtype=object).astype(str), return_counts=True)
                for r, k in zip(values.tolist(), counts.tolist()):
                    key = r[:120]
                    c.dlq_reasons[key] = c.dlq_reasons.get(key, 0) + int(k)

    def set_model(self, component: str, model: str, version: int | str) -> None:
        """Record that ``component`` now scores with ``model`` at ``version``."""
        with self._lock:
            self._models[(component, model)] = str(version)

    def observe_predictions(self, model: str, scores: Sequence[float] | np.ndarray) -> None:
        """Add a batch of scores to the model's prediction distribution."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        s = s[np.isfinite(s)]
        counts = np.bincount(np.searchsorted(SCORE_BUCKETS, s, side="left"), minlength=len(SCORE_BUCKETS) + 1)
        with self._lock:
            acc = self._scores.get(model)
            if acc is None:
                acc = self._scores[model] = np.zeros(len(SCORE_BUCKETS) + 1, dtype=np.int64)
            acc += counts
            self._score_sums[model] = self._score_sums.get(model, 0.0) + float(s.sum())

    def set_lag(self, group: str, topic: str, partition: int, lag: int) -> None:
        """Set the consumer lag of one partition for one group."""
        with self._lock:
            self._lag[(group, topic, int(partition))] = int(lag)

    def replace_lag(self, rows: Iterable[dict[str, Any]]) -> None:
        """Replace all lag values by ``rows`` (dicts with group, topic, partition, lag)."""
        new = {(r["group"], r["topic"], int(r["partition"])): int(r["lag"]) for r in rows}
        with self._lock:
            self._lag = new

    def set_gauge(self, name: str, value: float, **labels: str) -> None:
        """Set a free-form gauge ``streamml_<name>`` (drift scores, quality figures...).

        Raises ``ValueError`` for a name against Prometheus' naming guide (``_total``, ``_ms``...).
        """
        key = (check_gauge_name(name), tuple(sorted((k, str(v)) for k, v in labels.items())))
        with self._lock:
            self._gauges[key] = float(value)

    # -- reading ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A JSON-able summary: totals, rates since the previous snapshot, percentiles."""
        now = time.monotonic()
        with self._lock:
            base_t, base = self._rate_base
            dt = max(now - base_t, 1e-9)
            comps: dict[str, Any] = {}
            for name, c in sorted(self._components.items()):
                lat = {}
                for stage, parts in c.recent.items():
                    arr = np.concatenate(list(parts)) if parts else np.empty(0)
                    if arr.size:
                        p50, p95, p99 = np.percentile(arr, [50, 95, 99])
                        lat[stage] = {"p50": round(float(p50), 3), "p95": round(float(p95), 3),
                                      "p99": round(float(p99), 3), "n": int(arr.size),
                                      "mean": round(float(arr.mean()), 3)}
                    parts.clear()
                comps[name] = {
                    "records": c.records, "batches": c.batches, "errors": sum(c.errors.values()),
                    "errors_by_kind": dict(c.errors), "dlq": c.dlq, "dlq_reasons": dict(c.dlq_reasons),
                    "rate": round((c.records - base.get(name, 0)) / dt, 3) if base_t else 0.0,
                    "latency_ms": lat.get("e2e", {}), "latency_by_stage": lat,
                    "latency_seconds": _histograms(c),
                }
            self._rate_base = (now, {k: c.records for k, c in self._components.items()})
            rest = self._state_rest()
        return {"ts": int(time.time() * 1000), "components": comps, **rest}

    def _state_rest(self) -> dict[str, Any]:
        models = [{"component": comp, "model": m, "version": v} for (comp, m), v in sorted(self._models.items())]
        preds = {m: {"buckets": SCORE_BUCKETS.tolist(), "counts": a.tolist(),
                     "mean": round(self._score_sums.get(m, 0.0) / max(int(a.sum()), 1), 6),
                     "sum": self._score_sums.get(m, 0.0)}
                 for m, a in self._scores.items()}
        lag = [{"group": g, "topic": t, "partition": p, "lag": v} for (g, t, p), v in sorted(self._lag.items())]
        gauges = [{"name": n, "labels": dict(lbl), "value": v} for (n, lbl), v in sorted(self._gauges.items())]
        return {"models": models, "predictions": preds, "lag": lag, "gauges": gauges}

    def state(self) -> dict[str, Any]:
        """The cumulative part of :meth:`snapshot`, without its side effects (what ``/metrics`` exposes)."""
        with self._lock:
            comps = {name: {"records": c.records, "batches": c.batches, "errors_by_kind": dict(c.errors),
                            "dlq": c.dlq, "dlq_reasons": dict(c.dlq_reasons), "latency_seconds": _histograms(c)}
                     for name, c in sorted(self._components.items())}
            return {"components": comps, **self._state_rest()}

    def exposition(self) -> bytes:
        """The Prometheus text format of this registry (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Any]:  # the prometheus_client Collector protocol
        yield from families([(self.state(), {})])

    def describe(self) -> list[Any]:
        return []


def _histograms(c: _Component) -> dict[str, dict[str, Any]]:
    """Each stage's latency histogram in seconds: bounds, cumulative counts (last = +Inf), sum."""
    return {stage: {"le": LATENCY_BUCKETS_SECONDS.tolist(), "counts": np.cumsum(counts).tolist(),
                    "sum": total[0] / 1000.0}
            for stage, (counts, total) in c.hist.items()}


def _trim(parts: deque[np.ndarray]) -> None:
    total = sum(p.size for p in parts)
    while parts and total - parts[0].size >= _RECENT:
        total -= parts.popleft().size


def latencies_from_headers(headers: Iterable[Sequence[tuple[str, bytes]] | None], now_ms: float | None = None,
                           *, field: str = "sm.event_time") -> np.ndarray:
    """Milliseconds from each record's ``field`` header (event or ingest time) to ``now_ms``.

    Records without the header are skipped.

    >>> latencies_from_headers([[("sm.event_time", b"1000")], None, [("x", b"1")]], now_ms=1250.0)
    array([250.])
    """
    now = time.time() * 1000.0 if now_ms is None else now_ms
    key = field
    vals = [v for hs in headers if hs for k, v in hs if k == key]
    if not vals:
        return np.empty(0)
    return now - np.array(vals, dtype=np.float64)


_default: Metrics | None = None
_default_lock = threading.Lock()


def get_metrics() -> Metrics:
    """The process-wide :class:`Metrics` every component shares."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Metrics()
        return _default


def serve_metrics(metrics: Metrics | None = None, *, host: str = "127.0.0.1", port: int = 0) -> tuple[Any, int]:
    """Serve ``/metrics`` for Prometheus from a background thread; returns ``(server, port)``.

    ``port=0`` picks a free port. Stop with ``server.shutdown()``.
    """
    from prometheus_client import start_http_server

    m = metrics or get_metrics()
    server, _thread = start_http_server(port, addr=host, registry=m.registry)
    return server, int(server.server_address[1])
