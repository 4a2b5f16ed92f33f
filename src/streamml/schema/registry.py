"""A small schema registry: the versions of each stream's schema, checked for compatibility.

Storage is a JSON file per stream under ``<home>/schemas/<namespace>/<stream>.json`` holding
every registered version. Records on the wire name their schema and version in headers, so
any reader with access to the registry (or the schema file) can decode them. Registering
a schema that is equal to the latest version is a no-op; a compatible change becomes the
next version; an incompatible change is refused with every reason.

>>> import tempfile, pathlib
>>> from streamml.schema.core import Field, Schema
>>> reg = SchemaRegistry(pathlib.Path(tempfile.mkdtemp()))
>>> reg.register("pay", Schema("pay", [Field("x", float)])).version
1
>>> reg.register("pay", Schema("pay", [Field("x", float), Field("y", str, required=False)])).version
2
>>> reg.register("pay", Schema("pay", [Field("x", str)]))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.SchemaError: schema 'pay' v3 is not compatible with v2: field 'x' changes type ... (hint: ...)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from streamml.config import Settings
from streamml.errors import SchemaError
from streamml.schema.core import Schema
from streamml.schema.evolution import ensure_compatible

__all__ = ["SchemaRegistry"]


class SchemaRegistry:
    """Versions of stream schemas stored as JSON files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def for_settings(cls, settings: Settings) -> "SchemaRegistry":
        return cls(settings.home / "schemas" / settings.namespace)

    def _path(self, stream: str) -> Path:
        return self.root / f"{stream}.json"

    def versions(self, stream: str) -> list[Schema]:
        path = self._path(stream)
        if not path.is_file():
            return []
        try:
            return [Schema.from_dict(d) for d in json.loads(path.read_text())["versions"]]
        except (ValueError, KeyError) as exc:
            raise SchemaError(f"schema registry file {path} is damaged: {exc}") from None

    def latest(self, stream: str) -> Schema | None:
        found = self.versions(stream)
        return found[-1] if found else None

    def get(self, stream: str, version: int | None = None) -> Schema:
        found = self.versions(stream)
        if not found:
            raise SchemaError(f"no schema registered for stream {stream!r}")
        if version is None:
            return found[-1]
        for s in found:
            if s.version == version:
                return s
        raise SchemaError(f"stream {stream!r} has no schema version {version}",
                          hint="versions: " + ", ".join(str(s.version) for s in found))

    def register(self, stream: str, schema: Schema) -> Schema:
        """Store ``schema`` as the stream's next version (or return the equal latest one)."""
        found = self.versions(stream)
        if found:
            last = found[-1]
            if _same(last, schema):  # the caller's copy: it keeps its JSON Schema document, if any
                return last if schema.json_schema is None else schema.with_version(last.version)
            candidate = schema.with_version(max(schema.version, last.version + 1))
            ensure_compatible(last, candidate)
        else:
            candidate = schema
        found.append(candidate)
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(stream)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"stream": stream, "versions": [s.to_dict() for s in found]}, indent=2))
        os.replace(tmp, path)
        return candidate


def _same(a: Schema, b: Schema) -> bool:
    da, db = a.to_dict(), b.to_dict()
    da.pop("version"), db.pop("version")
    return da == db
