"""``streamml demo [SCENARIO]``: a closed loop end to end — ``fraud`` (the default) or ``maintenance``."""

from __future__ import annotations

from enum import Enum

import typer

from streamml.cli.common import connected, console
from streamml.cli.options import port_option

SCENARIOS = ("fraud", "maintenance")


class Scenario(str, Enum):
    fraud = "fraud"
    maintenance = "maintenance"


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)


def demo(
    ctx: typer.Context,
    scenario: Scenario = typer.Argument(Scenario.fraud, case_sensitive=False, help="Which scenario to run."),
    minutes: float = typer.Option(3.0, min=0.5, help="How long the scenario runs."),
    port: int = port_option(8050, "Dashboard port on 127.0.0.1 (0: any free port)."),
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="Do not serve the dashboard."),
    quick: bool = typer.Option(False, "--quick", help="fraud: only the smallest path (events in, read back, "
                                                      "summary); maintenance: the one-minute version."),
) -> None:
    """fraud: card payments with fraud → ingestion → features → training → models topic → live
    scoring → monitoring; a new fraud pattern mid-run triggers drift/quality alerts, retraining,
    promotion and a hot swap; a final report compares precision and recall before and after.

    maintenance: machine sensors → windowed per-machine features → the last 8 windows per row →
    a 1-D CNN (PyTorch, exported to ONNX) trained on delayed failure labels → models topic → live
    scoring; a final report gives, per machine, the lead time of the first alert before each
    failure, missed failures and false alarms per machine-day."""
    name = scenario.value
    settings = connected(ctx)
    if name == "maintenance":
        from streamml.demos.maintenance import Scenario
        from streamml.demos.maintenance import run as run_maintenance

        rep = run_maintenance(settings, minutes=minutes, console=console, dashboard=not no_dashboard, port=port,
                              scenario=Scenario.short() if quick else None)
        if rep["errors"]:
            raise typer.Exit(1)
        return
    if quick:
        from streamml.demos.quickstart import run as quick_run

        summary = quick_run(settings, console=console)
        if summary["read back"] != summary["produced"]:
            raise typer.Exit(1)
        return
    from streamml.demos.fraud import run

    run(settings, minutes=minutes, console=console, dashboard=not no_dashboard, port=port)
