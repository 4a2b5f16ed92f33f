"""The ``streamml`` command tree. Each ``cmd_*.py`` module beside this one adds its commands."""

from streamml.cli.main import app, main

__all__ = ["app", "main"]
