"""The closed loop, end to end: card-fraud detection that notices a new fraud pattern and fixes itself.

Everything runs in this process, each part in its own thread, all through Kafka topics:

1. **generate** — card payments with fraud to ``<ns>.raw.transactions``; the truth about each
   payment arrives seconds later on ``<ns>.labels.transactions``;
2. **features** — a stream pipeline adds per-payment flags and per-card sliding-window
   aggregates (``<ns>.features.transactions``);
3. **initial training** — first unsupervised (an IsolationForest, before any label is
   known), then supervised (a random forest) once labels exist; each version goes to the
   registry (``<ns>.models``) and is promoted only if it beats the one in production;
4. **live scoring** — a scorer follows the registry and swaps models without restarting
   (``<ns>.predictions.fraud``);
5. **monitoring** — drift of every feature against the production model's training data,
   live precision/recall from predictions joined with the delayed labels, a dashboard;
6. **the new pattern** — mid-run the generator starts a fraud the models have never seen
   (gift-card cash-outs); drift and quality alerts ask for retraining on ``<ns>.control``;
   the trainer retrains, evaluates against the champion, promotes; the scorer swaps;
7. **report** — precision and recall before and after, throughput and latency, computed
   independently from the predictions and labels topics.

``run(settings, minutes=3)`` is what ``streamml demo`` runs; :class:`Timeline` shortens it
for tests.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from streamml.config import Settings
from streamml.demos import open_dashboard

__all__ = ["run", "Timeline", "FEATURES", "feature_pipeline"]

STREAM = "transactions"
MODEL = "fraud"
FEATURES = ["log_amount", "online", "abroad", "gift", "round_amount", "n_w", "amount_max_w", "amount_mean_w",
            "gift_w", "online_w", "abroad_w", "round_w"]


@dataclass(frozen=True)
class Timeline:
    """When each step happens (seconds from the start) and how much traffic there is."""

    duration: float = 180.0
    rate: float = 300.0               # payments per second (event time follows the wall clock)
    window: str = "30s"               # per-card sliding window
    warmup: float = 35.0              # features before this are not trained on (windows still filling)
    unsupervised_at: float = 45.0
    supervised_at: float = 70.0
    inject_at: float = 90.0
    fraud_rate: float = 0.02
    label_delay_ms: int = 5_000
    quality_window: int = 4000
    quality_min_labels: int = 600
    min_recall: float = 0.8
    psi_threshold: float = 0.1
    confirm: float = 20.0             # a condition must hold this long before retraining is asked for
    cooldown: float = 600.0           # one retraining per episode, and at most one per run of the demo
    seed: int = 7

    @classmethod
    def for_minutes(cls, minutes: float) -> "Timeline":
        """The default scenario stretched to ``minutes`` (at least 3)."""
        total = max(180.0, minutes * 60.0)
        return cls(duration=total, inject_at=max(90.0, round(total * 0.5)))

    @classmethod
    def short(cls) -> "Timeline":
        """The closed loop in about 100 seconds (for the integration test)."""
        return cls(duration=115.0, window="10s", warmup=12.0, unsupervised_at=16.0, supervised_at=30.0,
                   inject_at=40.0, fraud_rate=0.03, quality_window=2000, quality_min_labels=300,
                   min_recall=0.85, confirm=8.0)


def feature_pipeline(window: str = "30s") -> Any:
    """Per-payment flags and per-card sliding-window aggregates (one output row per payment)."""
    from streamml.stream import count, max, mean, sliding, stream, sum

    return (stream(STREAM)
            .with_columns(online=(pl.col("channel") == "online").cast(pl.Int64),
                          abroad=(pl.col("country") != pl.col("card_country")).cast(pl.Int64),
                          gift=(pl.col("merchant_category") == "gift_cards").cast(pl.Int64),
                          round_amount=((pl.col("amount") % 50) == 0).cast(pl.Int64),
                          log_amount=(pl.col("amount") + 1).log())
            .window(key="card_id", size=sliding(window), time="event_time")
            .agg(n_w=count(), amount_max_w=max("log_amount"), amount_mean_w=mean("log_amount"), gift_w=sum("gift"),
                 online_w=sum("online"), abroad_w=sum("abroad"), round_w=sum("round_amount"))
            .to(STREAM))


def _forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    from streamml.train.trainers import SklearnClassifier

    t = SklearnClassifier(RandomForestClassifier(n_estimators=60, max_depth=10, n_jobs=1, class_weight=None))
    t.name = "random-forest"
    return t


def _labelled_job_class() -> type:
    from streamml.train.job import TrainingJob

    @dataclass
    class LabelledJob(TrainingJob):
        """A job whose dataset ends where labels are complete: payments newer than the label
        delay have no label yet and would only be dropped from the held-out window."""

        label_wait_ms: int = 8_000

        def dataset(self, settings: Settings) -> Any:
            from streamml.train.dataset import Dataset

            end = int(time.time() * 1000) - self.label_wait_ms
            return Dataset.from_topics(settings, self.features_topic, labels=self.labels_topic,
                                       features=self.features, seed=self.seed,
                                       **{**self.dataset_options, "end_time_ms": end})

    return LabelledJob


def _LabelledJob(*args: Any, **kw: Any) -> Any:  # noqa: N802 - a deferred class
    return _labelled_job_class()(*args, **kw)


@dataclass
class _Threads:
    items: list[tuple[str, threading.Thread]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)

    def start(self, name: str, fn: Callable[[], Any]) -> None:
        def wrapped() -> None:
            try:
                fn()
            except Exception as exc:  # a failed part is reported, and the demo ends early
                import traceback

                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
                self.tracebacks.append(traceback.format_exc())

        t = threading.Thread(target=wrapped, name=f"demo-{name}", daemon=True)
        t.start()
        self.items.append((name, t))


def run(settings: Settings, minutes: float = 3.0, console: Console | None = None, *, timeline: Timeline | None = None,
        dashboard: bool = True, port: int = 8050) -> dict[str, Any]:
    """Run the scenario on ``settings``' cluster in a fresh namespace; return the final report."""
    from streamml.ingest.generators.run import generate_transactions
    from streamml.kafka.admin import TopicSpec, ensure_topics
    from streamml.monitor.alerts import control_sender
    from streamml.monitor.loop import Monitor, MonitorConfig
    from streamml.registry.registry import Registry
    from streamml.serve import Role, Scorer, ServeOptions, Single
    from streamml.serve.registry_source import RegistrySource
    from streamml.stream import RunOptions, Worker
    from streamml.train.dataset import Dataset
    from streamml.train.job import TRAINING_KIND, Retrainer, request_retrain
    from streamml.train.trainers import IsolationForestTrainer

    tl = timeline or Timeline.for_minutes(minutes)
    console = console or Console()
    if settings.namespace == "streamml":
        settings = settings.with_(namespace=f"fraud-{uuid.uuid4().hex[:6]}")
    ns = settings.namespace
    settings = settings.with_(home=settings.home / "demos" / ns)     # local state of this run only
    raw, feats = settings.topic("raw", STREAM), settings.topic("features", STREAM)
    labels = settings.topic("labels", STREAM)
    preds = settings.topic("predictions", MODEL)
    ensure_topics(settings, [TopicSpec(raw, 3), TopicSpec(feats, 3), TopicSpec(labels, 3), TopicSpec(preds, 3),
                             TopicSpec(settings.topic("control"), 1), TopicSpec(settings.topic("dlq"), 3)])
    registry = Registry(settings)
    t0 = time.time()
    t0_ms = int(t0 * 1000)
    log: list[dict[str, Any]] = []

    def say(msg: str, style: str = "") -> None:
        at = time.time() - t0
        log.append({"t": round(at, 1), "msg": msg})
        console.print(f"[dim]{at:6.1f}s[/dim]  " + (f"[{style}]{msg}[/{style}]" if style else msg), highlight=False)

    def until(at: float, stop: threading.Event) -> bool:
        while time.time() - t0 < at:
            if stop.wait(0.2) or threads.errors:
                return False
        return True

    threads = _Threads()
    stop = threading.Event()
    inject_event = int(tl.inject_at * tl.rate)
    say(f"namespace [bold]{ns}[/bold]: {tl.rate:g} payments/s for {tl.duration:g}s; a new fraud pattern "
        f"from payment #{inject_event:,} (~{tl.inject_at:g}s)")
    threads.start("generator", lambda: generate_transactions(
        settings, stream=STREAM, duration=tl.duration, rate=tl.rate, seed=tl.seed,  # live: event time = wall clock
        fraud_rate=tl.fraud_rate, new_pattern_at=inject_event, new_pattern_share=1.0,
        label_delay_ms=tl.label_delay_ms))
    worker = Worker(feature_pipeline(tl.window), settings, RunOptions(max_batch=5000))
    threads.start("features", worker.run)
    say(f"feature pipeline: {raw} -> {feats} (per-card sliding {tl.window} windows)")
    scorer = Scorer(settings, Single([Role(MODEL)]), RegistrySource(registry=registry),
                    ServeOptions(feats, mode="at-least-once", wait_for_model_s=tl.duration, report_every_s=2.0))
    threads.start("scorer", scorer.run)
    dash = None
    if dashboard:
        dash = open_dashboard(settings, port)
        say(f"dashboard: [link={dash.url}]{dash.url}[/link]", "bold cyan")
    train_from = t0_ms + int(tl.warmup * 1000)
    job = _LabelledJob(MODEL, feats, _forest(), labels_topic=labels, features=FEATURES, seed=tl.seed,
                       dataset_options={"label_field": "is_fraud", "start_time_ms": train_from},
                       split_by="offset", label_wait_ms=int(tl.label_delay_ms * 1.6))
    retrainer = Retrainer(settings, job, registry=registry, control=True,
                          on_result=lambda r: say(
                              f"trained v{r.version} ({r.reason}): roc_auc {r.candidate_score:.3f} vs production "
                              f"{'-' if r.production_score is None else f'{r.production_score:.3f}'} -> "
                              f"{'PROMOTED' if r.promoted else 'kept the champion'}",
                              "green" if r.promoted else "yellow"))
    threads.start("retrainer", lambda: retrainer.run(stop))
    monitor: Monitor | None = None
    report: dict[str, Any] = {"namespace": ns}
    try:
        if until(tl.unsupervised_at, stop):
            ds = Dataset.from_topics(settings, feats, features=FEATURES, seed=tl.seed, start_time_ms=train_from)
            model = IsolationForestTrainer()(ds)
            d = registry.publish(model, name=MODEL, features=FEATURES, stage="production", trainer="isolation-forest",
                                 manifest={"kind": TRAINING_KIND, "trainer": "isolation-forest", "seed": tl.seed,
                                           "train": ds.manifest()},
                                 metrics={"train_rows": len(ds)},
                                 decision={"promoted": True, "reason": "no labels yet"})
            say(f"unsupervised model v{d.version} (IsolationForest on {len(ds):,} payments, no labels) -> production")
        if until(tl.supervised_at, stop):
            request_retrain(settings, MODEL, reason="labels available: supervised training")
            say("labels have arrived: supervised training requested on " + settings.topic("control"))
            deadline = time.time() + 60
            while len(retrainer.results) < 1 and time.time() < deadline and not threads.errors:
                time.sleep(0.2)
            monitor = Monitor(settings, MODEL, features_topic=feats, labels_topic=labels,
                              config=MonitorConfig(drift_window=3000, drift_min_samples=1000,
                                                   psi_threshold=tl.psi_threshold, ks_threshold=None,
                                                   quality_window=tl.quality_window,
                                                   quality_min_labels=tl.quality_min_labels, min_recall=tl.min_recall,
                                                   cooldown=tl.cooldown, retrain_timeout=tl.cooldown,
                                                   confirm=tl.confirm, eval_interval=1.0,
                                                   publish_interval=1.0, start="latest", label_field="is_fraud"),
                              send=control_sender(settings))
            threads.start("monitor", lambda: monitor.run(stop=stop))
            say(f"monitor watching {MODEL}: drift PSI > {tl.psi_threshold:g} or recall < {tl.min_recall:g} "
                f"asks for retraining")
        if until(tl.inject_at, stop):
            say("the new fraud pattern (gift-card cash-outs) starts now", "bold magenta")
        seen = 0
        while until(min(tl.duration, time.time() - t0 + 1.0), stop) and time.time() - t0 < tl.duration:
            if monitor is not None:
                hist = list(monitor.alerter.history)
                for h in hist[seen:]:
                    if h.get("event") == "alert":
                        what = ("RETRAIN requested" if h.get("command") == "retrain"
                                else f"alert ({h.get('suppressed')})")
                        say(f"{what}: {h.get('reason')}", "bold red" if h.get("command") == "retrain" else "yellow")
                    elif h.get("event") == "swap":
                        say(f"scorer and monitor now on v{h.get('version')}", "green")
                seen = len(hist)
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        stop.set()
        worker.stop()
        scorer.stop_event.set()
        for _, t in threads.items:
            t.join(timeout=60)
        retrainer.close()
        if monitor is not None:
            report["monitor"] = monitor.report()["monitor"]
            monitor.close()
        if dash is not None:
            dash.close()
    report.update(_final_report(settings, int((t0 + tl.supervised_at) * 1000), int((t0 + tl.inject_at) * 1000),
                                registry, preds, labels))
    report["errors"] = threads.errors
    report["features_stats"] = dict(worker.stats)
    report["scorer_stats"] = scorer.stats.as_dict()
    report["tracebacks"] = threads.tracebacks
    report["log"] = log
    report["retrains_requested"] = monitor.alerter.retrains_sent if monitor is not None else 0
    report["dashboard"] = dash.url if dash is not None else None
    _print_report(report, console)
    return report


def _read(settings: Settings, topic: str) -> tuple[pl.DataFrame, np.ndarray]:
    """A whole topic (read_committed) as a frame, plus each record's Kafka timestamp."""
    from streamml.train.reader import read_ranges, resolve_ranges

    frames, ts = [], []
    for b in read_ranges(settings, resolve_ranges(settings, [topic]), with_timestamps=True, headers="none"):
        if b.values:
            frames.append(pl.read_ndjson(io.BytesIO(b"\n".join(b.values)), infer_schema_length=None))
            ts.append(np.asarray(b.timestamps, dtype=np.int64))
    if not frames:
        return pl.DataFrame(), np.empty(0, dtype=np.int64)
    return pl.concat(frames, how="diagonal_relaxed"), np.concatenate(ts)


def _final_report(settings: Settings, steady_ms: int, inject_ms: int, registry: Any, preds_topic: str,
                  labels_topic: str) -> dict[str, Any]:
    """Precision and recall per model version before and after the new pattern; throughput and
    latency once scoring runs steadily (from ``steady_ms`` on, after the first model's backlog)."""
    from streamml.monitor.quality import classification_report

    preds, ts = _read(settings, preds_topic)
    labels, _ = _read(settings, labels_topic)
    out: dict[str, Any] = {"predictions": preds.height, "labels": labels.height}
    versions = [{"version": d.version, "stage": d.stage, "trainer": d.trainer,
                 "reason": (d.decision or {}).get("reason"), "promoted": (d.decision or {}).get("promoted"),
                 "auc": d.metrics.get("roc_auc")} for d in registry.list(MODEL)]
    out["versions"] = versions
    if preds.height == 0:
        return out
    et = preds.get_column("event_time").cast(pl.Int64).to_numpy()
    steady = et >= steady_ms
    if steady.sum() < 10:
        steady = np.ones_like(steady)
    span = max((ts[steady].max() - ts[steady].min()) / 1000.0, 1e-9)
    lat = (ts - et)[steady]
    out["throughput"] = round(int(steady.sum()) / span, 1)
    out["latency_ms"] = {q: round(float(np.percentile(lat, p)), 1) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}
    raw, raw_ts = _read(settings, settings.topic("raw", STREAM))
    if raw.height:
        ingest = pl.DataFrame({"event_id": raw.get_column("event_id"), "ingest_ts": raw_ts})
        pi = pl.DataFrame({"event_id": preds.get_column("event_id"), "pred_ts": ts}).filter(pl.Series(steady))
        d = pi.join(ingest, on="event_id").select(pl.col("pred_ts") - pl.col("ingest_ts")).to_series().to_numpy()
        if d.size:
            out["pipeline_latency_ms"] = {q: round(float(np.percentile(d, p)), 1)
                                          for q, p in (("p50", 50), ("p95", 95), ("p99", 99))}
    if labels.height == 0:
        return out
    lab = labels.select(pl.col("event_id"), pl.col("is_fraud").alias("y"), pl.col("pattern")).unique("event_id")
    j = preds.select("event_id", "score", pl.col("model_version").cast(pl.Int64), "event_time").join(lab, on="event_id")
    rows = []
    for phase, cond in (("before", pl.col("event_time") < inject_ms), ("after", pl.col("event_time") >= inject_ms)):
        part = j.filter(cond)
        for v in sorted(part.get_column("model_version").unique().to_list()):
            pv = part.filter(pl.col("model_version") == v)
            r = classification_report(pv.get_column("y").to_numpy(), pv.get_column("score").to_numpy())
            cash = pv.filter(pl.col("pattern") == "gift_card_cashout")
            share = (cash.get_column("score") >= 0.5).mean()
            r["cashout_recall"] = round(float(share), 3) if cash.height and isinstance(share, (int, float)) else None
            rows.append({"phase": phase, "version": v, **r})
    out["quality"] = rows
    return out


def _print_report(rep: dict[str, Any], console: Console) -> None:
    t = Table(title="precision and recall per model version, before and after the new fraud pattern "
                    "(predictions joined with labels, threshold 0.5)")
    for col in ("phase", "version", "payments", "fraud", "precision", "recall", "ROC AUC", "new-pattern recall"):
        t.add_column(col, justify="left" if col == "phase" else "right")
    for r in rep.get("quality", []):
        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        t.add_row(r["phase"], f"v{r['version']}", f"{r['n']:,}", f"{r['positives']:,}", f(r["precision"]),
                  f(r["recall"]), f(r["auc"]), f(r["cashout_recall"]))
    console.print(t)
    v = Table(title="model versions")
    for col in ("version", "stage", "trainer", "ROC AUC (holdout)", "why"):
        v.add_column(col)
    for d in rep.get("versions", []):
        v.add_row(f"v{d['version']}", str(d["stage"]), str(d["trainer"]),
                  "-" if d["auc"] is None else f"{d['auc']:.3f}", str(d["reason"] or ""))
    console.print(v)
    lat, pipe = rep.get("latency_ms", {}), rep.get("pipeline_latency_ms", {})
    console.print(f"throughput {rep.get('throughput', 0):,} predictions/s; latency ingested -> prediction "
                  f"p50 {pipe.get('p50', '-')} ms, p95 {pipe.get('p95', '-')} ms, p99 {pipe.get('p99', '-')} ms "
                  f"(event time -> prediction p50 {lat.get('p50', '-')} ms, p95 {lat.get('p95', '-')} ms); "
                  f"retrains requested by the monitor: {rep.get('retrains_requested', 0)}")
    for e in rep.get("errors", []):
        console.print(f"[red]error[/red] {e}")
