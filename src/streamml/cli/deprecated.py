"""Old option spellings, kept for one release: translated to the new ones before parsing.

The old names are not declared on any command, so they are hidden from ``--help``; each use
prints one ``warning:`` line naming the new spelling. Delete a line of :data:`RENAMES` or
:data:`VALUES` to retire a spelling.

>>> import typer
>>> from typer.main import get_command
>>> app = typer.Typer()
>>> @app.command()
... def tail(topic: str, max_records: int = typer.Option(0, "--max-records", "-n")) -> None: ...
>>> @app.command()
... def other() -> None: ...
>>> old = {("tail",): {"--max": "--max-records"}}
>>> translate(["tail", "t", "--max=3"], get_command(app), warn=lambda old, new: None, renames=old)
['tail', 't', '--max-records=3']
>>> translate(["tail", "t", "--max", "3", "-n", "4"], get_command(app), warn=print, renames=old)
'streamml tail --max' '--max-records'
['tail', 't', '--max-records', '3', '-n', '4']
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Sequence, Union

from streamml.cli.options import warn_deprecated

__all__ = ["RENAMES", "VALUES", "FLAG_VALUES", "translate"]

#: A new spelling: an option name, or (option, value) for an old flag such as ``--json``.
New = Union[str, tuple[str, str]]

_JSON: New = ("--format", "json")

#: command path -> {old option: new spelling}; ``()`` is the root command.
RENAMES: dict[tuple[str, ...], dict[str, New]] = {
    (): {"-n": "-N"},  # -n is the record count everywhere; the namespace is -N
    ("run",): {"--idle-exit": "--idle"},
    ("serve",): {"--mode": "--guarantee", "--http": "--port", "--bind": "--host", "--idle-exit": "--idle"},
    ("head",): {"--start": "--from", "--lines": "--max-records"},
    ("tail",): {"--max": "--max-records", "--timeout": "--duration", "-w": "--where"},
    ("sql",): {"--max-rows": "--max-records", "--idle-exit": "--idle"},
    ("monitor",): {"--start": "--from", "--metrics-port": "--port", "--metrics-host": "--host"},
    ("status",): {"--json": _JSON},
    ("verify",): {"--json": _JSON},
    ("models", "show"): {"--json": _JSON},
    ("models", "promote"): {"-s": "--stage"},
    ("models", "watch"): {"--timeout": "--duration"},
    ("train",): {"-f": "--features", "-t": "--trainer", "-m": "--metric"},
    ("generate", "transactions"): {"--count": "--max-records", "--json": _JSON},
    ("generate", "sensors"): {"--count": "--max-records", "--json": _JSON},
    ("ingest", "file"): {"--json": _JSON},
    ("ingest", "mqtt"): {"--count": "--max-records"},
    ("kafka", "logs"): {"-l": "--lines"},
}

_GUARANTEES = {"exactly_once": "exactly-once", "at_least_once": "at-least-once"}

#: (command path, option) -> {old value: (new option, new value)}
VALUES: dict[tuple[tuple[str, ...], str], dict[str, tuple[str, str]]] = {
    (("run",), "--guarantee"): {k: ("--guarantee", v) for k, v in _GUARANTEES.items()},
    (("serve",), "--guarantee"): {k: ("--guarantee", v) for k, v in _GUARANTEES.items()},
    # the input file format was --format; --format is the output format now
    (("ingest", "file"), "--format"): {v: ("--file-format", v) for v in ("csv", "jsonl", "parquet")},
}


#: (command path, flag) -> the option an old value of the flag goes to: ``sql --deploy NAME``
#: (when --deploy took the pipeline's name) is ``sql --deploy --name NAME``. Only a value that
#: looks like a name (one word, not an option) is taken: a statement has spaces.
FLAG_VALUES: dict[tuple[tuple[str, ...], str], str] = {
    (("sql",), "--deploy"): "--name",
}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _takes_value(command: Any, name: str) -> bool:
    for p in getattr(command, "params", ()):
        if name in (*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ())):
            return not (getattr(p, "is_flag", False) or getattr(p, "count", False))
    return False


def translate(argv: Sequence[str], root: Any, *, warn: Callable[[str, str], None] = warn_deprecated,
              renames: Mapping[tuple[str, ...], Mapping[str, New]] = RENAMES,
              values: Mapping[tuple[tuple[str, ...], str], Mapping[str, tuple[str, str]]] = VALUES,
              flag_values: Mapping[tuple[tuple[str, ...], str], str] = FLAG_VALUES) -> list[str]:
    """``argv`` with old spellings replaced by new ones (one ``warn(old, new)`` each).

    ``root`` is the click command tree: it tells sub-commands from arguments and options that
    take a value from flags. Everything after ``--`` is left alone.
    """
    out: list[str] = []
    command: Any = root
    path: tuple[str, ...] = ()
    i = 0
    args = list(argv)
    while i < len(args):
        tok = args[i]
        i += 1
        if tok == "--":
            out += args[i - 1:]
            break
        if not tok.startswith("-") or tok == "-":
            sub = getattr(command, "commands", {}).get(tok)
            if sub is not None:
                command, path = sub, (*path, tok)
            out.append(tok)
            continue
        if tok.startswith("--"):
            name, eq, value = tok.partition("=")
            attached = value if eq else None
        else:
            name, rest = tok[:2], tok[2:]
            attached = rest or None
        where = " ".join(("streamml", *path))
        new = renames.get(path, {}).get(name)
        if isinstance(new, tuple):  # an old flag that is an option with a value now
            warn(f"'{where} {name}'", f"'{new[0]} {new[1]}'")
            out += list(new)
            continue
        if new is not None:
            warn(f"'{where} {name}'", f"'{new}'")
            name = new
        moved = flag_values.get((path, name))
        if moved is not None and not _takes_value(command, name):
            old_value = attached if attached is not None else (
                args[i] if i < len(args) and _NAME.match(args[i]) else None)
            if old_value is not None:
                i += attached is None
                warn(f"'{where} {name} {old_value}'", f"'{name} {moved} {old_value}'")
                out += [name, moved, old_value]
                continue
        if attached is None and _takes_value(command, name) and i < len(args):
            attached, i = args[i], i + 1
            joined = False
        else:
            joined = attached is not None
        if attached is not None:
            swap = values.get((path, name), {}).get(attached)
            if swap is not None:
                warn(f"'{where} {name} {attached}'", f"'{swap[0]} {swap[1]}'")
                name, attached = swap
        if attached is None:
            out.append(name)
        elif joined:
            out.append(f"{name}={attached}" if name.startswith("--") else name + attached)
        else:
            out += [name, attached]
    return out
