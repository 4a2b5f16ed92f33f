"""``streamml status``: the dashboard at a glance, in the terminal.

:func:`gather` reads once what the dashboard polls (recent snapshots on ``<ns>.metrics``,
the models catalog, consumer lag, control messages, dead letters); :func:`render` draws it
with rich.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from streamml.config import Settings

__all__ = ["gather", "render"]


def gather(settings: Settings, *, window_s: float = 900.0) -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-able dict."""
    from streamml.monitor.dashboard import DashboardState

    st = DashboardState(settings, since_ms=int((time.time() - window_s) * 1000))
    try:
        while st.history.poll(timeout=0.5) > 0:
            pass
        st.refresh_once(slow=True)
        out = st.overview()
        series = st.series()
        out["series_points"] = len(series["ts"])
        out["dlq"] = st.dlq[:10]
        return out
    finally:
        st.stop()


def _t(ms: Any) -> str:
    return datetime.fromtimestamp(int(ms) / 1000).strftime("%H:%M:%S") if ms else "-"


def _n(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.{digits}f}"
    return f"{int(v):,}"


def render(data: dict[str, Any], console: Console) -> None:
    """Draw :func:`gather`'s result."""
    parts: list[Any] = []
    models = Table(title="models", title_justify="left", expand=True)
    for col in ("model", "version", "stage", "score", "decision", "trained on"):
        models.add_column(col)
    for versions in (data.get("models") or {}).values():
        for d in versions[:4]:
            metric = (d.get("decision") or {}).get("metric") or next(iter(d.get("metrics") or {}), None)
            score = (d.get("metrics") or {}).get(metric) if metric else None
            dec = d.get("decision") or {}
            decision = "-" if "promoted" not in dec else ("promoted" if dec["promoted"] else "kept champion")
            ranges = ", ".join(f"{r['topic']}[{r['partition']}] {r['start']}..{r['end']}"
                               for r in d.get("training", []))
            stage = (d.get("serving") or [d.get("stage")])[0] or ""
            style = "green" if stage == "production" else ("dim" if stage == "archived" else "yellow")
            models.add_row(str(d.get("name")), f"v{d.get('version')}", Text(stage, style=style),
                           f"{metric} {score:.3f}" if isinstance(score, (int, float)) else "-", decision, ranges or "-")
    if not data.get("models"):
        models.add_row("[dim]no model published[/dim]", "", "", "", "", "")
    parts.append(models)

    comps = Table(title="components (latest snapshot per instance)", title_justify="left", expand=True)
    for col, just in (("component", "left"), ("records", "right"), ("rate/s", "right"), ("p50 ms", "right"),
                      ("p95 ms", "right"), ("p99 ms", "right"), ("errors", "right"), ("dlq", "right")):
        comps.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in data.get("components", []):
        comps.add_row(c["component"], _n(c["records"]), _n(c["rate"]), _n(c["p50"]), _n(c["p95"]), _n(c["p99"]),
                      _n(c["errors"]), _n(c["dlq"]))
    if not data.get("components"):
        comps.add_row("[dim]nothing reported to the metrics topic in the last 15 minutes[/dim]", *[""] * 7)
    parts.append(comps)
    lat = data.get("latency") or {}
    ing, ev = lat.get("ingest") or {}, lat.get("event_lag") or {}
    parts.append(Text(f"latency p95 {_n(ing.get('p95'))} ms (ingest → prediction, the pipeline's own)   "
                      f"event-time lag p95 {_n(ev.get('p95'))} ms (event time → prediction)"))

    for mon in data.get("monitors", []):
        drift = mon.get("drift") or {}
        q = mon.get("quality") or {}
        alerts = mon.get("alerts") or {}
        lines = Text()
        lines.append(f"model {mon.get('model')} @ v{mon.get('version')}   ", style="bold")
        feats = drift.get("features") or {}
        if feats:
            lines.append("drift PSI: ")
            for name, f in sorted(feats.items(), key=lambda kv: -kv[1].get("psi", 0)):
                lines.append(f"{name}={f['psi']:.2f} ", style="red" if f.get("drifted") else "green")
        if q.get("n"):
            lines.append(f"  quality over {q['n']} labelled: precision={_n(q.get('precision'), 3)} "
                         f"recall={_n(q.get('recall'), 3)} auc={_n(q.get('auc'), 3)}")
        lines.append(f"\nactive alerts: {', '.join(alerts.get('active') or []) or 'none'}   "
                     f"retrains asked: {alerts.get('retrains_sent', 0)}")
        parts.append(Panel(lines, title=f"monitor {mon.get('instance')}", title_align="left"))

    lag = Table(title=f"consumer lag (total {data.get('lag_total', 0):,})", title_justify="left", expand=True)
    for col, just in (("group", "left"), ("topic", "left"), ("partition", "right"), ("lag", "right")):
        lag.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in (data.get("lag") or [])[:15]:
        lag.add_row(r["group"], r["topic"], str(r["partition"]), _n(r["lag"]))
    parts.append(lag)

    if data.get("control"):
        ctl = Table(title="alerts and control", title_justify="left", expand=True)
        for col in ("time", "command", "model", "reason"):
            ctl.add_column(col)
        for c in data["control"][:8]:
            ctl.add_row(_t(c.get("at")), str(c.get("command") or c.get("type")), str(c.get("model")),
                        str(c.get("reason", "")))
        parts.append(ctl)
    if data.get("dlq"):
        dl = Table(title="recent dead letters", title_justify="left", expand=True)
        for col in ("time", "component", "reason"):
            dl.add_column(col)
        for d in data["dlq"][:8]:
            dl.add_row(_t(d.get("ts")), d.get("component", ""), Text(d.get("reason", ""), style="yellow"))
        parts.append(dl)
    console.print(Panel(Group(*parts), title=f"streamml status · namespace [bold]{data.get('namespace')}[/bold]",
                        subtitle=datetime.now().strftime("%H:%M:%S")))
