"""The config file (``streamml.toml``): its settings, its command sections, and the line of each key.

A file holds settings at the top (or under ``[streamml]``), librdkafka options under ``[kafka]``,
and per-command sections (``[serve]``, ``[ingest.file]`` ...) whose keys are that command's
option names; the command line checks and applies those (:mod:`streamml.cli.sections`).

>>> f = ConfigFile.parse(Path("s.toml"), 'namespace = "shop"\\n\\n[serve]\\nguarantee = "at-least-once"\\n')
>>> f.settings, f.sections
({'namespace': 'shop'}, {'serve': {'guarantee': 'at-least-once'}})
>>> f.where("namespace"), f.where("serve", "guarantee"), f.where("serve")
('s.toml:1', 's.toml:4', 's.toml:3')
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamml.errors import ConfigError

__all__ = ["ConfigFile", "key_line"]

#: tables that are not command sections: settings and librdkafka options
RESERVED_TABLES = ("streamml", "kafka")

_HEADER = re.compile(r"^\s*\[(?!\[)(?P<name>[^\]]+)\]\s*(?:#.*)?$")
_ARRAY_HEADER = re.compile(r"^\s*\[\[")
_KEY_PART = re.compile(r"""\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<bare>[A-Za-z0-9_-]+))\s*""")


def _dotted(text: str) -> tuple[str, ...] | None:
    """A TOML key (``a``, ``"a.b"``, ``a . 'b'``) as its parts, or None if ``text`` is not a key."""
    parts: list[str] = []
    pos = 0
    while True:
        m = _KEY_PART.match(text, pos)
        if m is None or m.end() == pos:
            return None
        parts.append(next(g for g in (m["dq"], m["sq"], m["bare"]) if g is not None))
        pos = m.end()
        if pos == len(text):
            return tuple(parts)
        if text[pos] != ".":
            return None
        pos += 1


def key_line(text: str, table: tuple[str, ...], key: str) -> int | None:
    """The 1-based line where ``key`` of ``table`` is written in TOML ``text``, or None.

    Python's tomllib returns values without positions, and errors must point at the line to
    fix, so the text is scanned here: a table header ``[a.b]`` sets the current table, and a
    line ``k = ...`` (or a dotted ``b.k = ...`` under ``[a]``) names a key of it. A table itself
    is found by its header. Lines inside multi-line strings are not told apart (good enough to
    point at a setting).

    >>> key_line('a = 1\\n[serve]\\n# x\\n"batch-size" = 5\\n', ("serve",), "batch-size")
    4
    >>> key_line('[ingest]\\nfile.rate = 5\\n', ("ingest", "file"), "rate")
    2
    >>> key_line('a = 1\\n', (), "b") is None
    True
    """
    current: tuple[str, ...] | None = ()
    wanted = (*table, key)
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = _dotted(header["name"])
            if current == wanted:
                return number
            continue
        if _ARRAY_HEADER.match(line):
            current = None
            continue
        if current is None or "=" not in line or line.lstrip().startswith("#"):
            continue
        name = _dotted(line.split("=", 1)[0])
        if name is not None and (*current, *name) == wanted:
            return number
    return None


@dataclass(frozen=True)
class ConfigFile:
    """A parsed config file: ``settings`` (top level or ``[streamml]``, with ``kafka``), ``sections``."""

    path: Path
    text: str
    settings: dict[str, Any]
    sections: dict[str, Any]
    settings_table: tuple[str, ...] = ()

    @classmethod
    def read(cls, path: Path) -> "ConfigFile":
        """Read and parse ``path`` (a ConfigError naming the file when it cannot be read or parsed)."""
        try:
            text = path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}",
                              hint="check the path given by --config or STREAMML_CONFIG") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: not UTF-8 ({exc.reason})",
                              hint="save the file as UTF-8") from None
        return cls.parse(path, text)

    @classmethod
    def parse(cls, path: Path, text: str) -> "ConfigFile":
        """Split TOML ``text`` into settings and command sections."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}",
                              hint='TOML is key = value lines under [section] headers, text in quotes: '
                                   'namespace = "shop" (https://toml.io)') from None
        if isinstance(data.get("streamml"), dict):
            settings = dict(data.pop("streamml"))
            table: tuple[str, ...] = ("streamml",)
        else:
            settings, table = {}, ()
        for key in list(data):  # [kafka] and plain keys beside [streamml] are settings too
            if key in RESERVED_TABLES or not isinstance(data[key], dict):
                settings.setdefault(key, data.pop(key))
        return cls(path=path, text=text, settings=settings, sections=data, settings_table=table)

    def where(self, *keys: str) -> str:
        """``path:line`` of a key (``where("namespace")``, ``where("serve", "guarantee")``), else ``path``.

        One key names a setting (in ``[streamml]`` when the file has that table) or a section.
        """
        settings_first = keys[0] not in self.sections and self.settings_table
        for full in ([(*self.settings_table, *keys), keys] if settings_first else [keys]):
            line = key_line(self.text, full[:-1], full[-1])
            if line:
                return f"{self.path}:{line}"
        return str(self.path)
