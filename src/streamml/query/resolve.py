"""Short names for topics, and the settings an interactive session uses.

A name given to :func:`~streamml.query.topic`, :func:`~streamml.query.sql` or
:func:`~streamml.query.tail` is resolved against the topics that exist by the one resolver,
:func:`streamml.kafka.names.resolve_topic` (without a default kind), in this order:

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
>>> pick("fraud", "shop", ["shop.labels.fraud", "shop.models.fraud"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.QueryError: topic name 'fraud' is ambiguous: shop.labels.fraud, shop.models.fraud (hint: write ...)
"""

from __future__ import annotations

import threading
from typing import Iterable

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.kafka.names import STREAM_KINDS, candidates
from streamml.kafka.names import resolve_topic as _resolve

__all__ = ["pick", "candidates", "resolve_topic", "default_settings", "use", "STREAM_KINDS"]

_lock = threading.Lock()
_default: Settings | None = None


def pick(name: str, namespace: str, existing: Iterable[str]) -> str:
    """The topic ``name`` resolves to among ``existing`` topics (see the module docs).

    The rules are :func:`streamml.kafka.names.resolve_topic`'s, without a default kind.
    """
    return _resolve(name, namespace, existing=existing, error=QueryError)


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
