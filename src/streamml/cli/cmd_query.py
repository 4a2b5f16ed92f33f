"""``streamml topics | head | tail | sql``: look at topics, query them, follow them, deploy SQL."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import orjson
import typer
from rich.table import Table

from streamml.cli.common import connected, console, err_console
from streamml.cli.options import (
    Format,
    Guarantee,
    TableFormat,
    duration_option,
    format_option,
    from_option,
    guarantee_option,
    host_option,
    idle_option,
    instance_option,
    max_batch_option,
    max_records_option,
    max_restarts_option,
    parse_position,
    port_option,
    stuck_after_option,
    table_format_option,
    worker_index_option,
    workers_option,
)
from streamml.cli.workers import WorkerArgs
from streamml.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["register", "render"]

def register(app: typer.Typer) -> None:
    app.command(name="topics")(topics_cmd)
    app.command(name="head")(head_cmd)
    app.command(name="tail")(tail_cmd)
    app.command(name="sql")(sql_cmd)
    app.command(name="sql-server")(sql_server_cmd)


def _cell(value: Any, width: int = 40) -> str:
    if value is None:
        return "[dim]null[/dim]"
    if isinstance(value, datetime):
        text = value.isoformat(timespec="milliseconds")
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list)):
        text = orjson.dumps(value, default=str).decode()
    else:
        text = str(value)
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.replace("[", r"\[")


def render(df: pl.DataFrame, title: str | None = None, max_rows: int = 50) -> Table:
    """A rich table of (the first ``max_rows`` rows of) ``df``; numbers right-aligned."""
    table = Table(title=title, title_justify="left", header_style="bold", show_lines=False)
    for name, dtype in df.schema.items():
        table.add_column(name, justify="right" if dtype.is_numeric() else "left",
                         style="dim" if name.startswith("_") else None, overflow="fold")
    for row in df.head(max_rows).iter_rows():
        table.add_row(*(_cell(v) for v in row))
    if df.height > max_rows:
        table.caption = f"{max_rows} of {df.height} rows shown (--max-records)"
    return table


def _emit(df: pl.DataFrame, fmt: TableFormat, title: str | None, max_rows: int) -> None:
    if fmt is TableFormat.table:
        console.print(render(df, title, max_rows))
    elif fmt is TableFormat.json:
        for row in df.head(max_rows).iter_rows(named=True):
            sys.stdout.write(orjson.dumps(row, default=str).decode() + "\n")
    else:
        import polars as pl

        sys.stdout.write(df.head(max_rows).with_columns(pl.selectors.temporal().cast(pl.String)).write_csv())
    sys.stdout.flush()


def topics_cmd(ctx: typer.Context,
               all_: bool = typer.Option(False, "--all", "-a", help="Topics of every namespace, not just this one."),
               fmt: TableFormat = table_format_option()) -> None:
    """List the topics: kind, partitions, offsets."""
    from streamml.query import topics

    s = connected(ctx)
    df = topics(settings=s, all_namespaces=all_)
    if df.is_empty():
        err_console.print(f"no topics in namespace {s.namespace!r}" + ("" if all_ else " (try --all)"),
                          markup=False, highlight=False)
        return
    _emit(df, fmt, f"topics ({'all namespaces' if all_ else 'namespace ' + s.namespace})", 10_000)


def head_cmd(ctx: typer.Context, topic: str = typer.Argument(..., help="Topic: full name, kind.name or name."),
             n: int = typer.Option(10, "--max-records", "-n", min=0, help="How many records."),
             last: bool = typer.Option(False, "--last", help="The last records instead of the first."),
             from_: Optional[str] = from_option(None, "Where the records start (default: the beginning)"),
             fmt: TableFormat = table_format_option(),
             no_meta: bool = typer.Option(False, "--no-meta", help="Hide _topic, _partition, ... columns.")) -> None:
    """Show the first (or last) N records of a topic, in time order."""
    from streamml.query import topic as get_topic
    from streamml.query.reader import META_COLUMNS

    position = parse_position(from_) if from_ is not None else None
    if position is not None and position.kind == "end":
        raise ConfigError("head --from end: there are no records after the end",
                          hint="show the last records with --last, or follow new ones with 'streamml tail'")
    t = get_topic(topic, settings=connected(ctx))
    view = t.range(start=position.bound()) if position is not None and position.kind != "beginning" else t
    df = view.last(n) if last else view.head(n)
    if no_meta:
        df = df.drop([c for c in META_COLUMNS if c in df.columns and c != "_offset"])
    _emit(df, fmt, f"{t.name} ({'last' if last else 'first'} {df.height})", n)


def tail_cmd(ctx: typer.Context, topic: str = typer.Argument(..., help="Topic: full name, kind.name or name."),
             where: Optional[str] = typer.Option(None, "--where", help="SQL filter, e.g. \"score > 0.9\"."),
             from_: str = from_option("end"),
             max_records: Optional[int] = max_records_option(),
             duration: Optional[float] = duration_option(),
             idle: Optional[float] = idle_option(),
             fmt: Format = format_option(Format.json)) -> None:
    """Follow a topic live (Ctrl-C stops); JSON is one line per record."""
    from streamml.query import tail

    position = parse_position(from_)
    s = connected(ctx)
    live = tail(topic, where=where, from_=position.bound(),
                max_records=max_records, timeout=duration, idle_timeout=idle, settings=s)
    _follow(live, fmt, f"following {live.topic} from {position}{' where ' + where if where else ''} (Ctrl-C stops)",
            "record(s)")


def _follow(live: Any, fmt: Format | TableFormat, header: str, noun: str) -> None:
    """Print a live ``Tail``'s batches (a table, else JSON lines) until it ends or Ctrl-C."""
    err_console.print(header, style="dim", markup=False, highlight=False)
    try:
        for batch in live.batches():
            if fmt.value == "table":
                console.print(render(batch, max_rows=10_000))
            else:
                for row in batch.iter_rows(named=True):
                    sys.stdout.write(orjson.dumps(row, default=str).decode() + "\n")
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        live.close()
    err_console.print(f"{live.delivered} {noun}", style="dim", markup=False, highlight=False)


def sql_cmd(ctx: typer.Context,
            statement: Optional[str] = typer.Argument(
                None, help="SQL: a SELECT over topics (DuckDB), or ksqlDB statements separated by ';'."),
            file: Optional[Path] = typer.Option(
                None, "--file", "-F", help="Read ksqlDB statements (separated by ';') from this file instead."),
            fmt: TableFormat = table_format_option(),
            max_rows: int = typer.Option(50, "--max-records", "-n", min=0, help="Rows to print."),
            deploy: bool = typer.Option(
                False, "--deploy",
                help="Run the persistent queries (CREATE ... AS SELECT, INSERT INTO), or a SELECT ... EMIT CHANGES, "
                     "as pipelines on the runtime until Ctrl-C."),
            name: Optional[str] = typer.Option(
                None, "--name", help="With --deploy of one query: the pipeline's name (default: from the statement)."),
            to: Optional[str] = typer.Option(None, "--to", help="Output topic of a deployed SELECT ... EMIT CHANGES."),
            workers: int = workers_option(),
            instance: Optional[str] = instance_option(),
            guarantee: Guarantee = guarantee_option(),
            max_batch: int = max_batch_option(),
            idle_exit: Optional[float] = idle_option("With --deploy: stop after this many seconds without a record."),
            stuck_after: float = stuck_after_option(),
            max_restarts: Optional[int] = max_restarts_option(),
            worker_index: Optional[int] = worker_index_option(),
            ) -> None:
    """Run SQL over topics, or ksqlDB statements (--file F); with --deploy, run them as pipelines.

    Without --deploy a SELECT prints its rows, a ksqlDB CREATE ... AS SELECT its preview (the rows
    it would write now). With --deploy every persistent query runs on the runtime, supervised
    and scaled out with --workers N like 'streamml run'; the statements are all checked first.
    """
    import polars as pl

    from streamml import query
    from streamml.cli.sql_deploy import deploy_statements, preview_file
    from streamml.query.ksql import is_ksql
    from streamml.query.ksql_file import check, read_statements

    if (statement is None) == (file is None):
        raise ConfigError("give one STATEMENT or --file FILE" + (", not both" if file is not None else ""),
                          hint="e.g. streamml sql --file features.sql --deploy")
    if not deploy and (name is not None or to is not None):
        raise ConfigError("--name and --to name what --deploy runs", hint="add --deploy")
    if file is not None or (deploy and is_ksql(statement or "")):  # every statement checked before connecting
        check(*read_statements(file) if file is not None else (statement or "", "STATEMENT"))
    s = connected(ctx)
    if deploy:
        args = WorkerArgs(workers=workers, instance=instance, worker_index=worker_index, guarantee=guarantee.value,
                          max_batch=max_batch, stuck_after=stuck_after, idle_exit=idle_exit,
                          max_restarts=max_restarts)
        deploy_statements(s, statement, file, name=name, to=to, args=args)
        return
    if file is not None:
        def show(df: pl.DataFrame, title: str, n: int) -> None:
            if fmt is not TableFormat.table:  # JSON or CSV rows on stdout: which query's, on stderr
                err_console.print(title, markup=False, highlight=False)
            _emit(df, fmt, title, n)

        preview_file(s, file, show, max_rows)
        return
    result = query.sql(statement or "", settings=s)
    if isinstance(result, query.Tail):  # a ksqlDB push query: rows as they come (Ctrl-C stops)
        _follow(result, fmt, f"push query on {result.topic} (Ctrl-C stops)", "row(s)")
    elif isinstance(result, pl.DataFrame):
        _emit(result, fmt, None, max_rows)
    else:  # a declaration (or a compiled query): say what it is
        err_console.print(f"{getattr(result, 'kind', '')} {getattr(result, 'name', '')} declared".strip(),
                          markup=False, highlight=False)


def sql_server_cmd(
    ctx: typer.Context,
    host: str = host_option(),
    port: int = port_option(8088),
    token: Optional[str] = typer.Option(None, "--token", envvar="STREAMML_HTTP_TOKEN",
                                        help="Bearer token clients must send (or STREAMML_HTTP_TOKEN)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve without authentication."),
    init: Optional[str] = typer.Option(None, "--init", help="Statements to run first (CREATE STREAM ...; ...)."),
) -> None:
    """Serve ksqlDB's REST API: POST /ksql (statements) and POST /query (pull and push queries)."""
    from streamml.extras import require
    from streamml.query.ksql_http import create_app
    from streamml.query.ksql_run import run_ksql

    if not token and not no_auth:
        raise ConfigError("no bearer token", hint="pass --token (or set STREAMML_HTTP_TOKEN), or --no-auth")
    s = connected(ctx)
    if init:
        run_ksql(init, s)
    uvicorn = require("uvicorn", "the ksqlDB HTTP endpoints", extra="http")
    err_console.print(f"serving http://{host}:{port}/ksql and /query" + ("" if token else "  authentication off"),
                      markup=False, highlight=False)
    uvicorn.run(create_app(s, token=None if no_auth else token), host=host, port=port, log_level="warning",
                access_log=False)
