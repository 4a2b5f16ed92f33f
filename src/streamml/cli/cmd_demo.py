"""``streamml demo [SCENARIO]``: a closed loop end to end — ``fraud`` (the default) or ``maintenance``."""

from __future__ import annotations

import typer

from streamml.cli.common import connected, console
from streamml.errors import ConfigError

SCENARIOS = ("fraud", "maintenance")


def register(app: typer.Typer) -> None:
    app.command(name="demo")(demo)


def demo(
    ctx: typer.Context,
    scenario: str = typer.Argument("fraud", metavar="SCENARIO",
                                   help="fraud (the default) or maintenance."),
    minutes: float = typer.Option(3.0, min=0.5, help="How long the scenario runs."),
    port: int = typer.Option(8050, min=0, max=65535, help="Dashboard port on 127.0.0.1."),
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
    name = scenario.strip().lower()
    if name not in SCENARIOS:
        raise ConfigError(f"unknown demo scenario {scenario!r}", hint="use one of: " + ", ".join(SCENARIOS))
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
