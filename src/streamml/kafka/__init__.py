"""The thin layer over confluent-kafka: local clusters, clients, admin, transactions, errors."""

from streamml.kafka.admin import TopicSpec, delete_topics, ensure_topic, ensure_topics, list_topics
from streamml.kafka.clients import admin, consumer, producer
from streamml.kafka.errors import classify, raise_for
from streamml.kafka.local import LocalCluster, ensure_local
from streamml.kafka.transactions import TransactionalSession, next_offsets, rewind

__all__ = [
    "LocalCluster", "ensure_local", "producer", "consumer", "admin", "TopicSpec", "ensure_topic",
    "ensure_topics", "delete_topics", "list_topics", "classify", "raise_for", "TransactionalSession",
    "next_offsets", "rewind",
]
