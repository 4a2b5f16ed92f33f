"""The client seam: where a loop gets its Kafka clients.

Production code uses :class:`KafkaClients` (the factories of :mod:`streamml.kafka.clients`,
with their safe defaults). Unit tests hand the loop their own :class:`Clients` whose
consumer and producer script each error class, rebalance and recovery path without a broker.
"""

from __future__ import annotations

from typing import Any, Protocol

from streamml.config import Settings
from streamml.kafka import clients

__all__ = ["Clients", "KafkaClients"]


class Clients(Protocol):
    """Makes the consumer and producer of a loop (called again after each recovery)."""

    def consumer(self, settings: Settings, group: str, **overrides: Any) -> Any: ...

    def producer(self, settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> Any: ...


class KafkaClients:
    """Real confluent-kafka clients."""

    def consumer(self, settings: Settings, group: str, **overrides: Any) -> Any:
        return clients.consumer(settings, group, **overrides)

    def producer(self, settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> Any:
        return clients.producer(settings, transactional_id=transactional_id, **overrides)
