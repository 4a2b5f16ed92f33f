"""The one topic-name resolver: short names -> ``<namespace>.<kind>.<name>``.

Every place that takes a topic from a user (pipelines, tables, replay, datasets, queries,
``streamml serve`` / ``monitor``) resolves it with :func:`resolve_topic`, by these rules:

1. a topic that exists under exactly that name is that topic (only when ``existing`` is
   given: the names of the cluster's topics);
2. ``<kind>.<name>`` with a known kind (``"labels.payments"``) is ``<ns>.labels.payments``;
3. any other name with a dot is a full topic name (``"t1.raw.payments"``, ``"a.b"``);
4. a bare name is ``<ns>.<kind>.<name>`` for the caller's default ``kind``
   (a pipeline source: raw; a sink: features; ...);
5. without a default kind, a bare name is searched among ``existing`` topics: the stream
   kinds first (``raw``, then ``features``, then ``predictions``), then the one other kind
   that exists; several other kinds make the name ambiguous.

A name that must exist (``kind=None``) and does not raises ``error`` (a
:class:`~streamml.errors.ConfigError` unless the caller names another class).
``namespace=None`` resolves for display: ``"payments"`` -> ``"raw.payments"``.

>>> resolve_topic("payments", "shop", kind="raw")
'shop.raw.payments'
>>> resolve_topic("labels.payments", "shop", kind="raw"), resolve_topic("t1.raw.x", "shop", kind="raw")
('shop.labels.payments', 't1.raw.x')
>>> resolve_topic("payments", None, kind="features")
'features.payments'
>>> resolve_topic("payments", "shop", existing=["shop.features.payments", "shop.raw.payments"])
'shop.raw.payments'
>>> resolve_topic("legacy", "shop", kind="features", existing=["legacy"])
'legacy'
>>> resolve_topic("fraud", "shop", existing=["shop.labels.fraud", "shop.models.fraud"])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.ConfigError: topic name 'fraud' is ambiguous: shop.labels.fraud, shop.models.fraud (hint: ...)
"""

from __future__ import annotations

from typing import Iterable

from streamml.config import TOPIC_KINDS
from streamml.errors import ConfigError, StreamMLError

__all__ = ["resolve_topic", "candidates", "STREAM_KINDS"]

#: Kinds a bare name is searched in first, in this order.
STREAM_KINDS = ("raw", "features", "predictions")


def _kind_name(name: str) -> tuple[str, str] | None:
    kind, _, rest = name.partition(".")
    return (kind, rest) if rest and kind in TOPIC_KINDS and "." not in rest else None


def _join(namespace: str | None, kind: str, name: str) -> str:
    return f"{namespace}.{kind}.{name}" if namespace is not None else f"{kind}.{name}"


def candidates(name: str, namespace: str) -> list[str]:
    """Every topic ``name`` could stand for, in resolution order (existing or not).

    >>> candidates("payments", "ns")[:3]
    ['payments', 'ns.raw.payments', 'ns.features.payments']
    """
    out = [name]
    kn = _kind_name(name)
    if kn is not None:
        out.append(_join(namespace, *kn))
    if "." not in name:
        out.extend(_join(namespace, k, name) for k in STREAM_KINDS)
        out.extend(_join(namespace, k, name) for k in TOPIC_KINDS if k not in STREAM_KINDS)
    return out


def resolve_topic(name: str, namespace: str | None, *, kind: str | None = None,
                  existing: Iterable[str] | None = None, error: type[StreamMLError] = ConfigError) -> str:
    """The topic ``name`` stands for (see the module docs for the rules).

    ``kind``: the default kind of a bare name; ``None`` searches ``existing``, which is
    then required. ``error``: the class raised when the name resolves to nothing.
    """
    if not name:
        raise error("a topic name is empty")
    topics = None if existing is None else set(existing)
    if topics is not None and name in topics:
        return name
    kn = _kind_name(name)
    if kn is not None:
        full = _join(namespace, *kn)
        if topics is None or kind is not None or full in topics:
            return full
    elif "." in name:
        if topics is None or kind is not None:
            return name
    elif kind is not None:
        return _join(namespace, kind, name)
    if topics is None or namespace is None:
        raise ValueError("resolving a name without a default kind needs the existing topics and a namespace")
    found = [c for c in candidates(name, namespace)[1:] if c in topics]
    streams = [c for c in found if c.split(".")[1] in STREAM_KINDS]
    if streams:
        return streams[0]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        k = found[0].split(".")[1]
        raise error(f"topic name {name!r} is ambiguous: {', '.join(found)}",
                    hint=f"write kind.name, e.g. '{k}.{name}', or the full topic name")
    nearby = sorted(t for t in topics if t.startswith(f"{namespace}.") and not t.startswith("__"))
    hint = ("topics in namespace " + namespace + ": " + ", ".join(nearby[:12])) if nearby else \
        f"no topics in namespace {namespace!r}; list them with `streamml topics`"
    raise error(f"no topic named {name!r} (tried {', '.join(candidates(name, namespace)[:3])}, ...)", hint=hint)
