"""What every command shares: settings from the global options, the console, and errors."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from streamml.config import Settings

__all__ = ["console", "err_console", "settings", "connected"]

console = Console()
err_console = Console(stderr=True)


def settings(ctx: typer.Context) -> Settings:
    """The settings built from global options (``streamml --bootstrap-servers ... CMD``)."""
    obj: Any = ctx.find_root().obj
    if isinstance(obj, Settings):
        return obj
    return Settings.load()


def connected(ctx: typer.Context) -> Settings:
    """Settings with bootstrap servers: the configured cluster, or the local one started on demand."""
    from streamml.kafka.local import ensure_local

    s = settings(ctx)
    if not s.bootstrap_servers:
        err_console.print("[dim]no bootstrap servers configured: using the local cluster (streamml kafka up)[/dim]")
    return ensure_local(s)
