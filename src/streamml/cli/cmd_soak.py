"""``streamml soak --minutes N``: load plus random broker and worker faults, then the verifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from streamml.cli.common import console
from streamml.errors import StreamMLError, VerificationError


def register(app: typer.Typer) -> None:
    app.command(name="soak")(soak_cmd)


def soak_cmd(
    minutes: float = typer.Option(2.0, "--minutes", min=0.05, help="How long the load runs (at least)."),
    faults: int = typer.Option(3, "--faults", min=0, help="Faults injected under load, at least."),
    rate: float = typer.Option(200.0, "--rate", min=1, help="Events per second."),
    seed: int = typer.Option(1, "--seed", help="Seed of the fault schedule."),
    secure: bool = typer.Option(False, "--secure", help="Run the cluster with SASL_SSL and ACLs."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Keep cluster data and logs here."),
    report_file: Optional[Path] = typer.Option(None, "--report", help="Write the report as JSON here."),
) -> None:
    """Run the pipeline on a fresh local 3-node cluster under continuous load while injecting
    random broker kills, worker kills and pauses; exit 3 when the verifier found lost or
    duplicated records, 1 when the run failed otherwise."""
    from streamml.chaos.soak import SoakOptions, show, soak

    options = SoakOptions(minutes=minutes, faults=faults, rate=rate, seed=seed, secure=secure, data_dir=data_dir)
    report = soak(options, console)
    if report_file:
        report_file.write_text(json.dumps(report.as_dict(), indent=2))
    try:
        show(report, console)
    except StreamMLError as exc:
        if any(not stage.get("ok") for stage in report.stages.values()):  # the verifier's findings
            raise VerificationError(exc.message, hint="the table above counts each stage's findings") from None
        raise
