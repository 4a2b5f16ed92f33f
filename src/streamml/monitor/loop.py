"""The monitor loop: watch one model's inputs, outputs and labels; alert; ask for retraining.

:class:`Monitor` reads, batch by batch, as an at-least-once member of its group on the shared
runtime (:mod:`streamml.runtime`):

* ``<ns>.models`` — the model's descriptors: the production version and its training
  reference (``metrics.reference``, ``manifest.reference`` or ``reference``);
* the features topic the model scores — feature drift against that reference;
* ``<ns>.predictions.<model>`` — prediction drift (the ``score`` column), throughput, the
  pipeline's latency (component ``pipeline.<model>``, stage ``ingest``: record time minus the
  ``sm.ingest_time`` header, ingest -> prediction, what the pipeline controls), the event-time
  lag (stage ``e2e``: record time minus ``sm.event_time``, which also counts how late events
  reach ingest), and the predictions the quality tracker waits to join;
* ``<ns>.labels.<stream>`` — delayed ground truth, joined by ``event_id``.

Every ``eval_interval`` seconds it scores drift and quality, feeds the verdicts to an
:class:`~streamml.monitor.alerts.Alerter` (one retrain per episode, sent to
``<ns>.control``), refreshes consumer lag, and publishes a snapshot to ``<ns>.metrics``.
When a new version of the model is promoted, the reference, the windows and the episodes
start over.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import orjson
import polars as pl

from streamml import headers as H
from streamml.config import Settings
from streamml.kafka.message import topic_of
from streamml.monitor.alerts import Alerter, control_sender
from streamml.monitor.drift import DriftDetector, DriftReport, Reference
from streamml.monitor.metrics import Metrics, get_metrics
from streamml.monitor.quality import QualityTracker
from streamml.monitor.reference import CatalogWatcher, reference_for
from streamml.runtime import Loop, LoopOptions, Processor, instance_id

__all__ = ["Monitor", "MonitorConfig"]


@dataclass(frozen=True)
class MonitorConfig:
    """Thresholds and windows of a :class:`Monitor` (small parameter object)."""

    drift_window: int = 3000
    drift_min_samples: int = 500
    psi_threshold: float = 0.2
    ks_threshold: float | None = 0.3
    prediction_psi_threshold: float = 0.25
    quality_window: int = 2000
    quality_min_labels: int = 200
    min_precision: float | None = None
    min_recall: float | None = 0.5
    min_auc: float | None = None
    max_error: float | None = None
    task: str = "classification"
    threshold: float = 0.5
    label_field: str = "label"
    cooldown: float = 300.0
    retrain_timeout: float = 600.0
    confirm: float = 0.0
    eval_interval: float = 2.0
    lag_interval: float = 5.0
    publish_interval: float = 5.0
    start: str = "earliest"
    drift_features: tuple[str, ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def prediction_latencies(msgs: list[Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per prediction record, ms: (record time - ``sm.ingest_time``, record time - ``sm.event_time``),
    each ``None`` when no record carries that header.

    >>> class M:
    ...     def __init__(self, ts, hdrs): self.ts, self.hdrs = ts, hdrs
    ...     def timestamp(self): return (1, self.ts)
    ...     def headers(self): return self.hdrs
    >>> ingest, event = prediction_latencies([M(9_200, [("sm.event_time", b"1000"), ("sm.ingest_time", b"9000")]),
    ...                                       M(9_300, [("sm.event_time", b"1100")])])
    >>> ingest.tolist(), event.tolist()
    ([200.0], [8200.0, 8200.0])
    """
    ing: list[tuple[int, bytes]] = []
    ev: list[tuple[int, bytes]] = []
    for m in msgs:
        ts = m.timestamp()[1]
        for k, v in m.headers() or ():
            if k == H.EVENT_TIME:
                ev.append((ts, v))
            elif k == H.INGEST_TIME:
                ing.append((ts, v))

    def diff(pairs: list[tuple[int, bytes]]) -> np.ndarray | None:
        if not pairs:
            return None
        arr = np.array([(t, float(v)) for t, v in pairs], dtype=np.float64)
        return arr[:, 0] - arr[:, 1]

    return diff(ing), diff(ev)


class Monitor:
    """Drift, quality, lag and alerts for one model (see the module doc).

    Parameters
    ----------
    settings:
        Where the topics are.
    model:
        The model's name (its predictions topic is ``<ns>.predictions.<model>``).
    features_topic, labels_topic:
        Topics to read features and labels from (``None``: not monitored).
    reference:
        A training reference to use until (or instead of) the one in the descriptor.
    send:
        Where retrain commands go (default: ``<ns>.control``).
    """

    def __init__(self, settings: Settings, model: str, *, features_topic: str | None = None,
                 labels_topic: str | None = None, predictions_topic: str | None = None,
                 reference: Reference | Mapping[str, Any] | pl.DataFrame | None = None,
                 config: MonitorConfig | None = None, metrics: Metrics | None = None,
                 send: Callable[[dict[str, Any]], None] | None = None, publish: bool = True,
                 group: str | None = None) -> None:
        from streamml.kafka.admin import TopicSpec, ensure_topics

        self.settings = settings
        self.model = model
        self.config = cfg = config or MonitorConfig()
        self.metrics = metrics or get_metrics()
        self.models_topic = settings.topic("models")
        self.predictions_topic = predictions_topic or settings.topic("predictions", model)
        self.features_topic = features_topic
        self.labels_topic = labels_topic
        ensure_topics(settings, [TopicSpec(self.predictions_topic, 3)]
                      + [TopicSpec(t, 3) for t in (features_topic, labels_topic) if t])
        self.catalog = CatalogWatcher(settings, model)
        self.alerter = Alerter(model, send=send or control_sender(settings), cooldown=cfg.cooldown,
                               retrain_timeout=cfg.retrain_timeout, confirm=cfg.confirm)
        self.version: str | None = None
        ref = Reference.coerce(reference) if reference is not None else None
        self._explicit_ref = ref is not None
        self.drift = self._detector(ref) if ref is not None else None
        self._early: dict[str, list[pl.DataFrame]] = {"features": [], "score": []}  # see _hold
        self.quality = QualityTracker(window=cfg.quality_window, task=cfg.task, threshold=cfg.threshold)
        self.last_drift: DriftReport | None = None
        self.last_quality: dict[str, Any] = {}
        self.quality_before: dict[str, Any] = {}
        self.lag: list[dict[str, Any]] = []
        self.counts = {"features": 0, "predictions": 0, "labels": 0}
        topics = [self.predictions_topic] + [t for t in (features_topic, labels_topic) if t]
        self._next_eval = 0.0
        self._next_lag = 0.0
        self._stop = threading.Event()
        # at-least-once on the shared runtime: offsets are committed as batches are taken in; the
        # windows live in memory, so a restarted monitor starts its windows over. A dynamic member
        # (several monitors of one model share its group's partitions).
        self.loop: Loop[None] = Loop(
            settings, _MonitorProcessor(self), topics=topics,
            group=group or f"{settings.namespace}.monitor.{model}", name=f"monitor.{model}", stop_event=self._stop,
            options=LoopOptions(guarantee="at-least-once", instance=instance_id(os.getpid()),
                                static_membership=False, max_batch=5000, idle_wait_s=0.5, commit_interval_s=2.0,
                                consumer={"auto_offset_reset": cfg.start}))
        self.publisher = None
        if publish:
            from streamml.monitor.publish import SnapshotPublisher

            self.publisher = SnapshotPublisher(settings, self.metrics,
                                               instance=f"monitor.{model}-{uuid.uuid4().hex[:4]}",
                                               interval=cfg.publish_interval, extra=self.report)

    def _detector(self, ref: Reference) -> DriftDetector:
        cfg = self.config
        if cfg.drift_features is not None:
            ref = Reference({k: v for k, v in ref.features.items() if k in cfg.drift_features or k == "score"},
                            ref.rows, ref.model, ref.version)
        return DriftDetector(ref, window=cfg.drift_window, min_samples=cfg.drift_min_samples,
                             psi_threshold=cfg.psi_threshold, ks_threshold=cfg.ks_threshold)

    # -- one step -----------------------------------------------------------------------------
    def step(self) -> int:
        """One turn of the runtime loop: poll one batch, update everything, evaluate when due.
        Returns records read."""
        self.loop.start()
        return self.loop.turn()

    def tick(self) -> None:
        """Between batches: follow the model's production version, evaluate and refresh lag when due."""
        desc = self.catalog.poll(0.0)
        if desc is not None:
            self._on_production(desc)
        now = time.monotonic()
        if now >= self._next_eval:
            self._next_eval = now + self.config.eval_interval
            self.evaluate()
        if now >= self._next_lag:
            self._next_lag = now + self.config.lag_interval
            self.refresh_lag()

    def take(self, msgs: list[Any]) -> None:
        """One batch of features, predictions and labels (any mix)."""
        by_topic: dict[str, list[Any]] = {}
        for m in msgs:
            by_topic.setdefault(topic_of(m), []).append(m)
        if self.features_topic and self.features_topic in by_topic:
            self._on_features(by_topic[self.features_topic])
        if self.predictions_topic in by_topic:
            self._on_predictions(by_topic[self.predictions_topic])
        if self.labels_topic and self.labels_topic in by_topic:
            self._on_labels(by_topic[self.labels_topic])
        if msgs:
            self.metrics.observe_batch(f"monitor.{self.model}", len(msgs))

    def _on_production(self, d: dict[str, Any]) -> None:
        """A new production version: new reference, fresh windows, episodes restart."""
        version = str(d.get("version", ""))
        previous = self.version
        self.version = version
        self.metrics.set_model(f"monitor.{self.model}", self.model, version)
        ref = None if (self._explicit_ref and previous is None) else reference_for(self.settings, d)
        if ref is not None:
            self.drift = self._detector(ref)
            if previous is None:  # what was read before the reference arrived still counts
                held = self._early["features"]
                if "score" in self.drift.reference.features:
                    held = held + self._early["score"]
                for frame in held:
                    self.drift.update(frame)
            for frames in self._early.values():
                frames.clear()
        elif self.drift is not None:
            self.drift.reset()
        if previous is not None:
            self.quality_before = {**self.last_quality, "version": previous}
            self.quality.reset()
            self.alerter.model_changed(version)

    def _decode(self, msgs: list[Any]) -> pl.DataFrame:
        from streamml.schema.batch import decode_json

        values = [m.value() for m in msgs if m.value()]
        try:
            return decode_json(values)
        except Exception:
            rows = []
            for v in values:
                try:
                    rows.append(orjson.loads(v))
                except orjson.JSONDecodeError:
                    continue
            return pl.DataFrame([r for r in rows if isinstance(r, dict)])

    def _on_features(self, msgs: list[Any]) -> None:
        df = self._decode(msgs)
        self.counts["features"] += df.height
        if self.drift is not None and df.height:
            self.drift.update(df)
        elif df.height:
            self._hold("features", df)

    def _hold(self, kind: str, df: pl.DataFrame) -> None:
        """Keep the newest ``drift_window`` rows of each kind read before the production
        model's reference is known (the monitor may start, or read fast, before it arrives)."""
        held = self._early[kind]
        held.append(df)
        rows = 0
        for i in range(len(held) - 1, 0, -1):  # drop the frames older than the newest drift_window rows
            rows += held[i].height
            if rows >= self.config.drift_window:
                del held[:i]
                break

    def _on_predictions(self, msgs: list[Any]) -> None:
        df = self._decode(msgs)
        self.counts["predictions"] += df.height
        ingest, event = prediction_latencies(msgs)
        self.metrics.observe_batch(f"pipeline.{self.model}", len(msgs), event)       # stage e2e
        if ingest is not None:
            self.metrics.observe_latency(f"pipeline.{self.model}", ingest, stage="ingest")
        if df.height == 0 or "score" not in df.columns:
            return
        if "latency_ms" in df.columns:
            self.metrics.observe_batch(f"serve.{self.model}", 0, df.get_column("latency_ms").cast(pl.Float64)
                                       .drop_nulls().to_numpy(), stage="serve")
        scores = df.get_column("score").cast(pl.Float64)
        self.metrics.observe_predictions(self.model, scores.to_numpy())
        if self.drift is not None and "score" in self.drift.reference.features:
            self.drift.update(df.select("score"))
        elif self.drift is None:
            self._hold("score", df.select("score"))
        if "event_id" in df.columns:
            version: Any = None
            for col in ("model_version", "version"):
                if col in df.columns:
                    version = df.get_column(col).cast(pl.String)
                    break
            if version is None:
                hv = [dict(m.headers() or ()).get("sm.model_version", b"") for m in msgs if m.value()]
                version = pl.Series([x.decode() if isinstance(x, bytes) else str(x) for x in hv])
                if len(version) != df.height:
                    version = self.version
            self.quality.add_predictions(df.get_column("event_id"), scores, version=version)

    def _on_labels(self, msgs: list[Any]) -> None:
        df = self._decode(msgs)
        self.counts["labels"] += df.height
        field = self.config.label_field
        if df.height and "event_id" in df.columns and field in df.columns:
            df = df.filter(pl.col(field).is_not_null())
            self.quality.add_labels(df.get_column("event_id"), df.get_column(field).cast(pl.Float64))

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        """Score drift and quality now, and feed the alerter. Returns :meth:`report`."""
        cfg = self.config
        if self.drift is not None:
            rep = self.drift.evaluate()
            self.last_drift = rep
            feat = {k: v for k, v in rep.features.items() if k != "score"}
            if feat:
                drifted = [k for k, v in feat.items() if v.drifted]
                sub = DriftReport({k: feat[k] for k in drifted}, rep.psi_threshold, rep.ks_threshold)
                self.alerter.check("drift", bool(drifted), sub.reason(),
                                   {"features": {k: feat[k].as_dict() for k in drifted}, "version": self.version})
            for name, f in rep.features.items():
                self.metrics.set_gauge("drift_psi", f.psi, model=self.model, feature=name)
                if f.ks is not None:
                    self.metrics.set_gauge("drift_ks", f.ks, model=self.model, feature=name)
            if "score" in rep.features:
                s = rep.features["score"]
                self.alerter.check("prediction_drift", s.psi > cfg.prediction_psi_threshold,
                                   f"psi(score)={s.psi:.2f}>{cfg.prediction_psi_threshold:g}",
                                   {"psi": s.psi, "version": self.version})
        q = self.quality.evaluate(self.version) if self.version else self.quality.evaluate()
        self.last_quality = q
        if q.get("n", 0) >= cfg.quality_min_labels:
            bad = []
            for key, floor in (("precision", cfg.min_precision), ("recall", cfg.min_recall), ("auc", cfg.min_auc)):
                if floor is not None and q.get(key) is not None and q[key] < floor:
                    bad.append(f"{key}={q[key]:.2f}<{floor:g}")
            if cfg.max_error is not None and q.get("rmse") is not None and q["rmse"] > cfg.max_error:
                bad.append(f"rmse={q['rmse']:.3g}>{cfg.max_error:g}")
            details = {k: q.get(k) for k in ("n", "precision", "recall", "auc", "rmse")} | {"version": self.version}
            self.alerter.check("quality", bool(bad), ", ".join(bad), details)
            for key in ("precision", "recall", "auc", "f1", "rmse", "mae"):
                if q.get(key) is not None:
                    self.metrics.set_gauge(f"quality_{key}", q[key], model=self.model)
        return self.report()

    def refresh_lag(self) -> list[dict[str, Any]]:
        """Consumer lag of every group reading this namespace's topics."""
        from streamml.monitor.lag import consumer_lag

        try:
            rows = consumer_lag(self.settings, timeout=5.0)
        except Exception:
            return self.lag
        prefix = self.settings.namespace + "."
        self.lag = [r for r in rows if r["topic"].startswith(prefix)]
        self.metrics.replace_lag(self.lag)
        return self.lag

    def report(self) -> dict[str, Any]:
        """What the monitor knows now (published with every metrics snapshot)."""
        return {"monitor": {
            "model": self.model, "version": self.version,
            "drift": self.last_drift.as_dict() if self.last_drift else None,
            "quality": {k: v for k, v in self.last_quality.items() if k != "by_version"},
            "quality_by_version": self.last_quality.get("by_version", {}),
            "quality_before": {k: v for k, v in self.quality_before.items() if k != "by_version"},
            "alerts": self.alerter.state(), "counts": dict(self.counts),
            "models": self.catalog.lineage()[:20],
        }}

    # -- running ----------------------------------------------------------------------------------
    def run(self, duration: float | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
        """Run until ``duration`` seconds pass, ``stop`` is set, or :meth:`stop` is called."""
        stop = stop or self._stop
        if self.publisher is not None:
            self.publisher.start()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            self.loop.start()
            while not stop.is_set() and not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.loop.turn()
        finally:
            if self.publisher is not None:
                self.publisher.stop()
        return self.report()

    def start(self) -> threading.Thread:
        """Run in a background thread (stop with :meth:`stop`)."""
        t = threading.Thread(target=self.run, name=f"streamml-monitor-{self.model}", daemon=True)
        t.start()
        self._thread = t
        return t

    def stop(self) -> None:
        self._stop.set()
        t = getattr(self, "_thread", None)
        if t is not None:
            t.join(timeout=30)

    def close(self) -> None:
        self.stop()
        try:
            self.loop.close()
        finally:
            self.catalog.close()


class _MonitorProcessor(Processor[None]):
    """The monitor, as the runtime calls it."""

    def __init__(self, monitor: Monitor) -> None:
        self.m = monitor

    def tick(self) -> None:
        self.m.tick()

    def process(self, messages: list[Any], producer: Any) -> None:
        self.m.take(messages)
