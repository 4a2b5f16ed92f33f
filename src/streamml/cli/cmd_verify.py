"""``streamml verify``: check inputs against outputs with an independent read_committed reader."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.table import Table

from streamml.cli.common import connected, console
from streamml.cli.options import Format, format_option
from streamml.errors import VerificationError


def register(app: typer.Typer) -> None:
    app.command(name="verify")(verify_cmd)


def verify_cmd(
    ctx: typer.Context,
    input: List[str] = typer.Option(..., "--input", "-i", help="Input topic(s)."),
    output: List[str] = typer.Option(..., "--output", "-o", help="Output topic(s)."),
    fmt: Format = format_option(),
    timeout: float = typer.Option(120.0, min=0, help="Seconds to read each topic to its end."),
    settle: float = typer.Option(60.0, min=0, help="Seconds to wait for open transactions to end (a killed "
                                 "producer's is aborted by the broker after its transaction timeout) before reading."),
    id_field: Optional[str] = typer.Option(None, help="JSON field that identifies a record (default: the "
                                                      "sm.event_id header, else event_id)."),
) -> None:
    """Report lost, duplicated and reordered records and open transactions; exit 3 if any."""
    from streamml.verify import Record, event_id_of, verify

    def by_field(r: Record) -> str:
        value = r.json()
        return str(value.get(id_field)) if isinstance(value, dict) else event_id_of(r)

    id_of = by_field if id_field else event_id_of

    report = verify(connected(ctx), input, output, id_of=id_of, timeout=timeout, settle_s=settle)
    if fmt is Format.json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        table = Table(title="verification (read_committed)")
        table.add_column("check")
        table.add_column("count", justify="right")
        for name, n in [("input records", report.inputs), ("output records", report.outputs),
                        ("unique outputs", report.unique_outputs), ("lost", len(report.lost)),
                        ("duplicated", len(report.duplicated)), ("unexpected", len(report.unexpected)),
                        ("reordered", report.reordered), ("open transactions", len(report.open_transactions))]:
            bad = name in ("lost", "duplicated", "unexpected", "reordered", "open transactions") and n
            table.add_row(name, f"[red]{n}[/red]" if bad else str(n))
        console.print(table)
        console.print("[green]OK[/green]" if report.ok else "[red]FAILED[/red]: " + report.summary())
    if not report.ok:
        raise VerificationError(f"verification failed: {report.summary()}",
                                hint="the table above (or --format json) counts each finding")
