"""The thin layer over confluent-kafka: local clusters, clients, admin, transactions, errors,
the one read layer for pinned offset ranges (:mod:`.read`) and topic-name resolution (:mod:`.names`)."""

from streamml.kafka.admin import TopicSpec, delete_topics, ensure_topic, ensure_topics, list_topics
from streamml.kafka.clients import admin, consumer, producer
from streamml.kafka.errors import classify, raise_for
from streamml.kafka.local import LocalCluster, ensure_local
from streamml.kafka.names import resolve_topic
from streamml.kafka.read import RangeReader, TopicRange, pin, read_ranges, watermarks
from streamml.kafka.transactions import TransactionalSession, next_offsets, rewind

__all__ = [
    "LocalCluster", "ensure_local", "producer", "consumer", "admin", "TopicSpec", "ensure_topic",
    "ensure_topics", "delete_topics", "list_topics", "classify", "raise_for", "TransactionalSession",
    "next_offsets", "rewind", "resolve_topic", "TopicRange", "RangeReader", "pin", "read_ranges", "watermarks",
]
