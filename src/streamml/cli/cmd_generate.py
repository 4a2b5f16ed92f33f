"""``streamml generate transactions|sensors``: synthetic streams with delayed ground-truth labels."""

from __future__ import annotations

import json
from typing import Any, Optional

import typer
from rich.table import Table

from streamml.cli.common import connected, console
from streamml.cli.options import Format, duration_option, format_option, max_records_option
from streamml.errors import ConfigError

generate_app = typer.Typer(help="Generate synthetic event streams with labels.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(generate_app, name="generate")


def _check(count: Optional[int], duration: Optional[float], rate: Optional[float]) -> None:
    if count is None and duration is None:
        raise ConfigError("give --max-records or --duration (or both)",
                          hint="e.g. --max-records 10000 or --duration 60")
    if count is not None and count < 1:
        raise ConfigError(f"--max-records must be at least 1, got {count}")
    if rate is not None and rate <= 0:
        raise ConfigError("--rate must be positive")
    if duration is not None and duration <= 0:
        raise ConfigError("--duration must be positive")


def _print(report: Any, positive_name: str, fmt: Format) -> None:
    if fmt is Format.json:
        typer.echo(json.dumps(report.as_dict()))
        return
    table = Table(title=f"generated {report.stream}")
    for col in ("events", "labels", positive_name, "seconds"):
        table.add_column(col, justify="right")
    table.add_row(f"{report.events:,}", f"{report.labels:,}", f"{report.positives:,}", f"{report.seconds:.1f}")
    console.print(table)
    console.print(f"events: {report.topic}   labels: {report.labels_topic}", highlight=False)
    console.print(report.clock_note, highlight=False)


@generate_app.command("transactions")
def transactions_cmd(
    ctx: typer.Context,
    stream: str = typer.Option("transactions", "--stream", "-s", help="Stream name: events go to <ns>.raw.<stream>."),
    count: Optional[int] = max_records_option("Stop after this many events."),
    duration: Optional[float] = duration_option("Stop after this many seconds."),
    rate: Optional[float] = typer.Option(
        None, "--rate", help="Events per second, live: event time follows the wall clock "
                             "(default: as fast as possible, a synthetic history from now)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed gives the same stream)."),
    fraud_rate: float = typer.Option(0.004, "--fraud-rate", help="Chance a fraud episode starts at an event."),
    new_pattern_at: Optional[int] = typer.Option(None, "--new-pattern-at",
                                                 help="From this event on, inject the new gift_card_cashout pattern."),
    label_delay_ms: int = typer.Option(5000, "--label-delay-ms", help="How long after an event its label arrives."),
    cards: int = typer.Option(2000, "--cards", help="Number of cards."),
    merchants: int = typer.Option(300, "--merchants", help="Number of merchants."),
    fmt: Format = format_option(),
) -> None:
    """Card payments with injected fraud (card testing, high amounts abroad, geo jumps); labels later."""
    from streamml.ingest.generators.run import generate_transactions

    _check(count, duration, rate)
    if not 0 <= fraud_rate <= 1:
        raise ConfigError("--fraud-rate must be between 0 and 1")
    if cards < 1 or merchants < 1 or label_delay_ms < 0:
        raise ConfigError("--cards and --merchants must be at least 1, --label-delay-ms at least 0")
    settings = connected(ctx)
    report = generate_transactions(settings, stream=stream, count=count, duration=duration, rate=rate, seed=seed,
                                   fraud_rate=fraud_rate, new_pattern_at=new_pattern_at,
                                   label_delay_ms=label_delay_ms, n_cards=cards, n_merchants=merchants)
    _print(report, "fraudulent", fmt)


@generate_app.command("sensors")
def sensors_cmd(
    ctx: typer.Context,
    stream: str = typer.Option("sensors", "--stream", "-s", help="Stream name: readings go to <ns>.raw.<stream>."),
    count: Optional[int] = max_records_option("Stop after this many readings."),
    duration: Optional[float] = duration_option("Stop after this many seconds."),
    rate: Optional[float] = typer.Option(
        None, "--rate", help="Readings per second over all machines, live: event time follows the wall "
                             "clock (default: as fast as possible, a synthetic history from now)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed gives the same stream)."),
    machines: int = typer.Option(20, "--machines", help="Number of machines."),
    mean_life: int = typer.Option(2000, "--mean-life", help="Mean readings per machine between failures."),
    fmt: Format = format_option(),
) -> None:
    """Machine sensor readings that degrade before failures; failure labels later."""
    from streamml.ingest.generators.run import generate_sensors

    _check(count, duration, rate)
    if machines < 1 or mean_life < 1:
        raise ConfigError("--machines and --mean-life must be at least 1")
    settings = connected(ctx)
    report = generate_sensors(settings, stream=stream, count=count, duration=duration, rate=rate, seed=seed,
                              machines=machines, mean_life=mean_life)
    _print(report, "pre-failure", fmt)
