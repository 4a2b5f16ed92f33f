"""``streamml demo``: the closed-loop fraud-detection scenario, end to end."""

from __future__ import annotations

import typer

from streamml.cli.common import connected, console


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)


def demo(
    ctx: typer.Context,
    minutes: float = typer.Option(3.0, min=0.5, help="How long the scenario runs."),
    port: int = typer.Option(8050, min=0, max=65535, help="Dashboard port on 127.0.0.1."),
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="Do not serve the dashboard."),
    quick: bool = typer.Option(False, "--quick", help="Only the smallest path: events in, read back, summary."),
) -> None:
    """Card payments with fraud → ingestion → features → training → models topic → live scoring →
    monitoring; a new fraud pattern mid-run triggers drift/quality alerts, retraining, promotion
    and a hot swap; a final report compares precision and recall before and after."""
    settings = connected(ctx)
    if quick:
        from streamml.demos.quickstart import run as quick_run

        summary = quick_run(settings, console=console)
        if summary["read back"] != summary["produced"]:
            raise typer.Exit(1)
        return
    from streamml.demos.fraud import run

    run(settings, minutes=minutes, console=console, dashboard=not no_dashboard, port=port)
