"""Record header names every component writes: the lineage contract.

>>> h = lineage(event_id="e1", event_time_ms=1700000000000, component="ingest.file")
>>> sorted(k for k, _ in h)
['sm.component', 'sm.event_id', 'sm.event_time', 'sm.version']
>>> as_dict(h)["sm.event_id"]
'e1'
"""

from __future__ import annotations

from typing import Iterable, Mapping

from streamml._version import __version__

__all__ = [
    "EVENT_ID", "EVENT_TIME", "INGEST_TIME", "COMPONENT", "VERSION", "SCHEMA", "SCHEMA_VERSION",
    "MODEL", "MODEL_VERSION", "PIPELINE_HASH", "SOURCE", "REASON", "lineage", "as_dict",
]

EVENT_ID = "sm.event_id"
EVENT_TIME = "sm.event_time"          # ms since epoch, decimal string
INGEST_TIME = "sm.ingest_time"        # ms since epoch when the ingest component accepted it
COMPONENT = "sm.component"            # e.g. "ingest.http", "stream.<pipeline>", "serve.<model>"
VERSION = "sm.version"                # streamml version of the producing component
SCHEMA = "sm.schema"
SCHEMA_VERSION = "sm.schema_version"
MODEL = "sm.model"
MODEL_VERSION = "sm.model_version"
PIPELINE_HASH = "sm.pipeline_hash"    # features: fingerprint of the pipeline that computed them
SOURCE = "sm.source"                  # dead letters: where the record came from (file:line, request id...)
REASON = "sm.reason"                  # dead letters: why it was rejected

Headers = list[tuple[str, bytes]]


def lineage(*, event_id: str | None = None, event_time_ms: int | None = None, component: str,
            **extra: str | int | None) -> Headers:
    """Headers carrying an event's lineage; ``extra`` keys are given without the ``sm.`` prefix."""

    out: Headers = [(COMPONENT, component.encode()), (VERSION, __version__.encode())]
    if event_id is not None:
        out.append((EVENT_ID, event_id.encode()))
    if event_time_ms is not None:
        out.append((EVENT_TIME, str(int(event_time_ms)).encode()))
    for key, value in extra.items():
        if value is not None:
            out.append((f"sm.{key}", str(value).encode()))
    return out


def as_dict(headers: Iterable[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None] | None
            ) -> dict[str, str]:
    """Headers as a dict of strings (the last value wins)."""
    out: dict[str, str] = {}
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in items:
        if value is None:
            out[key] = ""
        else:
            out[key] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return out
