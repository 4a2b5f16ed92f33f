"""What topics there are: name, kind, partitions and how many offsets each holds.

>>> split_name("shop.raw.payments", "shop")
('raw', 'payments')
>>> split_name("legacy-orders", "shop")
('', 'legacy-orders')
"""

from __future__ import annotations

import polars as pl
from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from streamml.config import TOPIC_KINDS, Settings
from streamml.kafka import clients
from streamml.kafka.errors import classify
from streamml.query.resolve import default_settings

__all__ = ["topics", "split_name"]


def split_name(topic: str, namespace: str) -> tuple[str, str]:
    """(kind, short name) of a topic in ``namespace``; ('', topic) for any other topic."""
    ns, _, rest = topic.partition(".")
    kind, _, name = rest.partition(".")
    if ns == namespace and kind in TOPIC_KINDS:
        return kind, name or kind
    return "", topic


def topics(*, settings: Settings | None = None, all_namespaces: bool = False, timeout: float = 15.0) -> pl.DataFrame:
    """One row per topic: topic, kind, name, partitions, offsets (end - start, summed over partitions).

    Only the session's namespace unless ``all_namespaces``; internal topics (``__...``) never.
    ``offsets`` counts transaction markers and aborted records too: it is an upper bound.
    """
    s = settings or default_settings()
    client = clients.admin(s)
    try:
        md = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise classify(exc, "cannot reach Kafka: ") from None
    names = sorted(n for n in md.topics if not n.startswith("__")
                   and (all_namespaces or n.startswith(f"{s.namespace}.")))
    tps = [TopicPartition(n, p) for n in names for p in md.topics[n].partitions]
    size: dict[str, int] = {n: 0 for n in names}
    if tps:
        ends = {}
        for spec_name, spec in (("start", OffsetSpec.earliest()), ("end", OffsetSpec.latest())):
            futs = client.list_offsets({tp: spec for tp in tps}, isolation_level=IsolationLevel.READ_COMMITTED,
                                       request_timeout=timeout)
            for tp, fut in futs.items():
                try:
                    ends[(spec_name, tp.topic, tp.partition)] = fut.result().offset
                except KafkaException as exc:
                    raise classify(exc, f"cannot list offsets of {tp.topic}: ") from None
        for tp in tps:
            size[tp.topic] += max(0, ends[("end", tp.topic, tp.partition)] - ends[("start", tp.topic, tp.partition)])
    rows = [(n, *split_name(n, s.namespace), len(md.topics[n].partitions), size[n]) for n in names]
    return pl.DataFrame(rows, schema={"topic": pl.String, "kind": pl.String, "name": pl.String,
                                      "partitions": pl.Int64, "offsets": pl.Int64}, orient="row")
