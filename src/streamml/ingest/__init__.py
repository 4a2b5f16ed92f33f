"""Sources into validated topics: files, HTTP, MQTT and synthetic generators.

Every source writes accepted records to ``<ns>.raw.<stream>`` and rejected ones, with the
reason, to ``<ns>.dlq``, and returns counts for which ``records_in == accepted +
dead_lettered (+ failed)`` holds.
"""

from streamml.ingest.files import FileIngestReport, ingest_files
from streamml.ingest.writer import IngestCounts, RecordWriter

__all__ = ["ingest_files", "FileIngestReport", "IngestCounts", "RecordWriter"]
