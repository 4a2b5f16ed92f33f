"""Consumer lag per partition: committed offsets of a group against the high watermarks.

Lag is computed from the outside, by the admin API, for any consumer group, so it also
covers processes that report nothing themselves.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streamml.config import Settings
from streamml.kafka.clients import admin as make_admin
from streamml.kafka.errors import classify

__all__ = ["consumer_lag", "list_groups", "lag_totals"]


def list_groups(settings: Settings, prefix: str | None = None, timeout: float = 10.0,
                client: AdminClient | None = None) -> list[str]:
    """Consumer group ids on the cluster (optionally only those starting with ``prefix``)."""
    client = client or make_admin(settings)
    try:
        res = client.list_consumer_groups(request_timeout=timeout).result()
    except KafkaException as exc:
        raise classify(exc, "cannot list consumer groups: ") from None
    ids = sorted(g.group_id for g in res.valid)
    return [g for g in ids if prefix is None or g.startswith(prefix)]


def consumer_lag(settings: Settings, groups: list[str] | None = None, *, prefix: str | None = None,
                 timeout: float = 10.0, client: AdminClient | None = None) -> list[dict[str, Any]]:
    """Rows ``{group, topic, partition, committed, high, lag}`` for every committed partition.

    ``groups=None`` means every group (starting with ``prefix`` when given). The high
    watermark is the latest offset (``ListOffsets`` latest); a partition with no committed
    offset is not reported.
    """
    client = client or make_admin(settings)
    if groups is None:
        groups = list_groups(settings, prefix, timeout, client)
    committed: list[tuple[str, TopicPartition]] = []
    for g in groups:
        try:
            fut = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)],
                                                     request_timeout=timeout)[g]
            res = fut.result()
        except KafkaException as exc:
            raise classify(exc, f"cannot read offsets of group {g}: ") from None
        for tp in res.topic_partitions or []:
            if tp.offset >= 0 and not tp.error:
                committed.append((g, tp))
    if not committed:
        return []
    wanted = {TopicPartition(tp.topic, tp.partition): OffsetSpec.latest() for _, tp in committed}
    try:
        futs = client.list_offsets(wanted, request_timeout=timeout)
        high = {(tp.topic, tp.partition): f.result().offset for tp, f in futs.items()}
    except KafkaException as exc:
        raise classify(exc, "cannot list offsets: ") from None
    rows = []
    for g, tp in committed:
        h = high.get((tp.topic, tp.partition))
        if h is None or h < 0:
            continue
        rows.append({"group": g, "topic": tp.topic, "partition": tp.partition, "committed": tp.offset,
                     "high": h, "lag": max(0, h - tp.offset)})
    rows.sort(key=lambda r: (r["group"], r["topic"], r["partition"]))
    return rows


def lag_totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Total lag per group.

    >>> lag_totals([{"group": "a", "lag": 2}, {"group": "a", "lag": 3}, {"group": "b", "lag": 0}])
    {'a': 5, 'b': 0}
    """
    out: dict[str, int] = {}
    for r in rows:
        out[r["group"]] = out.get(r["group"], 0) + int(r["lag"])
    return out
