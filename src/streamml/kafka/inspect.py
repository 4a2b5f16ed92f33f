"""Read-only views of a cluster: brokers, controller, topics, under-replicated partitions."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException

from streamml.config import Settings
from streamml.kafka.admin import metadata
from streamml.kafka.clients import admin as make_admin
from streamml.kafka.errors import classify

__all__ = ["cluster_overview", "under_replicated", "partition_leader", "wait_fully_replicated"]


def cluster_overview(settings: Settings, timeout: float = 10.0) -> dict[str, Any]:
    """Brokers, the active controller and per-topic partition health."""
    client = make_admin(settings)
    try:
        desc = client.describe_cluster(request_timeout=timeout).result()
        md = metadata(client, timeout)
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


def partition_leader(settings: Settings, topic: str, partition: int = 0, timeout: float = 10.0) -> int:
    """The broker id leading ``topic``/``partition`` (-1 when it has no leader)."""
    md = metadata(make_admin(settings), timeout, topic)
    return int(md.topics[topic].partitions[partition].leader)


def wait_fully_replicated(settings: Settings, timeout: float = 120.0) -> bool:
    """Wait until no partition is under-replicated or offline; True if that happened in time."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ov = cluster_overview(settings, timeout=5.0)
            if all(t["under_replicated"] == 0 and t["offline"] == 0 for t in ov["topics"]):
                return True
        except Exception:  # noqa: BLE001 - brokers may still be coming back
            pass
        time.sleep(0.5)
    return False
