"""Sources into validated topics: files, HTTP, MQTT and synthetic generators.

Every source writes accepted records to ``<ns>.raw.<stream>`` and rejected ones, with the
reason, to ``<ns>.dlq``, and returns counts for which ``records_in == accepted +
dead_lettered (+ failed)`` holds.

>>> from streamml.ingest import transactions
>>> next(transactions(seed=1)).record["event_id"]
'tx1-000000000'
"""

from streamml.ingest.files import FileIngestReport, ingest_files
from streamml.ingest.generators import (
                                        NEW_PATTERN,
                                        PATTERNS,
                                        Event,
                                        GenerateReport,
                                        generate_sensors,
                                        generate_transactions,
                                        sensors,
                                        transactions,
)
from streamml.ingest.mqtt import MqttBridge, MqttOptions, bridge_mqtt
from streamml.ingest.writer import IngestCounts, RecordWriter

__all__ = [
    "ingest_files", "FileIngestReport", "IngestCounts", "RecordWriter",
    "HttpOptions", "create_app", "serve_http",
    "MqttOptions", "MqttBridge", "bridge_mqtt",
    "transactions", "sensors", "Event", "PATTERNS", "NEW_PATTERN",
    "generate_transactions", "generate_sensors", "GenerateReport",
]


def __getattr__(name: str) -> object:
    """HTTP ingest needs the ``http`` extra: its names are imported on first use."""
    if name in _HTTP_NAMES:
        from streamml.ingest import http

        return getattr(http, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_HTTP_NAMES = ("HttpOptions", "create_app", "serve_http")
