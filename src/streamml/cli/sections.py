"""Per-command sections of the config file, checked and applied as option defaults.

A section is named after a command (``[serve]``, ``[run]``, ``[ingest.file]`` for a sub-command)
and its keys are the command's long option names without ``--`` (dashes or underscores)::

    [serve]
    guarantee = "at-least-once"
    batch-size = 2000

The root command turns the sections into click's ``Context.default_map`` once, so every
command gets its defaults without code of its own; a flag still wins. A key that is not an
option of the command, or a value the option refuses, is one ConfigError naming the key, the
section and ``file:line``. (The ``kafka`` command group has no section: ``[kafka]`` holds
librdkafka options.)

>>> from pathlib import Path
>>> import typer
>>> from typer.main import get_command
>>> from streamml.config_file import ConfigFile
>>> app = typer.Typer()
>>> @app.command()
... def serve(batch_size: int = typer.Option(5000, "--batch-size")) -> None: ...
>>> @app.command()
... def other() -> None: ...
>>> f = ConfigFile.parse(Path("s.toml"), '[serve]\\nbatch-size = 20\\n')
>>> command_defaults(get_command(app), f)
{'serve': {'batch_size': 20}}
>>> bad = ConfigFile.parse(Path("s.toml"), '[serve]\\nbatch = 20\\n')
>>> command_defaults(get_command(app), bad)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.ConfigError: unknown option 'batch' in section [serve] at s.toml:2 (hint: options of ...: batch-size)
"""

from __future__ import annotations

from typing import Any, Mapping

# typer 0.29 vendors click (see cli/main.py) and converts option values itself (TyperOption)
from typer._click import core, exceptions
from typer.core import TyperOption

from streamml.cli.deprecated import RENAMES
from streamml.cli.options import warn_deprecated
from streamml.config_file import ConfigFile
from streamml.errors import ConfigError

__all__ = ["command_defaults"]

def command_defaults(root: core.Command, file: ConfigFile) -> dict[str, Any]:
    """``file``'s command sections as a ``default_map`` for ``root`` (checked against each command)."""
    return _defaults(root, file.sections, (), file)


def _subcommands(cmd: core.Command) -> Mapping[str, core.Command]:
    return getattr(cmd, "commands", None) or {}


def _long_names(cmd: core.Command) -> dict[str, TyperOption]:
    """Every long option name of ``cmd`` (``batch_size`` for ``--batch-size``) -> its option."""
    out: dict[str, TyperOption] = {}
    for param in cmd.params:
        if isinstance(param, TyperOption) and not param.hidden:
            for opt in param.opts:
                if opt.startswith("--"):
                    out[opt[2:].replace("-", "_")] = param
    return out


def _defaults(cmd: core.Command, table: Mapping[str, Any], path: tuple[str, ...], file: ConfigFile) -> dict[str, Any]:
    section = "[" + ".".join(path) + "]"
    subs = _subcommands(cmd)
    options = _long_names(cmd) if path else {}
    renames = RENAMES.get(path, {})
    out: dict[str, Any] = {}
    for key, value in table.items():
        where = file.where(*path, key)
        if key in subs and isinstance(value, dict):
            out[key] = _defaults(subs[key], value, (*path, key), file)
            continue
        if not path:
            raise ConfigError(f"unknown section [{key}] in {where}",
                              hint="a section is named after a command: " + ", ".join(
                                  sorted(name for name in subs if name != "kafka")))
        name = key.replace("-", "_")
        old = renames.get("--" + name.replace("_", "-"))
        if name not in options and isinstance(old, str) and old[2:].replace("-", "_") in options:
            warn_deprecated(f"{key} in {section} at {where}", old[2:])
            name = old[2:].replace("-", "_")
        option = options.get(name)
        if option is None:
            names = sorted({opt[2:] for o in options.values() for opt in o.opts if opt.startswith("--")})
            hint = (f"options of 'streamml {' '.join(path)}': " + ", ".join(names) if names
                    else f"'streamml {' '.join(path)}' has no options")
            if subs:
                hint += "; sub-command sections: " + ", ".join(f"[{'.'.join((*path, s))}]" for s in sorted(subs))
            raise ConfigError(f"unknown option {key!r} in section {section} at {where}", hint=hint)
        out[option.name or name] = _checked(cmd, option, key, value, section, where)
    return out


def _checked(cmd: core.Command, option: TyperOption, key: str, value: Any, section: str, where: str) -> Any:
    """``value`` if ``option`` accepts it (converted as typer converts a default), else a ConfigError."""
    if option.multiple and not isinstance(value, list):
        value = [value]
    try:
        option.get_runtime_param().coerce(value, param=option, ctx=core.Context(cmd))
    except (exceptions.UsageError, TypeError, ValueError) as exc:
        reason = exc.message if isinstance(exc, exceptions.UsageError) else str(exc)
        reason = reason.replace("Value error, ", "")  # pydantic's prefix, as in cli/main.py
        raise ConfigError(f"option {key} = {value!r} in section {section} at {where} is not valid: {reason}",
                          hint=f"see 'streamml {section[1:-1].replace('.', ' ')} --help'") from None
    return value
