"""``streamml models list|show|promote|rollback|diff|watch``: the registry on the models topic."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Any, Optional

import orjson
import typer
from rich.table import Table

from streamml.cli.common import connected, console
from streamml.cli.options import Format, duration_option, format_option

__all__ = ["register"]

models_app = typer.Typer(help="Models as data: the versions, stages and lineage on <ns>.models.",
                         no_args_is_help=True)

class Stage(str, Enum):
    candidate = "candidate"
    shadow = "shadow"
    canary = "canary"
    production = "production"
    archived = "archived"


_STAGE_STYLE = {"production": "bold green", "canary": "yellow", "shadow": "cyan", "candidate": "white",
                "archived": "dim"}


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _registry(ctx: typer.Context) -> Any:
    from streamml.registry import Registry

    return Registry(connected(ctx))


def _when(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _metrics(m: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(m.items()))


@models_app.command("list")
def list_cmd(ctx: typer.Context, name: Optional[str] = typer.Argument(None, help="Only this model.")) -> None:
    """Every version, its stage, format, size, metrics and whether it was promoted."""
    from streamml.registry.descriptor import check_name

    if name is not None:
        check_name(name)
    reg = _registry(ctx)
    rows = reg.list(name)
    table = Table(title=f"models on {reg.topic}", title_justify="left")
    for col in ("model", "version", "stage", "format", "size", "sha256", "metrics", "decision", "created"):
        table.add_column(col, justify="right" if col in ("version", "size") else "left")
    for d in rows:
        dec = d.decision or {}
        verdict = "-" if not dec else ("[green]promoted[/green]" if dec.get("promoted") else "[red]kept out[/red]")
        table.add_row(d.name, str(d.version), f"[{_STAGE_STYLE.get(d.stage, '')}]{d.stage}[/]", d.format,
                      _size(d.size), d.sha256[:12], _metrics(d.metrics), verdict, _when(d.created_at))
    if not rows:
        table.caption = "no models yet (publish one with streamml train or Registry.publish)"
    console.print(table)


@models_app.command("show")
def show_cmd(ctx: typer.Context, ref: str = typer.Argument(..., help="name (production), name@version"),
             fmt: Format = format_option()) -> None:
    """One version: descriptor, schemas, decision, lineage; and the model's stage pointer."""
    from streamml.registry.descriptor import parse_ref

    parse_ref(ref)  # a malformed reference fails before anything connects
    reg = _registry(ctx)
    d = reg.resolve(ref)
    if fmt is Format.json:  # the whole descriptor
        typer.echo(orjson.dumps(d.as_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
        return
    t = Table(title=f"{d.ref}", title_justify="left", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value", overflow="fold")
    art = d.artifact
    where = art.get("uri") or f"{art.get('chunks')} inline chunk(s) on {art.get('topic')}/{art.get('partition')}"
    dec = d.decision or {}
    rows = [("stage", f"[{_STAGE_STYLE.get(d.stage, '')}]{d.stage}[/]"), ("format", d.format), ("task", d.task),
            ("sha256", d.sha256), ("size", _size(d.size)), ("artifact", where), ("created", _when(d.created_at)),
            ("trainer", d.trainer or "-"), ("signed by", d.signer or "[yellow]unsigned[/yellow]"),
            ("inputs", ", ".join(f"{c['name']}:{c.get('type', '')}" for c in d.input_schema)),
            ("outputs", ", ".join(c["name"] for c in d.output_schema)), ("metrics", _metrics(d.metrics))]
    if dec:
        rows.append(("decision", f"{'promoted' if dec.get('promoted') else 'not promoted'}: "
                                 f"{dec.get('metric')} candidate={dec.get('candidate')} vs production"
                                 f"{'@' + str(dec['production_version']) if dec.get('production_version') else ''}="
                                 f"{dec.get('production')} (margin {dec.get('margin')}; {dec.get('reason')})"))
    m = d.manifest or {}
    train = m.get("train") or (m if m.get("kind") == "streamml.dataset/v1" else None)
    if train:
        ranges = "; ".join(f"{r['topic']}/{r['partition']}[{r['start']}:{r['end']})" for r in train["spec"]["ranges"])
        rows += [("trained on", ranges), ("rows / labelled", f"{train.get('rows')} / {train.get('labelled')}"),
                 ("seed", str(train.get("seed"))), ("schema versions", ", ".join(train.get("schema_versions") or [])
                                                    or "-"),
                 ("pipeline hash", str(train.get("pipeline_hash") or "-"))]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    ptr = reg.stages(d.name)
    console.print("stages: " + ", ".join(f"{s}={v if v is not None else '-'}" for s, v in ptr["stages"].items())
                  + f"; production history: {ptr.get('production_history') or '-'}")


@models_app.command("promote")
def promote_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="Model name."),
                version: int = typer.Argument(..., min=1, help="The version to move."),
                stage: Stage = typer.Option(Stage.production, "--stage", case_sensitive=False,
                                            help="The stage it moves to.")) -> None:
    """Move a version to a stage (the version that held it steps down)."""
    from streamml.registry.descriptor import check_name, check_stage

    check_name(name), check_stage(stage.value)
    d = _registry(ctx).promote(name, version, stage.value)
    console.print(f"[green]{d.ref}[/green] is now [bold]{d.stage}[/bold]")


@models_app.command("rollback")
def rollback_cmd(ctx: typer.Context, name: str = typer.Argument(..., help="Model name.")) -> None:
    """Return production to the version that held it before the current one."""
    from streamml.registry.descriptor import check_name

    check_name(name)
    d = _registry(ctx).rollback(name)
    console.print(f"rolled back: [green]{d.ref}[/green] is production again")


@models_app.command("diff")
def diff_cmd(ctx: typer.Context, a: str = typer.Argument(..., help="name@version"),
             b: str = typer.Argument(..., help="name@version")) -> None:
    """What differs between two versions (metrics, stage, hash, schemas, lineage)."""
    from streamml.registry.descriptor import parse_ref

    parse_ref(a), parse_ref(b)
    reg = _registry(ctx)
    da, db = reg.resolve(a), reg.resolve(b)
    changes = reg.diff(da, db)
    t = Table(title=f"{da.ref} vs {db.ref}", title_justify="left")
    t.add_column("field", style="bold")
    t.add_column(da.ref, overflow="fold")
    t.add_column(db.ref, overflow="fold")
    for k, (x, y) in changes.items():
        if k.startswith("manifest.libraries") or k.endswith("created_at"):
            continue
        t.add_row(k, _short(x), _short(y))
    if not changes:
        t.caption = "identical"
    console.print(t)


def _short(v: Any, width: int = 60) -> str:
    text = v if isinstance(v, str) else orjson.dumps(v, default=str).decode()
    return (text if len(text) <= width else text[: width - 1] + "…").replace("[", r"\[")


@models_app.command("watch")
def watch_cmd(ctx: typer.Context, name: Optional[str] = typer.Argument(None, help="Only this model."),
              duration: Optional[float] = duration_option()) -> None:
    """Print changes to the registry as they are committed (Ctrl-C stops)."""
    from streamml.registry.descriptor import check_name

    if name is not None:
        check_name(name)
    reg = _registry(ctx)
    try:
        for ev in reg.watch(name, timeout=duration):
            what = (f"{ev.descriptor.ref} stage={ev.descriptor.stage}" if ev.descriptor else
                    f"{ev.name} stages={(ev.stages or {}).get('stages')}" if ev.stages else f"{ev.name} deleted")
            console.print(f"[dim]{_when(int(dt.datetime.now().timestamp() * 1000))}[/dim] {ev.kind}: {what}")
    except KeyboardInterrupt:
        pass
