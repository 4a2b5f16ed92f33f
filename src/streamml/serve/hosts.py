"""One :class:`~streamml.serve.swap.ModelHost` per process and ``(cluster, namespace, model, stage)``.

The engine bridges (Spark executors' Python workers, Flink's Python UDF workers) score inside
processes that streamml does not start. Each such process keeps one host per model role for
its whole life: a :class:`~streamml.serve.registry_source.RegistrySource` followed by a
background thread, every version verified (hash against the descriptor, input schema, a test
inference) by :func:`streamml.serve.swap.verify` before it is offered, and swapped in only
between batches by the caller (:meth:`ModelHost.swap`).
"""

from __future__ import annotations

import threading

from streamml.config import Settings
from streamml.serve.swap import ModelHost

__all__ = ["shared_host", "stop_hosts"]

_HOSTS: dict[tuple[str, str, str, str], ModelHost] = {}
_LOCK = threading.Lock()


def shared_host(settings: Settings, model: str, stage: str, wait_s: float) -> ModelHost:
    """This process's model host for ``model@stage``: started once (waiting up to ``wait_s`` for a
    servable version), then kept following the registry."""
    from streamml.serve.registry_source import RegistrySource
    from streamml.serve.swap import Role

    key = (str(settings.bootstrap_servers), settings.namespace, model, stage)
    with _LOCK:
        host = _HOSTS.get(key)
        if host is None:
            role = Role(model, stage)
            host = ModelHost(RegistrySource(settings), [role]).start(wait_for=role, timeout=wait_s)
            _HOSTS[key] = host
    return host


def stop_hosts() -> None:
    """Stop every host of this process (a worker that is shutting down)."""
    with _LOCK:
        hosts = list(_HOSTS.values())
        _HOSTS.clear()
    for host in hosts:
        host.stop()
