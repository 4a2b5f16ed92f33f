"""What topics there are: name, kind, partitions and how many offsets each holds.

>>> split_name("shop.raw.payments", "shop")
('raw', 'payments')
>>> split_name("legacy-orders", "shop")
('', 'legacy-orders')
"""

from __future__ import annotations

import polars as pl
from confluent_kafka import TopicPartition

from streamml.config import TOPIC_KINDS, Settings
from streamml.kafka import clients
from streamml.kafka.admin import metadata
from streamml.kafka.read import watermarks
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
    md = metadata(client, timeout)
    names = sorted(n for n in md.topics if not n.startswith("__")
                   and (all_namespaces or n.startswith(f"{s.namespace}.")))
    tps = [TopicPartition(n, p) for n in names for p in md.topics[n].partitions]
    size: dict[str, int] = {n: 0 for n in names}
    for (topic, _), (low, high) in watermarks(s, tps, timeout=timeout, admin=client).items():
        size[topic] += max(0, high - low)
    rows = [(n, *split_name(n, s.namespace), len(md.topics[n].partitions), size[n]) for n in names]
    return pl.DataFrame(rows, schema={"topic": pl.String, "kind": pl.String, "name": pl.String,
                                      "partitions": pl.Int64, "offsets": pl.Int64}, orient="row")
