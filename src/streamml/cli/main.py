"""The root command: global options, sub-command discovery, and error reporting."""

from __future__ import annotations

import faulthandler
import importlib
import pkgutil
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

# typer 0.29 vendors click: its usage errors are these classes, not the click package's
from typer._click import exceptions as click

from streamml._version import __version__
from streamml.cli.common import print_error
from streamml.config import Settings
from streamml.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ConfigError, StreamMLError

__all__ = ["app", "main"]

app = typer.Typer(
    name="streamml",
    help="Continuous machine learning on Apache Kafka: ingest, preprocess, train, serve, monitor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is shown as written: "[the strategy]" is not markup
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
    if bootstrap_servers is not None and not bootstrap_servers.strip():
        raise ConfigError("--bootstrap-servers is empty",
                          hint="give HOST:PORT[,HOST:PORT...], or leave the flag out to use the local cluster")
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


def _stack_dumps_on_sigusr1() -> None:
    if not hasattr(signal, "SIGUSR1") or sys.__stderr__ is None:
        return
    try:
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    except (OSError, ValueError, RuntimeError):  # no file descriptor behind stderr
        pass


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with its code (the codes are named in :mod:`streamml.errors`).

    A usage mistake (click's) or a StreamMLError becomes one ``error:`` line, plus a
    ``hint:`` line when there is one, never a traceback: exit 2 for usage and configuration
    errors, 1 for runtime failures. ``kill -USR1 <pid>`` prints every thread's stack to stderr
    (a running scorer or worker keeps running): what to send a process that seems stuck.
    """
    _stack_dumps_on_sigusr1()
    try:
        rv = app(args=argv, standalone_mode=False)
    except click.NoArgsIsHelpError as exc:  # help for a bare group, as click shows it
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "streamml"
        print_error(exc.format_message(), hint=f"see '{where} --help'")
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:  # e.g. a file option that cannot be opened
        print_error(exc.format_message())
        sys.exit(exc.exit_code or EXIT_FAILURE)
    except typer.Abort:
        print_error("aborted")
        sys.exit(EXIT_FAILURE)
    except StreamMLError as exc:
        print_error(exc.message, hint=exc.hint)
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK)


if __name__ == "__main__":  # pragma: no cover
    main()
