"""``streamml demo``: the main end-to-end scenario."""

from __future__ import annotations

import typer

from streamml.cli.common import connected, console


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)


def demo(ctx: typer.Context, events: int = typer.Option(10_000, help="How many events to generate.")) -> None:
    """Run the end-to-end demo on the configured cluster (or the local one)."""
    from streamml.demos.quickstart import run

    summary = run(connected(ctx), events=events, console=console)
    if summary["read back"] != summary["produced"]:
        raise typer.Exit(1)
