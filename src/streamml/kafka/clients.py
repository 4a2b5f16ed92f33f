"""Client factories with safe defaults.

Producers are idempotent with ``acks=all``; consumers read committed data only and
never auto-commit. Every factory merges, lowest first: these defaults, the settings'
pass-through options (security, tuning), then the caller's ``overrides``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from streamml.config import Settings
from streamml.errors import ConfigError

_C = TypeVar("_C")

__all__ = ["producer", "consumer", "admin", "check_access", "PRODUCER_DEFAULTS", "CONSUMER_DEFAULTS"]

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
    "batch.size": 1_000_000,
    "queue.buffering.max.messages": 500_000,
    "message.timeout.ms": 120_000,
}

CONSUMER_DEFAULTS: dict[str, Any] = {
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "fetch.wait.max.ms": 50,
    "queued.min.messages": 100_000,
    "session.timeout.ms": 30_000,
}

_log = logging.getLogger("streamml.kafka")
_CALLBACKS = {"error_cb", "stats_cb", "throttle_cb", "on_commit", "oauth_cb", "on_delivery", "logger"}


def _dotted(overrides: dict[str, Any]) -> dict[str, Any]:
    """``linger_ms=0`` -> ``{"linger.ms": 0}``; callbacks keep their names."""
    return {(k if k in _CALLBACKS or "." in k else k.replace("_", ".")): v for k, v in overrides.items()}


def _merged(settings: Settings, defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    conf = dict(defaults)
    conf.update(settings.client_config())
    conf.update({k: v for k, v in overrides.items() if v is not None})
    conf.setdefault("logger", _log)
    return conf


def _build(kind: Callable[[dict[str, Any]], _C], conf: dict[str, Any]) -> _C:
    """``kind(conf)``; an option librdkafka refuses (``security.protocol = "bogus"``) is a
    ConfigError naming it, raised before anything connects."""
    try:
        return kind(conf)
    except KafkaException as exc:
        err: Any = exc.args[0] if exc.args else None
        text = err.str() if hasattr(err, "str") else str(exc)
        raise ConfigError(f"invalid Kafka client setting: {text}",
                          hint="check the -X options, the [kafka] table of the config file and the "
                               "STREAMML_KAFKA__* environment variables (librdkafka's CONFIGURATION.md lists "
                               "the options)") from None


def producer(settings: Settings, *, transactional_id: str | None = None, **overrides: Any) -> Producer:
    """An idempotent ``acks=all`` producer; transactional when ``transactional_id`` is given.

    Keyword names use ``_`` for ``.``: ``producer(s, linger_ms=0)``.
    """
    extra = _dotted(overrides)
    if transactional_id:
        extra["transactional.id"] = transactional_id
        extra.setdefault("transaction.timeout.ms", 60_000)
        extra.setdefault("message.timeout.ms", min(int(extra["transaction.timeout.ms"]), 60_000))
        # librdkafka waits out retry.backoff.ms (100 ms by default) inside every transaction that
        # sends offsets (the coordinator answers CONCURRENT_TRANSACTIONS while the previous commit
        # completes); a short first back-off, growing exponentially to retry.backoff.max.ms,
        # makes a small transaction cost a few ms instead of ~100 ms
        user = settings.client_config()
        for key, value in (("retry.backoff.ms", 2), ("retry.backoff.max.ms", 500)):
            if key not in user:  # the user's setting wins
                extra.setdefault(key, value)
    return _build(Producer, _merged(settings, PRODUCER_DEFAULTS, extra))


def consumer(settings: Settings, group_id: str, **overrides: Any) -> Consumer:
    """A read_committed consumer in ``group_id`` that never commits on its own."""
    extra = _dotted(overrides)
    extra["group.id"] = group_id
    return _build(Consumer, _merged(settings, CONSUMER_DEFAULTS, extra))


def admin(settings: Settings, **overrides: Any) -> AdminClient:
    """An admin client."""
    extra = _dotted(overrides)
    return _build(AdminClient, _merged(settings, {}, extra))


def check_access(settings: Settings, timeout: float = 15.0) -> None:
    """Connect once and fail fast with a clear error: bad credentials or TLS raise
    AuthorizationError/FatalError at once instead of librdkafka retrying forever;
    an unreachable cluster raises BrokerUnavailableError after ``timeout``."""
    from confluent_kafka import KafkaError as CKError
    from confluent_kafka import KafkaException

    from streamml.errors import AuthorizationError, BrokerUnavailableError
    from streamml.kafka.errors import classify

    seen: list[CKError] = []

    def on_error(err: CKError) -> None:
        seen.append(err)

    client = _build(AdminClient, _merged(settings, {}, {"error_cb": on_error}))
    import time

    deadline = time.monotonic() + timeout
    fut = client.describe_cluster(request_timeout=timeout)
    while time.monotonic() < deadline:
        client.poll(0.05)  # serves error_cb
        auth = [e for e in seen if e.code() in (CKError._AUTHENTICATION, CKError.SASL_AUTHENTICATION_FAILED,
                                                CKError._SSL)]
        if auth:
            err = classify(auth[0], "cannot connect: ")
            raise AuthorizationError(err.message, code=err.code,
                                     hint="check sasl.username, sasl.password, sasl.mechanism and ssl.ca.location")
        if fut.done():
            try:
                fut.result()
                return
            except KafkaException as exc:
                raise classify(exc, "cannot connect: ") from None
    raise BrokerUnavailableError(f"no broker at {settings.bootstrap_servers} answered within {timeout:.0f}s",
                                 hint="check that the brokers run and the bootstrap servers are right")
