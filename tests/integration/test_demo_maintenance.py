"""``streamml demo maintenance``, shortened: sensors -> windows -> lag rows -> CNN -> registry -> scorer -> report."""

from __future__ import annotations

import io
from collections import defaultdict

import polars as pl
from rich.console import Console

from streamml.config import Settings
from streamml.demos.fraud import _read
from streamml.demos.maintenance import FEATS, MODEL, STREAM, Scenario, feature_names, run
from streamml.registry.registry import Registry


def test_maintenance_demo_alerts_ahead_of_failures_and_reports_consistently(settings: Settings) -> None:
    sc = Scenario.short()
    out = io.StringIO()
    rep = run(settings, scenario=sc, console=Console(file=out, width=160), dashboard=False)
    text = out.getvalue()
    assert rep["errors"] == [], (rep["errors"], rep.get("tracebacks"), text)
    w, hz = sc.window_ms, sc.horizon * sc.window_ms

    # one ONNX sequence model, published, promoted and served
    reg = Registry(settings)
    d = reg.latest(MODEL)
    assert d is not None and d.version == rep["training"]["version"] == 1 and d.stage == "production"
    assert d.format == "onnx" and d.task == "classifier" and d.trainer == "cnn-1d"
    assert [c["name"] for c in d.input_schema] == feature_names(sc.history)
    assert float(d.tags["threshold"]) == rep["training"]["threshold"]
    assert rep["scorer_stats"]["versions"] and set(rep["scorer_stats"]["versions"].values()) == {1}

    # every window row of the feature stream was scored, by v1, with the threshold's label
    feats, _ = _read(settings, settings.topic("features", FEATS))
    preds, _ = _read(settings, settings.topic("predictions", MODEL))
    assert feats.height > 1000 and feats["event_id"].n_unique() == feats.height
    assert set(preds["event_id"].to_list()) == set(feats["event_id"].to_list())
    preds = preds.unique("event_id", keep="last")
    assert preds["model_version"].unique().to_list() == [1]
    thr = rep["training"]["threshold"]
    assert ((preds["score"] >= thr).cast(pl.Int64) == preds["label"]).all()

    # at least one failure was alerted ahead of time
    tot = rep["total"]
    assert tot["failures"] >= 3, tot
    assert tot["caught"] >= 1 and tot["min_lead_windows"] > 0, tot
    assert tot["caught"] + tot["missed"] == tot["failures"]
    assert "failures alerted ahead" in text and "per machine-day" in text

    # an independent recount from the topics: failures from the raw labels, alerts from the
    # predictions, false alarms from the window labels topic
    cut = rep["cut_ms"]
    raw, _ = _read(settings, settings.topic("labels", STREAM))
    end = int(raw["event_time"].max())  # type: ignore[arg-type]
    last = dict(raw.group_by("machine_id").agg(pl.col("event_time").max()).iter_rows())
    failures = sorted({(m, f) for m, f in raw.select("machine_id", "failed_at").iter_rows() if f <= last[m]})
    counted = [(m, f) for m, f in failures if f - hz >= cut and f <= end]
    assert len(counted) == tot["failures"]
    windows: dict[str, list[tuple[int, int]]] = defaultdict(list)   # machine -> (window end, alert)
    for m, ws, we, alert in preds.select("machine_id", "window_start", "event_time", "label").iter_rows():
        assert we - ws == w
        if we > cut:
            windows[m].append((we, alert))
    caught: dict[str, list[float]] = defaultdict(list)
    for m, f in counted:
        ends = sorted(we for we, alert in windows[m] if alert and f - hz < we <= f)
        if ends:
            caught[m].append(round((f - ends[0]) / w, 1))
    by_machine = {r["machine"]: r for r in rep["machines"]}
    for m, r in by_machine.items():
        assert r["failures"] == sum(1 for mm, _ in counted if mm == m), m
        assert r["lead_windows"] == caught.get(m, []), (m, r)
    assert sum(len(v) for v in caught.values()) == tot["caught"]
    assert sum(alert for ws in windows.values() for _, alert in ws) == tot["alerts"]

    labels, _ = _read(settings, settings.topic("labels", FEATS))
    truth = dict(labels.select("event_id", "failure").iter_rows())
    judged = preds.filter((pl.col("event_time") > cut) & (pl.col("event_time") + hz <= end))
    assert judged.height == tot["judged_windows"]
    assert all(e in truth for e in judged["event_id"].to_list())   # every judged window has its label
    fa = sum(1 for e, alert in judged.select("event_id", "label").iter_rows() if alert and truth[e] == 0)
    assert fa == tot["false_alarms"], (fa, tot)
    assert tot["false_alarms_per_machine_day"] == round(fa / (judged.height * w / 86_400_000), 2)
    # the model is useful: most failures are alerted ahead, with fewer false alarms than alerts
    assert tot["caught"] >= 0.5 * tot["failures"] and tot["false_alarms"] < tot["alerts"], tot
