"""Predictive maintenance, end to end: machine sensors in, failure alerts out, lead times reported.

Everything runs in this process, each part in its own thread, all through Kafka topics:

1. **generate** — a fleet of machines reports a reading a minute of event time
   (``<ns>.raw.sensors``); machines degrade before they fail, get repaired and run again.
   The truth about each reading (when the machine fails next) arrives on
   ``<ns>.labels.sensors`` once the label horizon has passed. Event time is simulated
   (days of it in minutes) and lies in the past, so labels always arrive after their events;
2. **windows** — a stream pipeline aggregates each machine's readings in tumbling windows
   (per sensor: mean, std, max) -> ``<ns>.features.sensor_windows``;
3. **history** — a second pipeline turns each closed window into one feature row holding
   the machine's last ``N`` windows (lag columns, oldest first): a sliding window over the
   window stream whose aggregates pick each lag out of its slot -> ``<ns>.features.maintenance``;
4. **labels** — a third pipeline windows the delayed per-reading labels the same way and
   labels each window 1 when the machine fails during it or within ``H`` windows after it
   -> ``<ns>.labels.maintenance`` (joined point-in-time by the Dataset);
5. **training** — once enough history exists, a 1-D CNN over the last ``N`` windows
   (PyTorch, deterministic) is trained on a pinned Dataset, exported to ONNX, published to
   the registry (``<ns>.models``) and promoted to production;
6. **live scoring** — the stream scorer follows the registry and scores every window row
   (``<ns>.predictions.maintenance``); a prediction at or above the model's threshold is an alert;
7. **report** — per machine, over the windows the model never trained on: how far ahead of
   each failure the first alert came (windows and seconds of event time), missed failures,
   and false alarms per machine-day, computed from the predictions and raw labels topics.

``run(settings, minutes=3)`` is what ``streamml demo maintenance`` runs; :meth:`Scenario.short`
shortens it for tests. The dashboard (when served) shows the generic panels (models,
scorer throughput and lag); the maintenance report itself is printed in the terminal.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.table import Table

from streamml.config import Settings
from streamml.demos import open_dashboard

__all__ = ["run", "Scenario", "SENSORS", "STATS", "BASE", "feature_names", "window_pipeline",
           "history_pipeline", "label_pipeline", "failure_report"]

STREAM = "sensors"
WINDOWS = "sensor_windows"
FEATS = "maintenance"
MODEL = "maintenance"
SENSORS = ("temperature", "vibration", "pressure", "rpm")
STATS = ("mean", "std", "max")
BASE = [f"{s}_{a}" for s in SENSORS for a in STATS]      # F features per window
DAY_MS = 86_400_000


def feature_names(history: int) -> list[str]:
    """The model's input columns: ``history`` windows of :data:`BASE`, oldest first (time-major).

    >>> feature_names(2)[:2], feature_names(2)[-1], len(feature_names(8))
    (['temperature_mean_lag1', 'temperature_std_lag1'], 'rpm_max_lag0', 96)
    """
    return [f"{f}_lag{j}" for j in reversed(range(history)) for f in BASE]


@dataclass(frozen=True)
class Scenario:
    """The fleet, the simulated time span, and how fast it plays."""

    machines: int = 20
    days: float = 6.0                 # simulated event time
    seconds: float = 150.0            # wall-clock time the generator takes for it
    interval_ms: int = 60_000         # one reading per machine per minute of event time
    window_ms: int = 600_000          # tumbling windows of 10 minutes
    history: int = 8                  # N: windows per feature row
    horizon: int = 12                 # H: a window is positive when the machine fails within H windows
    mean_life: int = 1800             # readings between failures, on average (30 h)
    degrade_fraction: float = 0.12
    train_at: float = 0.6             # train once this share of the readings is out
    epochs: int = 15
    seed: int = 11

    @classmethod
    def for_minutes(cls, minutes: float) -> "Scenario":
        """The default scenario played in about ``minutes`` (at least 1.5)."""
        seconds = max(60.0, minutes * 60.0 - 30.0)
        return cls(seconds=seconds, days=max(3.0, round(6.0 * seconds / 150.0, 1)))

    @classmethod
    def short(cls) -> "Scenario":
        """About a minute: a smaller fleet over three days (the integration test)."""
        return cls(machines=12, days=3.0, seconds=25.0, epochs=10, train_at=0.62)

    @property
    def readings(self) -> int:
        return int(self.machines * self.days * DAY_MS / self.interval_ms)

    @property
    def rate(self) -> float:
        return self.readings / self.seconds


def window_pipeline(window_ms: int, grace_ms: int) -> Any:
    """Per-machine tumbling windows of the raw readings: mean, std and max of every sensor."""
    from streamml.stream import max, mean, std, stream, tumbling

    fns = {"mean": mean, "std": std, "max": max}
    aggs = {f"{s}_{a}": fns[a](s) for s in SENSORS for a in STATS}
    return (stream(STREAM).window(key="machine_id", size=tumbling(window_ms, grace=grace_ms), time="event_time")
            .agg(**aggs).to(WINDOWS))


def history_pipeline(window_ms: int, history: int) -> Any:
    """One row per closed window with the machine's last ``history`` windows as lag columns.

    Window ``w`` sits in slot ``(w.start / size) mod history``; a sliding window over the last
    ``history`` windows keeps, per slot, that slot's value (``max`` of a column that is null in
    every other slot), and the lags are read back from the slots relative to the newest one.
    A lag older than the machine's history repeats the oldest window seen (``n_windows`` says
    how many were). The row's ``event_id`` is ``<machine>:<window start>``, its ``event_time``
    the window's end.
    """
    from streamml.stream import count, max, sliding, stream

    slot = (pl.col("window_start") // window_ms) % history
    slotted = [pl.when(slot == s).then(pl.col(f)).alias(f"{f}__s{s}") for f in BASE for s in range(history)]
    aggs: dict[str, Any] = {"n_windows": count()}
    aggs.update({f"{f}__h{s}": max(f"{f}__s{s}") for f in BASE for s in range(history)})

    def lags(df: pl.DataFrame) -> pl.DataFrame:
        if df.height == 0:
            return df
        cur = ((df["window_start"].to_numpy() // window_ms) % history).astype(np.int64)
        slots = np.stack([df.select([pl.col(f"{f}__h{s}").cast(pl.Float64) for s in range(history)]).to_numpy()
                          for f in BASE], axis=1)                               # [rows, F, slot]
        idx = (cur[:, None] - np.arange(history)[None, :]) % history           # [rows, lag] -> slot
        lagged = np.take_along_axis(slots, idx[:, None, :], axis=2)            # [rows, F, lag]
        for j in range(1, history):                                             # older than the history
            lagged[:, :, j] = np.where(np.isnan(lagged[:, :, j]), lagged[:, :, j - 1], lagged[:, :, j])
        lagged = np.nan_to_num(lagged, nan=0.0)                                 # std of a single reading
        cols = {f"{f}_lag{j}": lagged[:, i, j] for j in reversed(range(history)) for i, f in enumerate(BASE)}
        meta = df.select(pl.format("{}:{}", pl.col("machine_id"), pl.col("window_start")).alias("event_id"),
                         pl.col("window_end").alias("event_time"), "machine_id", "window_start", "window_end",
                         "n_windows")
        return pl.concat([meta, pl.DataFrame(cols), df.select(pl.col("^__.*$"))], how="horizontal")

    return (stream(f"features.{WINDOWS}").with_columns(*slotted)
            .window(key="machine_id", size=sliding(history * window_ms, grace=window_ms), time="window_start")
            .agg(**aggs).map_batch(lags, name="lag_columns").to(FEATS, key="machine_id"))


def label_pipeline(window_ms: int, grace_ms: int, horizon: int) -> Any:
    """Window labels from the delayed per-reading labels: 1 when the machine fails during the
    window or within ``horizon`` windows after it (the earliest next failure seen in the window)."""
    from streamml.stream import count, min, stream, tumbling

    def label(df: pl.DataFrame) -> pl.DataFrame:
        if df.height == 0:           # a batch that closed no window
            return df
        return df.with_columns(
            pl.format("{}:{}", pl.col("machine_id"), pl.col("window_start")).alias("event_id"),
            pl.col("window_end").alias("event_time"),
            ((pl.col("next_failure") - pl.col("window_end")) < horizon * window_ms).cast(pl.Int64).alias("failure"))

    return (stream(f"labels.{STREAM}")
            .window(key="machine_id", size=tumbling(window_ms, grace=grace_ms), time="event_time")
            .agg(next_failure=min("failed_at"), readings=count()).map_batch(label, name="window_label")
            .named("maintenance_labels").to(f"labels.{FEATS}", key="event_id"))


def _train(settings: Settings, sc: Scenario, registry: Any, say: Any, pinned: Any) -> dict[str, Any]:
    """Pin a dataset of labelled window rows, train the CNN, publish and promote it.

    ``pinned()`` is called right after the dataset is pinned and returns the end of its event
    time (no training row ends later); the report counts only windows after it."""
    from streamml.demos.maintenance_model import SequenceClassifier, best_threshold
    from streamml.monitor.quality import classification_report
    from streamml.train.dataset import Dataset
    from streamml.train.job import TRAINING_KIND

    features = feature_names(sc.history)
    ds = Dataset.from_topics(settings, settings.topic("features", FEATS), labels=settings.topic("labels", FEATS),
                             label_field="failure", features=features, seed=sc.seed)
    cut_ms = int(pinned())
    train, valid = ds.split(by="offset", fractions=(0.8, 0.2))
    X, y = train.to_numpy(np.float32)
    Xv, yv = valid.to_numpy(np.float32)
    if y is None or yv is None or y.sum() < 5 or yv.sum() < 1:
        raise RuntimeError(f"too few failures to train on ({0 if y is None else int(y.sum())} positive windows)")
    t0 = time.time()
    model = SequenceClassifier(sc.history, len(BASE), epochs=sc.epochs, seed=ds.seed).fit(X, y)
    sv = model.predict_proba(Xv)
    threshold = best_threshold(yv, sv)
    rep = classification_report(yv, sv, threshold)
    d = registry.publish(model, name=MODEL, features=features, stage="production", trainer="cnn-1d",
                         tags={"threshold": threshold, "history": sc.history, "window_ms": sc.window_ms},
                         manifest={"kind": TRAINING_KIND, "trainer": "cnn-1d", "seed": ds.seed,
                                   "train": train.manifest(), "validation": valid.manifest()},
                         metrics={"train_rows": int(len(y)), "train_positives": int(y.sum()),
                                  "roc_auc": rep["auc"], "precision": rep["precision"], "recall": rep["recall"],
                                  "f1": rep["f1"], "threshold": threshold},
                         decision={"promoted": True, "reason": "first model"})
    say(f"trained v{d.version} (1-D CNN over {sc.history} windows x {len(BASE)} features, {len(y):,} rows, "
        f"{int(y.sum())} pre-failure windows, {time.time() - t0:.1f}s): validation ROC AUC "
        f"{rep['auc'] if rep['auc'] is None else round(rep['auc'], 3)}, recall {rep['recall']:.2f}, "
        f"precision {rep['precision']:.2f} at threshold {threshold:g} -> production", "green")
    return {"version": d.version, "threshold": threshold, "cut_ms": cut_ms, "validation": rep,
            "train_rows": int(len(y)), "losses": [round(v, 4) for v in model.losses_]}


def run(settings: Settings, minutes: float = 3.0, console: Console | None = None, *,
        scenario: Scenario | None = None, dashboard: bool = True, port: int = 8050) -> dict[str, Any]:
    """Run the scenario on ``settings``' cluster in a fresh namespace; return the final report."""
    from streamml.demos.fraud import _Threads
    from streamml.ingest.generators.run import run_generator
    from streamml.ingest.generators.sensors import sensors
    from streamml.kafka.admin import TopicSpec, ensure_topics
    from streamml.registry.registry import Registry
    from streamml.serve import Role, Scorer, ServeOptions, Single
    from streamml.serve.registry_source import RegistrySource
    from streamml.stream import RunOptions, Worker

    sc = scenario or Scenario.for_minutes(minutes)
    console = console or Console()
    if settings.namespace == "streamml":
        settings = settings.with_(namespace=f"maint-{uuid.uuid4().hex[:6]}")
    ns = settings.namespace
    settings = settings.with_(home=settings.home / "demos" / ns)
    raw_labels = settings.topic("labels", STREAM)
    preds = settings.topic("predictions", MODEL)
    feats = settings.topic("features", FEATS)
    # the raw labels are keyed by reading; one partition keeps each machine's labels in one
    # partition for the label windows (the generator asks for at least one)
    ensure_topics(settings, [TopicSpec(settings.topic("raw", STREAM), 3), TopicSpec(raw_labels, 1),
                             TopicSpec(settings.topic("features", WINDOWS), 3), TopicSpec(feats, 3),
                             TopicSpec(settings.topic("labels", FEATS), 3), TopicSpec(preds, 3),
                             TopicSpec(settings.topic("dlq"), 1)])
    registry = Registry(settings)
    t0 = time.time()
    # event time: ``days`` ending a little before now, aligned to the windows
    start_ms = (int(t0 * 1000) - int(sc.days * DAY_MS) - 2 * sc.horizon * sc.window_ms) // sc.window_ms * sc.window_ms
    log: list[dict[str, Any]] = []

    def say(msg: str, style: str = "") -> None:
        at = time.time() - t0
        log.append({"t": round(at, 1), "msg": msg})
        console.print(f"[dim]{at:6.1f}s[/dim]  " + (f"[{style}]{msg}[/{style}]" if style else msg), highlight=False)

    threads = _Threads()
    progress = {"events": 0}
    say(f"namespace [bold]{ns}[/bold]: {sc.machines} machines, {sc.days:g} days of readings (one a minute) "
        f"in {sc.seconds:g}s ({sc.rate:,.0f} readings/s)")
    grace = sc.interval_ms
    workers = {"windows": Worker(window_pipeline(sc.window_ms, grace), settings, RunOptions(max_batch=5000)),
               "history": Worker(history_pipeline(sc.window_ms, sc.history), settings, RunOptions(max_batch=5000)),
               "labels": Worker(label_pipeline(sc.window_ms, grace, sc.horizon), settings,
                                RunOptions(max_batch=5000))}
    for name, w in workers.items():
        threads.start(name, w.run)
    say(f"pipelines: {settings.topic('raw', STREAM)} -> {WINDOWS} ({sc.window_ms // 60000}-minute windows: "
        f"mean/std/max of {', '.join(SENSORS)}) -> {FEATS} (last {sc.history} windows per row); "
        f"{raw_labels} -> {settings.topic('labels', FEATS)} (failure within {sc.horizon} windows)")
    events = sensors(sc.seed, start_ms=start_ms, machines=sc.machines, interval_ms=sc.interval_ms,
                     mean_life=sc.mean_life, degrade_fraction=sc.degrade_fraction,
                     horizon_ms=sc.horizon * sc.window_ms)
    threads.start("generator", lambda: run_generator(
        settings, events, STREAM, component="demo.maintenance", label_field="failure", rate=sc.rate,
        count=sc.readings, partitions=1, on_progress=lambda n: progress.__setitem__("events", n)))
    scorer = Scorer(settings, Single([Role(MODEL)]), RegistrySource(registry=registry),
                    ServeOptions(feats, keep=("machine_id", "window_start"), wait_for_model_s=sc.seconds + 60,
                                 report_every_s=2.0))
    threads.start("scorer", scorer.run)
    dash = None
    if dashboard:
        dash = open_dashboard(settings, port)
        say(f"dashboard: [link={dash.url}]{dash.url}[/link] (models and scoring; the maintenance report "
            f"is printed here)", "bold cyan")
    report: dict[str, Any] = {"namespace": ns, "scenario": sc.__dict__.copy()}
    cut_ms = None
    try:
        while progress["events"] < sc.train_at * sc.readings and not threads.errors:
            time.sleep(0.2)
        if not threads.errors:
            n = progress["events"]
            say(f"{n:,} readings ({n / sc.machines * sc.interval_ms / DAY_MS:.1f} days of history) are in: "
                f"training")
            # readings produced since the last progress report are at most a window's worth
            report["training"] = _train(settings, sc, registry, say, lambda: start_ms + sc.window_ms + (
                progress["events"] // sc.machines + 1) * sc.interval_ms)
            cut_ms = report["training"]["cut_ms"]
        gen = next(t for name, t in threads.items if name == "generator")
        while gen.is_alive() and not threads.errors:
            gen.join(0.5)
        if not threads.errors:
            say("all readings are out; waiting for the pipelines and the scorer to finish the stream")
            _drain(workers, scorer, threads, timeout=60.0)
    except KeyboardInterrupt:
        say("interrupted")
    finally:
        for w in workers.values():
            w.stop()
        scorer.stop_event.set()
        for _, t in threads.items:
            t.join(timeout=60)
        if dash is not None:
            dash.close()
    if cut_ms is not None and "training" in report:
        report.update(failure_report(settings, sc, cut_ms))
    report["errors"] = threads.errors
    report["tracebacks"] = threads.tracebacks
    report["pipelines"] = {name: dict(w.stats) for name, w in workers.items()}
    report["scorer_stats"] = scorer.stats.as_dict()
    report["versions"] = [{"version": d.version, "stage": d.stage, "trainer": d.trainer,
                           "auc": d.metrics.get("roc_auc"), "threshold": (d.tags or {}).get("threshold")}
                          for d in registry.list(MODEL)]
    report["log"] = log
    report["dashboard"] = dash.url if dash is not None else None
    report["seconds"] = round(time.time() - t0, 1)
    _print_report(report, console)
    return report


def _drain(workers: dict[str, Any], scorer: Any, threads: Any, timeout: float) -> None:
    """Wait until every window row has been scored and nothing moved for a while."""
    deadline = time.time() + timeout
    last: tuple[int, ...] = ()
    still = 0.0
    while time.time() < deadline and not threads.errors:
        now = (*(w.stats["in"] for w in workers.values()), scorer.stats.scored + scorer.stats.rejected)
        done = now[-1] >= workers["history"].stats["out"]
        still = still + 0.5 if now == last else 0.0
        if done and still >= 2.0:
            return
        last = now
        time.sleep(0.5)


def _failures(raw_labels: pl.DataFrame) -> pl.DataFrame:
    """``machine_id, failed_at`` of every failure that happened while readings were generated
    (a machine's next-failure time that a later reading of the same machine has passed)."""
    last = raw_labels.group_by("machine_id").agg(pl.col("event_time").max().alias("last_reading"))
    return (raw_labels.select("machine_id", "failed_at").unique().join(last, on="machine_id")
            .filter(pl.col("failed_at") <= pl.col("last_reading")).select("machine_id", "failed_at")
            .sort("machine_id", "failed_at"))


def failure_report(settings: Settings, sc: Scenario, cut_ms: int) -> dict[str, Any]:
    """Lead times, missed failures and false alarms per machine, from the topics.

    A window *precedes* a failure at ``f`` when ``start < f < end + H windows`` (the machine
    fails during the window or within ``H`` windows after it: the window label's rule). An
    alert is a prediction whose ``label`` is 1 (score at or above the model's threshold).
    A failure is *caught ahead* when a window that ended at or before it raised an alert;
    the lead time runs from the end of the first such window to the failure; otherwise it
    is *missed*. An alert on a window that precedes no failure is a false alarm.

    Only what the model never trained on counts: windows ending after ``cut_ms`` (the end
    of the training data) and failures whose whole horizon lies after it; false alarms and
    machine-days count the windows whose horizon ended before the last reading (so that
    every failure they could precede is known).
    """
    from streamml.demos.fraud import _read

    w, hz = sc.window_ms, sc.horizon * sc.window_ms
    preds, _ = _read(settings, settings.topic("predictions", MODEL))
    raw_labels, _ = _read(settings, settings.topic("labels", STREAM))
    out: dict[str, Any] = {"cut_ms": cut_ms, "predictions": preds.height}
    if preds.height == 0 or raw_labels.height == 0:
        return out
    end_ms = int(raw_labels["event_time"].to_numpy().max())
    p = (preds.unique("event_id", keep="last")
         .select("machine_id", pl.col("window_start").cast(pl.Int64), pl.col("event_time").cast(pl.Int64)
                 .alias("window_end"), pl.col("label").cast(pl.Int64).alias("alert"), "score")
         .filter(pl.col("window_end") > cut_ms))
    every = _failures(raw_labels)
    fails = every.filter((pl.col("failed_at") - hz >= cut_ms) & (pl.col("failed_at") <= end_ms))

    def preceding(failures: pl.DataFrame) -> pl.DataFrame:
        return p.join(failures, on="machine_id", how="inner").filter(
            (pl.col("window_start") < pl.col("failed_at")) & (pl.col("failed_at") < pl.col("window_end") + hz))

    ahead = (preceding(fails).filter((pl.col("alert") == 1) & (pl.col("window_end") <= pl.col("failed_at")))
             .group_by("machine_id", "failed_at").agg(pl.col("window_end").min().alias("first_alert")))
    per_fail = (fails.join(ahead, on=["machine_id", "failed_at"], how="left")
                .with_columns((pl.col("failed_at") - pl.col("first_alert")).alias("lead_ms")))
    judged = p.filter(pl.col("window_end") + hz <= end_ms)
    false_alarms = judged.filter(pl.col("alert") == 1).join(
        preceding(every).select("machine_id", "window_start").unique(), on=["machine_id", "window_start"],
        how="anti")
    rows = []
    for m in sorted(p["machine_id"].unique().to_list()):
        pm = per_fail.filter(pl.col("machine_id") == m)
        leads = [int(v) for v in pm.sort("failed_at")["lead_ms"].drop_nulls().to_list()]
        windows = judged.filter(pl.col("machine_id") == m).height
        fa = false_alarms.filter(pl.col("machine_id") == m).height
        days = windows * w / DAY_MS
        rows.append({"machine": m, "failures": pm.height, "caught": len(leads), "missed": pm.height - len(leads),
                     "lead_windows": [round(v / w, 1) for v in leads], "lead_s": [v // 1000 for v in leads],
                     "windows": windows, "machine_days": round(days, 3), "false_alarms": fa,
                     "false_alarms_per_machine_day": round(fa / days, 2) if days else None})
    all_leads = [v for r in rows for v in r["lead_windows"]]
    days = judged.height * w / DAY_MS
    total = {"failures": fails.height, "caught": sum(r["caught"] for r in rows),
             "missed": sum(r["missed"] for r in rows), "false_alarms": false_alarms.height,
             "alerts": int(p["alert"].sum()), "windows": p.height, "judged_windows": judged.height,
             "machine_days": round(days, 3),
             "false_alarms_per_machine_day": round(false_alarms.height / days, 2) if days else None,
             "median_lead_windows": float(np.median(all_leads)) if all_leads else None,
             "min_lead_windows": min(all_leads) if all_leads else None,
             "max_lead_windows": max(all_leads) if all_leads else None}
    return {**out, "end_ms": end_ms, "machines": rows, "total": total,
            "failures_detail": per_fail.sort("machine_id", "failed_at").to_dicts()}


def _print_report(rep: dict[str, Any], console: Console) -> None:
    sc = rep["scenario"]
    w_min = sc["window_ms"] // 60000
    t = Table(title=f"failure alerts per machine, on the {rep.get('total', {}).get('machine_days', 0):g} "
                    f"machine-days the model never trained on (windows of {w_min} min; horizon "
                    f"{sc['horizon']} windows)")
    for col in ("machine", "failures", "ahead", "missed", "lead (windows)", "lead (time)", "false alarms",
                "per machine-day"):
        t.add_column(col, justify="left" if col == "machine" else "right", no_wrap=col == "machine")

    def lead_text(vals: list[float], unit: str) -> str:
        return "-" if not vals else " ".join(f"{v:g}{unit}" for v in vals)

    for r in rep.get("machines", []):
        t.add_row(r["machine"], str(r["failures"]), str(r["caught"]), str(r["missed"]),
                  lead_text(r["lead_windows"], ""), lead_text([v / 60 for v in r["lead_s"]], "m"),
                  str(r["false_alarms"]), "-" if r["false_alarms_per_machine_day"] is None
                  else f"{r['false_alarms_per_machine_day']:.2f}")
    tot = rep.get("total")
    if tot:
        med = tot["median_lead_windows"]
        t.add_row("[bold]all[/bold]", str(tot["failures"]), str(tot["caught"]), str(tot["missed"]),
                  "-" if med is None else f"median {med:g}",
                  "-" if med is None else f"median {med * w_min:g}m", str(tot["false_alarms"]),
                  "-" if tot["false_alarms_per_machine_day"] is None else f"{tot['false_alarms_per_machine_day']:.2f}")
    console.print(t)
    tr = rep.get("training") or {}
    if tot:
        console.print(f"model v{tr.get('version')} (threshold {tr.get('threshold')}): {rep['predictions']:,} window "
                      f"predictions, {tot['alerts']:,} alerts on {tot['windows']:,} evaluated windows; "
                      f"{tot['caught']}/{tot['failures']} failures alerted ahead (lead "
                      f"{tot['min_lead_windows']}-{tot['max_lead_windows']} windows), {tot['missed']} missed, "
                      f"{tot['false_alarms_per_machine_day']} false alarms per machine-day; {rep['seconds']}s")
    for e in rep.get("errors", []):
        console.print(f"[red]error[/red] {e}")
