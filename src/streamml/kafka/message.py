"""Typed accessors of a record's coordinates.

confluent-kafka types ``Message.topic()``, ``partition()`` and ``offset()`` as optional (they
are None on some error events); on a record, and on an end-of-partition event, they are set.
These accessors say so once, for the type checker.
"""

from __future__ import annotations

from typing import Any

__all__ = ["offset_of", "partition_of", "topic_of", "tp_of"]


def offset_of(m: Any) -> int:
    """The offset of a record (or of an end-of-partition event: the end)."""
    o = m.offset()
    assert o is not None, "a record without an offset"
    return int(o)


def partition_of(m: Any) -> int:
    p = m.partition()
    assert p is not None, "a record without a partition"
    return int(p)


def topic_of(m: Any) -> str:
    t = m.topic()
    assert t is not None, "a record without a topic"
    return str(t)


def tp_of(m: Any) -> tuple[str, int]:
    """``(topic, partition)`` of a record."""
    return topic_of(m), partition_of(m)
