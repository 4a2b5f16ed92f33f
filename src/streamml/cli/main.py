"""The root command: global options, sub-command discovery, and error reporting."""

from __future__ import annotations

import faulthandler
import importlib
import logging
import os
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
from streamml.cli.deprecated import translate
from streamml.cli.options import LogLevel, parse_properties
from streamml.cli.sections import command_defaults
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


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"streamml {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    bootstrap_servers: Optional[str] = typer.Option(
        None, "--bootstrap-servers", "-b", metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers (default: the local cluster, started on demand)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-N", help="Topic namespace [streamml]."),
    config: Optional[Path] = typer.Option(None, "--config", help="A streamml.toml settings file."),
    properties: Optional[list[str]] = typer.Option(
        None, "-X", metavar="KEY=VALUE",
        help="A librdkafka property for every Kafka client, as in kcat (repeatable; wins over the config file)."),
    log_level: Optional[LogLevel] = typer.Option(None, "--log-level", case_sensitive=False,
                                                 envvar="STREAMML_LOG_LEVEL", help="Log level of streamml's logs."),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Settings precedence: these flags > STREAMML_* environment > config file > defaults."""
    if bootstrap_servers is not None and not bootstrap_servers.strip():
        raise ConfigError("--bootstrap-servers is empty",
                          hint="give HOST:PORT[,HOST:PORT...], or leave the flag out to use the local cluster")
    kafka = parse_properties(properties)
    if log_level is not None:
        level = getattr(logging, log_level.value.upper())
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger().setLevel(level)
        os.environ["STREAMML_LOG_LEVEL"] = log_level.value  # worker processes inherit it
    ctx.obj = Settings.load(overrides={"bootstrap_servers": bootstrap_servers, "namespace": namespace,
                                       "kafka": kafka or None},
                            config_file=config if config else True,
                            sources={"bootstrap_servers": "--bootstrap-servers", "namespace": "--namespace"})
    if ctx.obj.config_file is not None and ctx.obj.config_file.sections:
        # the file's [command] sections become option defaults of every command (a flag still wins)
        ctx.default_map = command_defaults(ctx.command, ctx.obj.config_file)


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
        args = translate(sys.argv[1:] if argv is None else argv, typer.main.get_command(app))
        rv = app(args=args, standalone_mode=False)
    except click.NoArgsIsHelpError as exc:  # help for a bare group, as click shows it
        exc.show()
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "streamml"
        # typer checks values with pydantic, whose messages start with "Value error, "
        print_error(exc.format_message().replace("Value error, ", ""), hint=f"see '{where} --help'")
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
