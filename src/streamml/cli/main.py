"""The root command: global options, sub-command discovery, and error reporting."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Optional

import typer

from streamml._version import __version__
from streamml.cli.common import err_console
from streamml.config import Settings
from streamml.errors import StreamMLError

__all__ = ["app", "main"]

app = typer.Typer(
    name="streamml",
    help="Continuous machine learning on Apache Kafka: ingest, preprocess, train, serve, monitor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    ctx: typer.Context,
    bootstrap_servers: Optional[str] = typer.Option(
        None, "--bootstrap-servers", "-b", help="Kafka bootstrap servers (default: the local cluster)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Topic namespace."),
    config: Optional[Path] = typer.Option(None, "--config", help="A streamml.toml settings file."),
) -> None:
    """Settings precedence: these flags > STREAMML_* environment > config file > defaults."""
    ctx.obj = Settings.load(overrides={"bootstrap_servers": bootstrap_servers, "namespace": namespace},
                            config_file=config if config else True)


@app.command()
def version() -> None:
    """Print the streamml version."""
    typer.echo(__version__)


def _discover() -> None:
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"streamml.cli.{info.name}")
            module.register(app)


_discover()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a StreamMLError becomes a one-line message (and hint) with exit code 1."""
    try:
        app(args=argv)  # standalone: click reports usage errors itself and exits
    except StreamMLError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc.message}", highlight=False, markup=True)
        if exc.hint:
            err_console.print(f"[yellow]hint:[/yellow] {exc.hint}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
