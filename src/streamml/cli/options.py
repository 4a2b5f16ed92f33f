"""The CLI's one option vocabulary: each shared idea is spelled, checked and parsed here once.

============================  =======================================  ==========================
idea                          option                                   values
============================  =======================================  ==========================
brokers                       ``-b, --bootstrap-servers``              ``HOST:PORT[,...]``
librdkafka property           ``-X KEY=VALUE`` (repeatable)            any librdkafka property
namespace                     ``-N, --namespace``                      a topic-name part
log level                     ``--log-level``                          :class:`LogLevel`
guarantee                     ``--guarantee``                          :class:`Guarantee`
start position                ``--from``                               kcat's forms, see :func:`parse_position`
stop after N records          ``-n, --max-records``                    N
stop when idle                ``--idle``                               seconds without a record
stop after a time             ``--duration``                           seconds
listen address                ``--host`` / ``--port``                  127.0.0.1 by default
output format                 ``-f, --format``                         :class:`Format` (``csv`` for tables)
worker processes              ``-w, --workers``                        N, supervised
member name                   ``--instance``                           stable per host and worker
statements from a file        ``-F, --file``                           a path (``sql``)
============================  =======================================  ==========================

The option factories below (``max_records_option()``...) give every command the same names,
short flags, checks and help text. Old spellings are translated in :mod:`streamml.cli.deprecated`.

>>> parse_position("beginning"), parse_position("-10"), parse_position("@1767225600000")
(Position(kind='beginning', value=None), Position(kind='offset', value=-10), Position(kind='time', value=1767225600000))
>>> parse_position("@2026-01-01T00:00:00Z").value
1767225600000
>>> parse_position("soon")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.ConfigError: --from 'soon' is not a start position (hint: use beginning, end, ...)
>>> parse_properties(["linger.ms=5", "client.id=a=b"])
{'linger.ms': '5', 'client.id': 'a=b'}
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Literal, Optional

import typer

from streamml.errors import ConfigError

__all__ = ["Guarantee", "Format", "TableFormat", "LogLevel", "Position", "parse_position", "parse_properties",
           "warn_deprecated", "max_records_option", "idle_option", "duration_option", "host_option",
           "port_option", "format_option", "table_format_option", "guarantee_option", "from_option",
           "workers_option", "instance_option", "max_batch_option", "stuck_after_option", "max_restarts_option",
           "worker_index_option", "POSITION_HELP"]


class Guarantee(str, Enum):
    """Delivery guarantee of a consume -> process -> produce loop."""

    exactly_once = "exactly-once"
    at_least_once = "at-least-once"


class Format(str, Enum):
    """Output format: a human table, or JSON for programs."""

    table = "table"
    json = "json"


class TableFormat(str, Enum):
    """Output format of commands that print rows: also CSV."""

    table = "table"
    json = "json"
    csv = "csv"


class LogLevel(str, Enum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def warn_deprecated(old: str, new: str) -> None:
    """One line on stderr: the old spelling still works for this release, the new one is ``new``."""
    sys.stderr.write(f"warning: {old} is deprecated, use {new} (the old spelling goes in the next release)\n")
    sys.stderr.flush()


# -- start positions (kcat's -o forms) ----------------------------------------------------

POSITION_HELP = ("beginning, end, N (an offset), -N (N before the end of each partition) or @TIME "
                 "(ms since the epoch or ISO-8601, e.g. @2026-01-01T12:00:00Z)")
_OFFSET = re.compile(r"^-?\d+$")


@dataclass(frozen=True)
class Position:
    """Where reading starts: ``beginning``, ``end``, an ``offset`` (negative: before the end), or
    a ``time`` (ms since the epoch: the first record at or after it)."""

    kind: Literal["beginning", "end", "offset", "time"]
    value: Optional[int] = None

    def bound(self) -> Any:
        """The position as a bound of the read layer (:data:`streamml.kafka.read.Bound`, plus
        ``"beginning"`` / ``"end"``)."""
        if self.kind == "time":
            assert self.value is not None
            return datetime.fromtimestamp(self.value / 1000, timezone.utc)
        if self.kind == "offset":
            return self.value
        return self.kind

    def __str__(self) -> str:
        return {"offset": str(self.value), "time": f"@{self.value}"}.get(self.kind, self.kind)


def _millis(text: str, flag: str, original: str) -> int:
    if _OFFSET.match(text):
        return int(text)
    from streamml.kafka.read import as_millis  # the read layer's one parser of ISO times

    try:
        return as_millis(text)
    except ConfigError:
        raise ConfigError(f"{flag} {original!r} is not a start position: {text!r} is not a time",
                          hint="give @ and ms since the epoch or an ISO-8601 time, e.g. @2026-01-01T12:00:00Z",
                          ) from None


def parse_position(text: str, flag: str = "--from") -> Position:
    """Parse a start position given as kcat's ``-o`` does: ``beginning | end | N | -N | @TIME``.

    The older spellings ``earliest`` / ``latest`` and a bare ISO-8601 time still work, with a
    deprecation warning.
    """
    t = text.strip()
    low = t.lower()
    if low in ("beginning", "end"):
        return Position(low)  # type: ignore[arg-type]
    if low in ("earliest", "latest"):
        new = "beginning" if low == "earliest" else "end"
        warn_deprecated(f"{flag} {low}", f"{flag} {new}")
        return Position(new)  # type: ignore[arg-type]
    if _OFFSET.match(t):
        return Position("offset", int(t))
    if t.startswith("@") and len(t) > 1:
        return Position("time", _millis(t[1:], flag, text))
    try:
        datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not a start position", hint=f"use {POSITION_HELP}") from None
    warn_deprecated(f"{flag} {t} (a time without @)", f"{flag} @{t}")
    return Position("time", _millis(t, flag, text))


# -- librdkafka properties ------------------------------------------------------------------

def parse_properties(items: list[str] | None, flag: str = "-X") -> dict[str, str]:
    """kcat's ``-X key=value`` (repeatable) -> ``{key: value}``; a later one wins."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r} is not KEY=VALUE",
                              hint=f"e.g. {flag} linger.ms=5 (any librdkafka property)")
        out[key.strip()] = value
    return out


# -- option factories: one name, short flag, check and help text per idea --------------------

def max_records_option(help: str = "Stop after this many records.") -> Any:
    return typer.Option(None, "--max-records", "-n", min=0, help=help)


def idle_option(help: str = "Stop after this many seconds without a record.") -> Any:
    return typer.Option(None, "--idle", min=0, help=help)


def duration_option(help: str = "Stop after this many seconds (default: run until Ctrl-C).") -> Any:
    return typer.Option(None, "--duration", min=0, help=help)


def host_option(help: str = "Address to listen on.") -> Any:
    return typer.Option("127.0.0.1", "--host", help=help)


def port_option(default: Optional[int], help: str = "Port to listen on (0: any free port).") -> Any:
    return typer.Option(default, "--port", min=0, max=65535, help=help)


def format_option(default: Format = Format.table) -> Any:
    return typer.Option(default, "--format", "-f", case_sensitive=False, help="Output format.")


def table_format_option(default: TableFormat = TableFormat.table) -> Any:
    return typer.Option(default, "--format", "-f", case_sensitive=False, help="Output format.")


def guarantee_option() -> Any:
    return typer.Option(Guarantee.exactly_once, "--guarantee", case_sensitive=False,
                        help="Exactly-once (Kafka transactions) or at-least-once (commits after the writes).")


def from_option(default: Optional[str], help: str = "Where to start reading") -> Any:
    return typer.Option(default, "--from", metavar="POSITION", help=f"{help}: {POSITION_HELP}.")


# -- commands that run pipelines (run, sql --deploy): see streamml.cli.workers ---------------

def workers_option() -> Any:
    return typer.Option(1, "--workers", "-w", min=1, help="Worker processes to run (supervised).")


def instance_option() -> Any:
    return typer.Option(
        None, "--instance",
        help="This member's name in the group, stable across restarts and distinct per host "
             "(default: the host name). With --workers N the workers are <instance>-0 .. <instance>-N-1.")


def max_batch_option() -> Any:
    return typer.Option(10_000, "--max-batch", min=1, help="Records per micro-batch at most.")


def stuck_after_option() -> Any:
    return typer.Option(50.0, "--stuck-after",
                        help="Restart a worker that makes no progress for this long (seconds; 0: never).")


def max_restarts_option() -> Any:
    return typer.Option(None, "--max-restarts", help="Stop the app when one worker was restarted more often.")


def worker_index_option() -> Any:
    return typer.Option(None, "--worker-index", hidden=True, help="Internal: the index of a supervised worker.")
