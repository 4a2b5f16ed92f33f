"""``streamml monitor``, ``streamml dashboard`` and ``streamml status``.

    streamml monitor --model fraud --features payments --labels payments   # drift, quality, retrain alerts
    streamml dashboard --port 8050                                         # live charts in the browser
    streamml monitor --model fraud --port 9464                             # plus Prometheus /metrics
    streamml status                                                        # the same at a glance
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Optional

import orjson
import typer
from rich.markup import escape as esc

from streamml.cli.common import connected, console, err_console
from streamml.cli.options import Format, duration_option, format_option, host_option, parse_position, port_option
from streamml.errors import ConfigError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor)
    app.command("dashboard")(dashboard)
    app.command("status")(status)


def _topic(settings: object, name: Optional[str], kind: str) -> Optional[str]:
    if not name:
        return None
    from streamml.kafka.names import resolve_topic

    return resolve_topic(name, settings.namespace, kind=kind)  # type: ignore[attr-defined]


def _stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM (when running in the main thread)."""
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    return stop


def monitor(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", help="The model to watch."),
    features: Optional[str] = typer.Option(None, help="Features topic (or stream name) the model scores."),
    labels: Optional[str] = typer.Option(None, help="Labels topic (or stream name) with delayed ground truth."),
    psi: float = typer.Option(0.2, help="PSI above which a feature drifts."),
    ks: Optional[float] = typer.Option(0.3, help="KS statistic above which a feature drifts."),
    window: int = typer.Option(3000, min=1, help="Sliding window (records) for drift."),
    quality_window: int = typer.Option(2000, min=1, help="Sliding window (labelled predictions) for quality."),
    min_recall: Optional[float] = typer.Option(0.5, help="Alert when live recall falls below this."),
    min_precision: Optional[float] = typer.Option(None, help="Alert when live precision falls below this."),
    min_auc: Optional[float] = typer.Option(None, help="Alert when live ROC AUC falls below this."),
    cooldown: float = typer.Option(300.0, min=0, help="Seconds between two retrain requests."),
    duration: Optional[float] = duration_option(),
    port: Optional[int] = port_option(None, "Also serve Prometheus /metrics on this port (0: any free port)."),
    host: str = host_option("Address of the /metrics listener."),
    from_: str = typer.Option("beginning", "--from", metavar="POSITION",
                              help="Where a new monitor group starts: beginning or end."),
    label_field: str = typer.Option("label", help="The label field of the labels topic's records."),
) -> None:
    """Watch a model: feature and prediction drift, live quality, lag; ask for retraining on <ns>.control."""
    from streamml.monitor.loop import Monitor, MonitorConfig
    from streamml.monitor.metrics import get_metrics, serve_metrics
    from streamml.registry.descriptor import check_name

    check_name(model)  # the options are checked before anything connects
    position = parse_position(from_)
    if position.kind not in ("beginning", "end"):
        raise ConfigError(f"--from {from_!r}: a monitor group starts at the beginning or the end",
                          hint="use --from beginning or --from end")
    start = "earliest" if position.kind == "beginning" else "latest"
    settings = connected(ctx)
    cfg = MonitorConfig(drift_window=window, psi_threshold=psi, ks_threshold=ks, quality_window=quality_window,
                        min_recall=min_recall, min_precision=min_precision, min_auc=min_auc, cooldown=cooldown,
                        start=start, label_field=label_field)
    mon = Monitor(settings, model, features_topic=_topic(settings, features, "features"),
                  labels_topic=_topic(settings, labels, "labels"), config=cfg)
    if port is not None:
        _, bound = serve_metrics(get_metrics(), host=host, port=port)
        shown = f"[{host}]" if ":" in host else host
        console.print(f"prometheus metrics on http://{shown}:{bound}/metrics", markup=False, highlight=False)
    stop = _stop_on_signals()
    console.print(f"monitoring [bold]{esc(model)}[/bold] in namespace {esc(settings.namespace)}; alerts go to "
                  f"{esc(settings.topic('control'))}  (Ctrl-C stops)")
    seen = 0
    t = threading.Thread(target=mon.run, kwargs={"duration": duration, "stop": stop}, daemon=True)
    t.start()
    try:
        while t.is_alive():
            t.join(timeout=1.0)
            hist = list(mon.alerter.history)
            for h in hist[seen:]:
                if h.get("event") == "alert":
                    style = "red" if h.get("command") == "retrain" else "yellow"
                    what = "retrain requested" if h.get("command") == "retrain" else f"alert ({h.get('suppressed')})"
                    console.print(f"[{style}]{esc(what)}[/{style}] {esc(str(h.get('reason')))}")
                elif h.get("event") == "swap":
                    console.print(f"[green]now monitoring {esc(model)} v{h.get('version')}[/green]")
                elif h.get("event") == "cleared":
                    console.print(f"[dim]{esc(str(h.get('kind')))} cleared[/dim]")
            seen = len(hist)
    finally:
        stop.set()
        t.join(timeout=30)
        mon.close()
    rep = mon.report()["monitor"]
    console.print(f"read {rep['counts']}; retrains requested: {rep['alerts']['retrains_sent']}")


def dashboard(
    ctx: typer.Context,
    port: int = port_option(8050),
    host: str = host_option(),
    duration: Optional[float] = duration_option(),
) -> None:
    """Serve the web dashboard: live charts, models and lineage, alerts, dead letters."""
    from streamml.monitor.dashboard import serve

    settings = connected(ctx)
    stop = _stop_on_signals()
    with serve(settings, host=host, port=port) as d:
        console.print(f"dashboard for namespace {settings.namespace}: {d.url}  (Ctrl-C stops)",
                      markup=False, highlight=False)
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stop.wait(0.5)


def status(
    ctx: typer.Context,
    fmt: Format = format_option(),
    watch: Optional[float] = typer.Option(None, min=0.1, help="Redraw every N seconds until Ctrl-C."),
    window: float = typer.Option(900.0, min=1, help="How far back (seconds) to read metric snapshots."),
) -> None:
    """Models, components, latency, lag, drift, quality, alerts and dead letters at a glance."""
    from streamml.monitor.status import gather, render

    settings = connected(ctx)
    while True:
        data = gather(settings, window_s=window)
        if fmt is Format.json:
            typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
        else:
            if watch:
                console.clear()
            render(data, console)
        if not watch:
            return
        try:
            time.sleep(watch)
        except KeyboardInterrupt:
            err_console.print("stopped")
            return
