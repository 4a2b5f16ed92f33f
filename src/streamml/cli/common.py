"""What every command shares: settings from the global options, the console, and errors."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from streamml.config import Settings

__all__ = ["console", "err_console", "print_error", "settings", "connected"]

console = Console()
err_console = Console(stderr=True)


def print_error(message: str, *, hint: str | None = None) -> None:
    """The CLI's one way to report an error: ``error: MESSAGE`` on one line, then ``hint: HINT``.

    The message and hint are user-facing text that may quote paths, topics or values:
    they are printed literally (never as rich markup) and not wrapped. (A message with
    several lines, such as a broker's log tail, keeps its further lines below the first.)
    """
    line = Text("error: ", style="bold red")
    line.append(message.strip())
    err_console.print(line, soft_wrap=True, highlight=False)
    if hint:
        line = Text("hint: ", style="yellow")
        line.append(" ".join(hint.split()))
        err_console.print(line, soft_wrap=True, highlight=False)


def settings(ctx: typer.Context) -> Settings:
    """The settings built from global options (``streamml --bootstrap-servers ... CMD``)."""
    obj: Any = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    return Settings.load()


def connected(ctx: typer.Context, *, wait: float | None = None) -> Settings:
    """Settings with bootstrap servers: the configured cluster, or the local one started on demand.

    A configured cluster is checked first, so that a mistake fails in seconds with one clear
    line: the client settings must be valid (a ConfigError naming the option) and one of the
    bootstrap servers must accept a connection within ``wait`` seconds (default
    :data:`~streamml.kafka.probe.PROBE_SECONDS`; a BrokerUnavailableError naming each address).
    """
    from streamml.kafka.clients import admin
    from streamml.kafka.local import ensure_local
    from streamml.kafka.probe import PROBE_SECONDS, check_reachable

    s = settings(ctx)
    if not s.bootstrap_servers:
        err_console.print("no bootstrap servers configured: using the local cluster (streamml kafka up)",
                          style="dim", markup=False, highlight=False)
        return ensure_local(s)
    admin(s)  # librdkafka checks every option when a client is made (a ConfigError, exit 2)
    check_reachable(s.bootstrap_servers, PROBE_SECONDS if wait is None else wait,
                    protocol=str(s.kafka.get("security.protocol", "PLAINTEXT")))
    return s
