"""A secured cluster: SCRAM-SHA-512 over TLS with ACLs; clients use credentials from settings,
and a principal without an ACL fails fast with a clear error."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest
from confluent_kafka import KafkaError as CKError

from streamml.errors import AuthorizationError
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.kafka.local import LocalCluster
from streamml.kafka.security import add_user, grant
from streamml.kafka.transactions import TransactionalSession
from streamml.verify import verify


@pytest.fixture(scope="module")
def users(secure_cluster: LocalCluster) -> dict[str, str]:
    admin = secure_cluster.settings()
    pw = {"app": uuid.uuid4().hex, "nobody": uuid.uuid4().hex}
    for user, password in pw.items():
        add_user(admin, user, password)
    grant(admin, "app", topic_prefix="app.", group_prefix="app-", transactional_prefix="app-")
    return pw


def test_plaintext_client_is_refused(secure_cluster: LocalCluster) -> None:
    from streamml.errors import KafkaError

    plain = secure_cluster.settings().with_(kafka={})
    with pytest.raises(KafkaError):
        clients.check_access(plain, timeout=5)


def test_authorised_user_runs_transactions_with_settings_credentials(secure_cluster: LocalCluster,
                                                                     users: dict[str, str]) -> None:
    s = secure_cluster.settings(user="app", password=users["app"]).with_(namespace="app")
    assert s.kafka["security.protocol"] == "SASL_SSL" and s.kafka["sasl.username"] == "app"
    clients.check_access(s)
    src, dst = "app.raw.in", "app.raw.out"
    ensure_topic(s, src, 1)
    ensure_topic(s, dst, 1)
    p = clients.producer(s)
    for i in range(20):
        p.produce(src, orjson.dumps({"event_id": f"e{i}"}))
    assert p.flush(30) == 0
    c = clients.consumer(s, "app-copy")
    c.subscribe([src])
    tp = clients.producer(s, transactional_id="app-copy-1")
    tx = TransactionalSession(tp, c)
    done = 0
    deadline = time.monotonic() + 60
    while done < 20 and time.monotonic() < deadline:
        msgs = [m for m in c.consume(100, timeout=1.0) if m.error() is None]
        if msgs:
            from streamml.kafka.transactions import next_offsets

            with tx.transaction(next_offsets(msgs)):
                for m in msgs:
                    tp.produce(dst, m.value())
            done += len(msgs)
    c.close()
    report = verify(s, [src], [dst])
    assert report.ok and report.outputs == 20, report.summary()


def test_wrong_password_fails_fast(secure_cluster: LocalCluster, users: dict[str, str]) -> None:
    s = secure_cluster.settings(user="app", password="wrong")
    t0 = time.monotonic()
    with pytest.raises(AuthorizationError) as info:
        clients.check_access(s, timeout=60)
    assert time.monotonic() - t0 < 30, "must fail on the authentication error, not wait for the timeout"
    assert "sasl.password" in (info.value.hint or "")


def test_missing_acl_is_a_clear_error_not_a_retry_loop(secure_cluster: LocalCluster, users: dict[str, str]) -> None:
    admin = secure_cluster.settings()
    ensure_topic(admin, "app.raw.private", 1)
    s = secure_cluster.settings(user="nobody", password=users["nobody"])
    clients.check_access(s)  # authentication itself works
    with pytest.raises(AuthorizationError) as info:
        ensure_topic(s, "nobody.raw.x", 1)
    assert "AUTHORIZATION_FAILED" in str(info.value)

    errors: list = []
    p = clients.producer(s, enable_idempotence=False)
    p.produce("app.raw.private", b"x", on_delivery=lambda err, msg: errors.append(err))
    remaining = p.flush(60)
    assert remaining == 0 and len(errors) == 1
    assert errors[0].code() == CKError.TOPIC_AUTHORIZATION_FAILED
    from streamml.kafka.errors import classify

    assert isinstance(classify(errors[0]), AuthorizationError)
