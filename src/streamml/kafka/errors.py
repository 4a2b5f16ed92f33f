"""Map librdkafka errors onto streamml's error tree.

Every caller classifies through :func:`classify` and acts on the class:
RetriableError -> try again; AbortableError -> abort the transaction and retry the batch;
FatalError -> recreate the client or stop; AuthorizationError -> stop with a clear message.

>>> from confluent_kafka import KafkaError as CKError
>>> type(classify(CKError(CKError._TIMED_OUT, "timed out", retriable=True))).__name__
'RetriableError'
>>> type(classify(CKError(CKError.TOPIC_AUTHORIZATION_FAILED))).__name__
'AuthorizationError'
>>> type(classify(CKError(CKError._FENCED, "fenced", fatal=True))).__name__
'FatalError'
>>> type(classify(CKError(CKError._FATAL, "Fatal error: static consumer fenced"))).__name__
'FatalError'
"""

from __future__ import annotations

import time
from typing import Any, Callable, Collection, TypeVar

from confluent_kafka import KafkaError as CKError
from confluent_kafka import KafkaException

from streamml import errors as e

__all__ = ["classify", "raise_for", "retry_unavailable"]

T = TypeVar("T")

_AUTH = {
    CKError.TOPIC_AUTHORIZATION_FAILED,
    CKError.GROUP_AUTHORIZATION_FAILED,
    CKError.CLUSTER_AUTHORIZATION_FAILED,
    CKError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    CKError.SASL_AUTHENTICATION_FAILED,
    CKError._AUTHENTICATION,
}
# _FATAL is how a consumer reports its own fatal error in a message (the underlying cause, e.g. a
# static member fenced after a coordinator fail-over, is only in the text, and the flag is unset)
_FATAL = {CKError._FATAL, CKError._FENCED, CKError.PRODUCER_FENCED, CKError.INVALID_PRODUCER_EPOCH,
          CKError.FENCED_INSTANCE_ID, CKError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
          CKError.UNSUPPORTED_VERSION}
_UNAVAILABLE = {CKError._ALL_BROKERS_DOWN, CKError._TRANSPORT, CKError._RESOLVE}
_RETRIABLE = {CKError._TIMED_OUT, CKError.REQUEST_TIMED_OUT, CKError.NOT_LEADER_FOR_PARTITION,
              CKError.LEADER_NOT_AVAILABLE, CKError.NOT_ENOUGH_REPLICAS,
              CKError.NOT_ENOUGH_REPLICAS_AFTER_APPEND, CKError.COORDINATOR_LOAD_IN_PROGRESS,
              CKError.COORDINATOR_NOT_AVAILABLE, CKError.NOT_COORDINATOR, CKError.REBALANCE_IN_PROGRESS,
              CKError.CONCURRENT_TRANSACTIONS, CKError._MSG_TIMED_OUT, CKError.UNKNOWN_TOPIC_OR_PART,
              CKError.FENCED_LEADER_EPOCH, CKError.UNKNOWN_LEADER_EPOCH, CKError.OFFSET_NOT_AVAILABLE}

_HINTS = {
    CKError.TOPIC_AUTHORIZATION_FAILED: "grant the principal READ/WRITE on the topic (kafka-acls)",
    CKError.GROUP_AUTHORIZATION_FAILED: "grant the principal READ on the consumer group",
    CKError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "grant the principal WRITE on the transactional id",
    CKError.SASL_AUTHENTICATION_FAILED: "check the SASL username, password and mechanism",
    CKError._FENCED: "another instance with the same transactional id took over",
    CKError.PRODUCER_FENCED: "another instance with the same transactional id took over",
    CKError.FENCED_INSTANCE_ID: "another member joined with the same instance id "
                                "(give each process its own --instance)",
    CKError._ALL_BROKERS_DOWN: "check that the brokers run and bootstrap servers are right",
    CKError.MSG_SIZE_TOO_LARGE: "the record exceeds the broker's message.max.bytes",
}


def _unwrap(err: Any) -> CKError | None:
    if isinstance(err, KafkaException):
        err = err.args[0] if err.args else None
    return err if isinstance(err, CKError) else None


def classify(err: Any, context: str = "") -> e.KafkaError:
    """Turn a librdkafka ``KafkaError``/``KafkaException`` into a streamml error (not raised)."""
    ck = _unwrap(err)
    if ck is None:
        return e.KafkaError(f"{context}{err}")
    code = ck.code()
    msg = f"{context}{ck.str()} [{ck.name()}]"
    hint = _HINTS.get(code)
    if code in _AUTH:
        return e.AuthorizationError(msg, code=ck.name(), hint=hint)
    if ck.fatal() or code in _FATAL:
        return e.FatalError(msg, code=ck.name(), hint=hint)
    if ck.txn_requires_abort():
        return e.AbortableError(msg, code=ck.name(), hint=hint)
    if code in _UNAVAILABLE:
        return e.BrokerUnavailableError(msg, code=ck.name(), hint=hint)
    if ck.retriable() or code in _RETRIABLE:
        return e.RetriableError(msg, code=ck.name(), hint=hint)
    return e.KafkaError(msg, code=ck.name(), hint=hint)


def raise_for(err: Any, context: str = "") -> None:
    """Raise the classified error for ``err`` when it is an error; otherwise do nothing."""
    if err is None:
        return
    ck = _unwrap(err)
    if ck is not None and ck.code() == CKError.NO_ERROR:
        return
    raise classify(err, context)


def retry_unavailable(fn: Callable[[float], T], context: str = "", *, timeout: float, pause: float = 0.3,
                      also: Collection[str] = (), on_retry: Callable[[e.KafkaError], None] | None = None) -> T:
    """``fn(seconds_left)``, called again while Kafka is unavailable (a broker restarting, a
    coordinator or leader moving) until ``timeout`` seconds have passed.

    A librdkafka error is classified (with ``context``); a RetriableError or
    BrokerUnavailableError, or an error whose code is in ``also``, is retried after ``pause``
    seconds (``on_retry`` is told first). Any other error, or the last one, is raised.

    >>> calls = []
    >>> def flaky(left: float) -> str:
    ...     calls.append(left)
    ...     if len(calls) < 3:
    ...         raise KafkaException(CKError(CKError._TRANSPORT, "broker down"))
    ...     return "ok"
    >>> retry_unavailable(flaky, timeout=5, pause=0), len(calls)
    ('ok', 3)
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn(deadline - time.monotonic())
        except KafkaException as exc:
            err = classify(exc, context)
        except (e.RetriableError, e.BrokerUnavailableError) as exc:
            err = exc
        retriable = isinstance(err, (e.RetriableError, e.BrokerUnavailableError)) or err.code in also
        if not retriable:
            raise err from None
        if time.monotonic() >= deadline:
            if not isinstance(err, (e.RetriableError, e.BrokerUnavailableError)):
                # still unavailable in the caller's terms (e.g. no leader elected yet): callers that
                # wait out unavailability (the model follower, the CLI's start-up) keep waiting
                raise e.BrokerUnavailableError(err.message, code=err.code, hint=err.hint) from None
            raise err from None
        if on_retry is not None:
            on_retry(err)
        time.sleep(pause)
