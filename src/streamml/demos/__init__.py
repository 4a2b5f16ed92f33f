"""End-to-end scenarios run by ``streamml demo``."""

from typing import Any

from streamml.config import Settings


def open_dashboard(settings: Settings, port: int) -> Any:
    """The dashboard on ``port`` of 127.0.0.1, or on any free port when that one is taken."""
    from streamml.errors import ConfigError
    from streamml.monitor.dashboard import serve

    try:
        return serve(settings, port=port)
    except ConfigError:
        return serve(settings, port=0)
