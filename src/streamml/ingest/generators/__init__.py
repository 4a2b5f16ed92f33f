"""Synthetic event generators: card transactions with fraud, machine sensors with failures.

The pure generators (:func:`transactions`, :func:`sensors`) need no Kafka; the runners
(:func:`generate_transactions`, :func:`generate_sensors`) write events and delayed labels.
"""

from streamml.ingest.generators.run import GenerateReport, generate_sensors, generate_transactions, run_generator
from streamml.ingest.generators.sensors import sensors
from streamml.ingest.generators.transactions import NEW_PATTERN, PATTERNS, Event, transactions

__all__ = ["transactions", "sensors", "Event", "PATTERNS", "NEW_PATTERN", "GenerateReport",
           "generate_transactions", "generate_sensors", "run_generator"]
