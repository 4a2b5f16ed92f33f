"""Users and ACLs on a secured cluster (SCRAM-SHA-512 credentials, Kafka's StandardAuthorizer)."""

from __future__ import annotations

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from streamml.config import Settings
from streamml.kafka.clients import admin as make_admin
from streamml.kafka.errors import classify

__all__ = ["add_user", "grant", "grant_namespace"]


def add_user(settings: Settings, user: str, password: str, timeout: float = 30.0) -> None:
    """Create or update a SCRAM-SHA-512 user (the settings must be a super user's)."""
    client = make_admin(settings)
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                          password.encode())
    try:
        for fut in client.alter_user_scram_credentials([upsert], request_timeout=timeout).values():
            fut.result()
    except KafkaException as exc:
        raise classify(exc, f"cannot add user {user}: ") from None


def grant(settings: Settings, user: str, *, topic_prefix: str, group_prefix: str | None = None,
          transactional_prefix: str | None = None, create: bool = True, timeout: float = 30.0) -> None:
    """Allow ``user`` everything on topics (and groups, transactional ids) starting with the prefixes.

    ``create`` also grants CREATE on the cluster so the user may create its own topics.
    """
    principal = f"User:{user}"
    bindings = [AclBinding(ResourceType.TOPIC, topic_prefix, ResourcePatternType.PREFIXED, principal, "*",
                           AclOperation.ALL, AclPermissionType.ALLOW)]
    if group_prefix is not None:
        bindings.append(AclBinding(ResourceType.GROUP, group_prefix, ResourcePatternType.PREFIXED, principal, "*",
                                   AclOperation.ALL, AclPermissionType.ALLOW))
    if transactional_prefix is not None:
        bindings.append(AclBinding(ResourceType.TRANSACTIONAL_ID, transactional_prefix, ResourcePatternType.PREFIXED,
                                   principal, "*", AclOperation.ALL, AclPermissionType.ALLOW))
    if create:
        bindings.append(AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, principal,
                                   "*", AclOperation.CREATE, AclPermissionType.ALLOW))
        bindings.append(AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL, principal,
                                   "*", AclOperation.IDEMPOTENT_WRITE, AclPermissionType.ALLOW))
    client = make_admin(settings)
    try:
        for fut in client.create_acls(bindings, request_timeout=timeout).values():
            fut.result()
    except KafkaException as exc:
        raise classify(exc, f"cannot grant ACLs to {user}: ") from None


def grant_namespace(settings: Settings, user: str, namespace: str, timeout: float = 30.0) -> None:
    """Allow ``user`` everything streamml does inside ``namespace``: its topics
    (``<ns>.``), and the consumer groups and transactional ids streamml uses, which start
    either with the namespace or with ``streamml-`` (readers, registry writers).
    """
    grant(settings, user, topic_prefix=f"{namespace}.", group_prefix=namespace, transactional_prefix=namespace,
          timeout=timeout)
    grant(settings, user, topic_prefix=f"{namespace}.", group_prefix="streamml-", transactional_prefix="streamml-",
          create=False, timeout=timeout)
