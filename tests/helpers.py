"""Helpers shared by the test suites (tests/ is on sys.path through its conftest)."""

from __future__ import annotations

import time
from typing import Any

from streamml import headers as H
from streamml.config import Settings
from streamml.kafka import clients


def drain(settings: Settings, topic: str, expect: int | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every committed record of ``topic``, read by an independent read_committed consumer,
    as ``{"key", "value", "headers"}`` dicts; stops once ``expect`` records came and the
    topic went quiet (or after 2 s of quiet without ``expect``)."""
    c = clients.consumer(settings, f"verify-{time.time_ns()}")
    c.subscribe([topic])
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    quiet = time.monotonic()
    while time.monotonic() < deadline:
        msgs = c.consume(2000, timeout=0.3)
        if msgs:
            quiet = time.monotonic()
        out += [{"key": m.key(), "value": m.value(), "headers": H.as_dict(m.headers())} for m in msgs if not m.error()]
        if expect is not None and len(out) >= expect and time.monotonic() - quiet > 0.5:
            break
        if expect is None and time.monotonic() - quiet > 2.0:
            break
    c.close()
    return out
