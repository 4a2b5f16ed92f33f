"""Short names for topics, and the settings an interactive session uses.

A name given to :func:`~streamml.query.topic`, :func:`~streamml.query.sql` or
:func:`~streamml.query.tail` is resolved against the topics that exist, in this order:

1. the exact topic name (``"t1.raw.payments"``, ``"legacy-orders"``);
2. ``<kind>.<name>`` inside the namespace (``"labels.payments"`` -> ``<ns>.labels.payments``);
3. the stream kinds, first one that exists: ``<ns>.raw.<name>``, then ``<ns>.features.<name>``,
   then ``<ns>.predictions.<name>`` (so ``payments`` is the raw stream when there is one);
4. the other kinds (labels, models, metrics, control, dlq, changelog): the one that exists;
   when several do, the name is ambiguous and the error lists the candidates.

>>> pick("payments", "shop", ["shop.raw.payments", "shop.features.payments", "other.raw.payments"])
'shop.raw.payments'
>>> pick("features.payments", "shop", ["shop.raw.payments", "shop.features.payments"])
'shop.features.payments'
>>> pick("fraud", "shop", ["shop.labels.fraud", "shop.models.fraud"])
Traceback (most recent call last):
...
streamml.errors.QueryError: topic name 'fraud' is ambiguous: shop.labels.fraud, shop.models.fraud (hint: write kind.name, e.g. 'labels.fraud', or the full topic name)
"""

from __future__ import annotations

import threading
from typing import Iterable

from streamml.config import TOPIC_KINDS, Settings
from streamml.errors import QueryError

__all__ = ["pick", "candidates", "resolve_topic", "default_settings", "use"]

#: Kinds a bare name resolves to first, in this order.
STREAM_KINDS = ("raw", "features", "predictions")
_lock = threading.Lock()
_default: Settings | None = None


def candidates(name: str, namespace: str) -> list[str]:
    """Every topic name ``name`` could stand for, in resolution order (existing or not).

    >>> candidates("payments", "ns")[:3]
    ['payments', 'ns.raw.payments', 'ns.features.payments']
    """
    out = [name]
    kind, _, rest = name.partition(".")
    if rest and kind in TOPIC_KINDS:
        out.append(f"{namespace}.{name}")
    if "." not in name:
        out.extend(f"{namespace}.{k}.{name}" for k in STREAM_KINDS)
        out.extend(f"{namespace}.{k}.{name}" for k in TOPIC_KINDS if k not in STREAM_KINDS)
    return out


def pick(name: str, namespace: str, existing: Iterable[str]) -> str:
    """The topic ``name`` resolves to among ``existing`` topics (see the module docs)."""
    topics = set(existing)
    if name in topics:
        return name
    kind, _, rest = name.partition(".")
    if rest and kind in TOPIC_KINDS and f"{namespace}.{name}" in topics:
        return f"{namespace}.{name}"
    found = [c for c in candidates(name, namespace)[1:] if c in topics and c.count(".") == 2]
    streams = [c for c in found if c.split(".")[1] in STREAM_KINDS]
    if streams:
        return streams[0]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        kind = found[0].split(".")[1]
        raise QueryError(f"topic name {name!r} is ambiguous: {', '.join(found)}",
                         hint=f"write kind.name, e.g. '{kind}.{name}', or the full topic name")
    nearby = sorted(t for t in topics if t.startswith(f"{namespace}.") and not t.startswith("__"))
    hint = ("topics in namespace " + namespace + ": " + ", ".join(nearby[:12])) if nearby else \
        f"no topics in namespace {namespace!r}; list them with `streamml topics`"
    raise QueryError(f"no topic named {name!r} (tried {', '.join(candidates(name, namespace)[:3])}, ...)",
                     hint=hint)


def default_settings() -> Settings:
    """The session's settings: the last :func:`use`, else ``streamml.connect()`` once."""
    global _default
    with _lock:
        if _default is None:
            from streamml.api import connect

            _default = connect()
        return _default


def use(settings: Settings | None) -> None:
    """Make ``settings`` the default for the query functions in this process (None resets)."""
    global _default
    with _lock:
        _default = settings


def resolve_topic(name: str, settings: Settings | None = None) -> str:
    """Resolve a short name against the cluster's topics."""
    from streamml.kafka.admin import list_topics

    s = settings or default_settings()
    return pick(name, s.namespace, list_topics(s))
