"""Read-only views of a cluster: brokers, controller, topics, under-replicated partitions."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException

from streamml.config import Settings
from streamml.kafka.clients import admin as make_admin
from streamml.kafka.errors import classify

__all__ = ["cluster_overview", "under_replicated"]


def cluster_overview(settings: Settings, timeout: float = 10.0) -> dict[str, Any]:
    """Brokers, the active controller and per-topic partition health."""
    client = make_admin(settings)
    try:
        desc = client.describe_cluster(request_timeout=timeout).result()
        md = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise classify(exc, "cannot reach Kafka: ") from None
    topics = []
    for name, t in sorted(md.topics.items()):
        parts = list(t.partitions.values())
        rf = max((len(p.replicas) for p in parts), default=0)
        topics.append({"name": name, "partitions": len(parts), "replication": rf,
                       "under_replicated": sum(1 for p in parts if len(p.isrs) < len(p.replicas)),
                       "offline": sum(1 for p in parts if p.leader < 0)})
    return {
        "cluster_id": desc.cluster_id,
        "controller": desc.controller.id if desc.controller else None,
        "brokers": sorted(({"id": n.id, "host": n.host, "port": n.port} for n in desc.nodes), key=lambda b: b["id"]),
        "topics": topics,
    }


def under_replicated(settings: Settings, timeout: float = 10.0) -> int:
    """How many partitions, over all topics, have fewer in-sync replicas than replicas."""
    return sum(t["under_replicated"] for t in cluster_overview(settings, timeout)["topics"])
