"""The web dashboard: a FastAPI app over the namespace's topics, with bundled assets only.

The page (``static/index.html``, ``static/dashboard.js``, ``static/dashboard.css`` and the
vendored uPlot) polls JSON endpoints:

``/api/series``    time series of throughput, latency percentiles (``p50``/``p95``/``p99``:
                   ingest -> prediction, the headline; ``event_lag``: event time -> prediction,
                   its own figure), lag, drift and quality folded from the snapshots on
                   ``<ns>.metrics``;
``/api/overview``  components, models with versions and lineage (training offsets, decision),
                   consumer lag, alerts and swaps, per-instance latest snapshots;
``/api/dlq``       the most recent dead letters with their reasons;
``/metrics``       Prometheus exposition of the namespace (one scrape target for it): every
                   instance's latest snapshot under the same names and types a component's own
                   ``/metrics`` uses (:mod:`streamml.monitor.exposition`), with a ``worker``
                   label naming the instance, and consumer lag as this process measures it.

:class:`DashboardState` does the reading in one background thread; requests only copy.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from streamml import headers as H
from streamml.config import Settings
from streamml.extras import missing, require
from streamml.kafka.message import offset_of
from streamml.monitor.exposition import families
from streamml.monitor.metrics import Metrics
from streamml.monitor.publish import MetricsHistory, headline_latency
from streamml.monitor.reference import summarize_descriptor

__all__ = ["DashboardState", "create_app", "serve", "static_dir", "read_catalog", "recent_dlq", "recent_control"]


def static_dir() -> Path:
    """Where the bundled page and assets are."""
    return Path(str(resources.files("streamml.monitor") / "static"))


def read_catalog(settings: Settings, timeout: float = 5.0) -> dict[str, list[dict[str, Any]]]:
    """Every model's versions (newest first) from partition 0 of ``<ns>.models``."""
    from streamml.kafka import clients
    from streamml.kafka.admin import list_topics

    topic = settings.topic("models")
    if topic not in list_topics(settings):
        return {}
    c = clients.consumer(settings, f"{settings.namespace}.dashboard-catalog-{uuid.uuid4().hex[:8]}")
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=timeout)
        if high <= low:
            return {}
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        descs: dict[tuple[str, int], dict[str, Any]] = {}
        pointers: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        pos = low
        while pos < high - 1 and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.3):
                if m.error() is not None:
                    continue
                pos = max(pos, offset_of(m))
                key, value = m.key(), m.value()
                if not key or value is None:
                    continue
                try:
                    obj = orjson.loads(value)
                except orjson.JSONDecodeError:
                    continue
                name, _, ver = key.decode().partition(":")
                if obj.get("type") == "descriptor" and ver.isdigit():
                    descs[(name, int(ver))] = obj
                elif obj.get("type") == "stages":
                    pointers[name] = obj
            if not c.assignment():
                break
    finally:
        c.close()
    out: dict[str, list[dict[str, Any]]] = {}
    for (name, _), d in sorted(descs.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        s = summarize_descriptor(d)
        ptr = (pointers.get(name) or {}).get("stages") or {}
        s["serving"] = [st for st, v in ptr.items() if v == d.get("version")]
        out.setdefault(name, []).append(s)
    return out


def _tail(settings: Settings, topic: str, n: int, timeout: float = 3.0) -> list[Any]:
    from streamml.kafka import clients
    from streamml.kafka.admin import list_topics

    parts = list_topics(settings).get(topic)
    if not parts:
        return []
    c = clients.consumer(settings, f"{settings.namespace}.dashboard-tail-{uuid.uuid4().hex[:8]}",
                         isolation_level="read_committed")
    try:
        assign, want = [], 0
        for p in range(parts):
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                start = max(low, high - n)
                assign.append(TopicPartition(topic, p, start))
                want += high - start
        if not assign:
            return []
        c.assign(assign)
        msgs: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(msgs) < want and time.monotonic() < deadline:
            got = c.consume(min(1000, want), timeout=0.3)
            msgs += [m for m in got if m.error() is None]
            if not got and msgs:
                break
    finally:
        c.close()
    msgs.sort(key=lambda m: m.timestamp()[1])
    return msgs[-n:]


def recent_dlq(settings: Settings, n: int = 50) -> list[dict[str, Any]]:
    """The last ``n`` dead letters of ``<ns>.dlq``: time, source, component, reason, a value preview."""
    out = []
    for m in _tail(settings, settings.topic("dlq"), n):
        h = H.as_dict(m.headers())
        value = (m.value() or b"")[:200].decode("utf-8", "replace")
        out.append({"ts": m.timestamp()[1], "partition": m.partition(), "offset": m.offset(),
                    "component": h.get(H.COMPONENT, ""), "source": h.get(H.SOURCE, ""),
                    "reason": h.get(H.REASON, ""), "value": value})
    out.reverse()
    return out


def recent_control(settings: Settings, n: int = 50) -> list[dict[str, Any]]:
    """The last ``n`` control messages (retrain commands, alerts), newest first."""
    out = []
    for m in _tail(settings, settings.topic("control"), n):
        try:
            obj = orjson.loads(m.value() or b"null")
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            obj.setdefault("at", m.timestamp()[1])
            obj.pop("details", None)
            out.append(obj)
    out.reverse()
    return out


class DashboardState:
    """Everything the dashboard shows, refreshed by one background thread."""

    def __init__(self, settings: Settings, *, refresh: float = 1.0, keep: int = 720,
                 since_ms: int | None = None) -> None:
        self.settings = settings
        self.refresh = refresh
        self.history = MetricsHistory(settings, keep=keep, since_ms=since_ms)
        self.catalog: dict[str, list[dict[str, Any]]] = {}
        self.lag: list[dict[str, Any]] = []
        self.dlq: list[dict[str, Any]] = []
        self.control: list[dict[str, Any]] = []
        self.errors: dict[str, str] = {}
        self.lag_samples: deque[tuple[int, int]] = deque(maxlen=keep)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._slow_at = 0.0
        self.started = time.time()

    def refresh_once(self, slow: bool = True) -> None:
        self.history.poll(timeout=0.2)
        if not slow:
            return
        from streamml.monitor.lag import consumer_lag

        for name, fn in (("catalog", lambda: read_catalog(self.settings)),
                         ("lag", lambda: [r for r in consumer_lag(self.settings, timeout=5.0)
                                          if r["topic"].startswith(self.settings.namespace + ".")]),
                         ("dlq", lambda: recent_dlq(self.settings)),
                         ("control", lambda: recent_control(self.settings))):
            try:
                setattr(self, name, fn())
                self.errors.pop(name, None)
                if name == "lag":
                    self.lag_samples.append((int(time.time() * 1000), sum(int(r["lag"]) for r in self.lag)))
            except Exception as exc:  # one failing source must not blank the page
                self.errors[name] = str(exc)[:200]

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            slow = now >= self._slow_at
            if slow:
                self._slow_at = now + max(2.0, self.refresh * 2)
            try:
                self.refresh_once(slow)
            except Exception as exc:
                self.errors["refresh"] = str(exc)[:200]
            self._stop.wait(self.refresh)

    @property
    def refreshing(self) -> bool:
        """Whether :meth:`start` has started the refresh thread."""
        return self._thread is not None

    def start(self) -> "DashboardState":
        self._thread = threading.Thread(target=self._run, name="streamml-dashboard", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.history.close()

    # -- views ------------------------------------------------------------------------------
    def latest(self) -> dict[str, dict[str, Any]]:
        """The newest metrics snapshot of every instance (snapshots have ``components``)."""
        return {k: v for k, v in self.history.latest.items() if "components" in v}

    def overview(self) -> dict[str, Any]:
        latest = self.latest()
        comps: dict[str, dict[str, Any]] = {}
        monitors = []
        for inst, snap in sorted(latest.items()):
            for name, c in snap.get("components", {}).items():
                row = comps.setdefault(name, {"component": name, "records": 0, "rate": 0.0, "errors": 0, "dlq": 0,
                                              "p50": None, "p95": None, "p99": None, "instances": 0})
                row["records"] += int(c.get("records", 0))
                row["rate"] = round(row["rate"] + float(c.get("rate", 0.0)), 2)
                row["errors"] += int(c.get("errors", 0))
                row["dlq"] += int(c.get("dlq", 0))
                row["instances"] += 1
                stages = c.get("latency_by_stage") or {}   # the pipeline's own latency first (ingest ->)
                lat: dict[str, Any] = stages.get("ingest") or c.get("latency_ms") or next(iter(stages.values()), {})
                for k in ("p50", "p95", "p99"):
                    if lat.get(k) is not None:
                        row[k] = max(row[k] or 0.0, lat[k])
            if snap.get("monitor"):
                monitors.append({"instance": inst, "ts": snap.get("ts"), **snap["monitor"]})
        lag = self.lag or [r for s in latest.values() for r in s.get("lag", [])]
        serving = [e for e in self.history.events if e.get("kind") == "serve.model"][-20:]
        return {"namespace": self.settings.namespace, "now": int(time.time() * 1000),
                "components": sorted(comps.values(), key=lambda r: r["component"]),
                "latency": headline_latency(c for snap in latest.values() for c in snap.get("components", {}).values()),
                "models": self.catalog, "lag": lag, "lag_total": sum(int(r["lag"]) for r in lag),
                "monitors": monitors, "control": self.control[:30], "swaps": serving[::-1],
                "dlq_count": len(self.dlq), "errors": self.errors, "snapshots": len(self.history.snapshots)}

    def series(self) -> dict[str, Any]:
        """The history's series; lag points no snapshot reported are filled from this process's
        own measurements (the latest one at or before each point)."""
        out = self.history.series()
        samples = list(self.lag_samples)
        if samples and out["ts"]:
            times = np.array([t for t, _ in samples], dtype=np.float64) / 1000.0
            idx = np.searchsorted(times, np.asarray(out["ts"]), side="right") - 1
            out["lag"] = [v if v is not None else (samples[i][1] if i >= 0 else None)
                          for v, i in zip(out["lag"], idx.tolist())]
        return out


def _reexport(state: DashboardState, metrics: Metrics | None = None) -> Any:
    """The namespace's metrics as one collector: counters stay counters, latencies stay histograms.

    Each instance's cumulative figures come from its latest snapshot with ``worker=<instance>``;
    lag is measured here once per partition (the snapshots' copies would repeat it per instance).
    ``metrics``, when given, adds this process's own registry without a ``worker`` label (by
    default it is left out: a process that records metrics publishes snapshots, so it would be
    counted twice).
    """
    from prometheus_client.registry import Collector

    class Reexport(Collector):
        def collect(self) -> Iterator[Any]:
            latest = state.latest()
            sources: list[tuple[dict[str, Any], dict[str, str]]] = [
                (snap, {"worker": inst}) for inst, snap in sorted(latest.items())]
            if metrics is not None:
                sources.append((metrics.state(), {}))
            lag = state.lag or [r for s in latest.values() for r in s.get("lag", [])]
            yield from families(sources, lag=lag)

        def describe(self) -> list[Any]:
            return []

    return Reexport()


def create_app(settings: Settings, *, state: DashboardState | None = None, metrics: Metrics | None = None) -> Any:
    """The FastAPI app (the state's thread is started and stopped with the app).

    ``metrics``: also expose this process's own registry on ``/metrics`` (see :func:`_reexport`).
    """
    from contextlib import asynccontextmanager

    try:
        from fastapi import FastAPI, Response
        from fastapi.responses import FileResponse
        from fastapi.staticfiles import StaticFiles
    except ImportError as exc:
        raise missing(exc, "the dashboard", extra="http") from None
    from prometheus_client import CollectorRegistry, generate_latest

    st = state or DashboardState(settings)
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(_reexport(st, metrics))

    @asynccontextmanager
    async def lifespan(_: Any) -> Any:
        if not st.refreshing:
            st.refresh_once()
            st.start()
        yield
        st.stop()

    app = FastAPI(title="streamml dashboard", lifespan=lifespan, docs_url=None, redoc_url=None)
    static = static_dir()
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.state.dashboard = st

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    def json(obj: Any) -> Response:
        return Response(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    @app.get("/api/series")
    def series() -> Response:
        return json(st.series())

    @app.get("/api/overview")
    def overview() -> Response:
        return json(st.overview())

    @app.get("/api/dlq")
    def dlq() -> Response:
        return json(st.dlq)

    @app.get("/metrics", include_in_schema=False)
    def prom() -> Response:
        return Response(generate_latest(scrape), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(static / "favicon.svg", media_type="image/svg+xml")

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, Any]:
        return {"ok": True, "snapshots": len(st.history.snapshots)}

    return app


class serve:  # noqa: N801 - used like a function that returns a handle
    """Run the dashboard with uvicorn in a background thread: ``with serve(settings, port=0) as d: d.url``."""

    def __init__(self, settings: Settings, *, host: str = "127.0.0.1", port: int = 8050,
                 state: DashboardState | None = None, metrics: Metrics | None = None) -> None:
        import socket

        uvicorn = require("uvicorn", "the dashboard", extra="http")

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.host, self.port = host, port
        self.app = create_app(settings, state=state, metrics=metrics)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=host, port=port, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="streamml-dashboard-http", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not self.server.started:
            from streamml.errors import ConfigError

            raise ConfigError(f"the dashboard could not listen on {host}:{port}",
                              hint="pick another port with --port")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> "serve":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
