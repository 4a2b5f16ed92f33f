"""librdkafka errors map onto the error tree by what the caller must do."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError as CK
from confluent_kafka import KafkaException

from streamml import errors as e
from streamml.kafka.errors import classify, raise_for


@pytest.mark.parametrize("err, cls", [
    (CK(CK._TIMED_OUT, retriable=True), e.RetriableError),
    (CK(CK.NOT_ENOUGH_REPLICAS), e.RetriableError),
    (CK(CK._ALL_BROKERS_DOWN), e.BrokerUnavailableError),
    (CK(CK.PRODUCER_FENCED), e.FatalError),
    (CK(CK._STATE, fatal=True), e.FatalError),
    (CK(CK._STATE, txn_requires_abort=True), e.AbortableError),
    (CK(CK.GROUP_AUTHORIZATION_FAILED), e.AuthorizationError),
    (CK(CK.MSG_SIZE_TOO_LARGE), e.KafkaError),
])
def test_classification(err: CK, cls: type) -> None:
    got = classify(KafkaException(err), "ctx: ")
    assert type(got) is cls
    assert got.message.startswith("ctx: ")
    assert got.code == err.name()


def test_authorization_is_fatal_and_has_a_hint() -> None:
    got = classify(CK(CK.TOPIC_AUTHORIZATION_FAILED))
    assert isinstance(got, e.FatalError) and got.hint and "ACL" not in got.message


def test_raise_for_ignores_no_error() -> None:
    raise_for(None)
    raise_for(CK(CK.NO_ERROR))
    with pytest.raises(e.RetriableError):
        raise_for(CK(CK.REQUEST_TIMED_OUT))
