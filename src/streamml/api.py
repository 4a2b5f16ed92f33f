"""Entry points of the Python API."""

from __future__ import annotations

from typing import Any

from streamml.config import Settings
from streamml.kafka.local import ensure_local

__all__ = ["connect"]


def connect(bootstrap_servers: str | None = None, *, namespace: str | None = None, **kafka: Any) -> Settings:
    """Settings for a cluster, from the usual sources plus these arguments.

    Without bootstrap servers anywhere in the settings, the local cluster is used and
    started when it is not running (the embedded default). ``kafka`` keyword arguments
    are librdkafka options, with ``_`` for ``.`` (``sasl_mechanism="SCRAM-SHA-512"``).
    """
    options = {k.replace("_", "."): str(v) for k, v in kafka.items()}
    settings = Settings.load(overrides={"bootstrap_servers": bootstrap_servers, "namespace": namespace,
                                        "kafka": options})
    return ensure_local(settings)
