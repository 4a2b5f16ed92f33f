"""Topic administration: ensure topics exist with the right shape, idempotently."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError as CKError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from streamml.config import Settings
from streamml.errors import BrokerUnavailableError, ConfigError, RetriableError
from streamml.kafka.clients import admin as make_admin
from streamml.kafka.errors import classify, retry_unavailable

__all__ = ["metadata", "list_offsets", "TopicSpec", "ensure_topic", "ensure_topics", "delete_topics",
           "default_replication", "list_topics"]


@dataclass(frozen=True)
class TopicSpec:
    """The shape of a topic.

    ``replication=None`` picks 3 on clusters of 3+ brokers, else 1.

    >>> TopicSpec("ml.models", compacted=True).configs()["cleanup.policy"]
    'compact'
    """

    name: str
    partitions: int = 3
    replication: int | None = None
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def configs(self) -> dict[str, str]:
        out = {"cleanup.policy": "compact"} if self.compacted else {}
        out.update({k: str(v) for k, v in self.config.items()})
        return out


def metadata(client: AdminClient, timeout: float = 30.0, topic: str | None = None) -> Any:
    """Cluster metadata, retried while brokers are unreachable (one may be restarting)
    until ``timeout``; then the classified error is raised."""
    return retry_unavailable(lambda left: client.list_topics(topic, timeout=max(1.0, min(5.0, left))),
                             "cannot reach Kafka: ", timeout=timeout, pause=0.2)


def list_offsets(client: AdminClient, specs: dict[Any, Any], *, isolation: Any = None,
                 timeout: float = 30.0) -> dict[tuple[str, int], int]:
    """``{(topic, partition): offset}`` for ``specs`` (TopicPartition -> OffsetSpec), read_committed
    by default; retried while leadership moves (a broker restarting, no leader elected yet)
    until ``timeout``."""
    from confluent_kafka import IsolationLevel

    if not specs:
        return {}
    isolation = IsolationLevel.READ_COMMITTED if isolation is None else isolation

    def attempt(left: float) -> dict[tuple[str, int], int]:
        futs = client.list_offsets(specs, isolation_level=isolation, request_timeout=max(2.0, min(10.0, left)))
        return {(tp.topic, tp.partition): fut.result().offset for tp, fut in futs.items()}

    # _NOENT here is librdkafka's "No leaders found": an election is under way
    return retry_unavailable(attempt, "cannot list offsets: ", timeout=timeout, also=("_NOENT",))


def default_replication(client: AdminClient, timeout: float = 10.0) -> int:
    """3 when the cluster has at least 3 brokers, else 1."""
    md = metadata(client, timeout)
    return 3 if max(len(md.brokers), _replica_hosts(md)) >= 3 else 1


def ensure_topics(settings: Settings, specs: list[TopicSpec], timeout: float = 30.0,
                  client: AdminClient | None = None) -> list[str]:
    """Create the topics that do not exist; return the names created.

    Existing topics are left as they are, except that a partition count lower than asked
    is an error (Kafka cannot shrink partitions, and a silent mismatch breaks keying).
    """
    client = client or make_admin(settings)
    if not specs:
        return []
    for spec in specs:
        if spec.partitions < 1:
            raise ConfigError(f"topic {spec.name}: partitions must be >= 1")
    md = metadata(client, timeout)
    seen_brokers = max(len(md.brokers), _replica_hosts(md))
    rf_default = 3 if seen_brokers >= 3 else 1
    missing = [s for s in specs if s.name not in md.topics]
    created: list[str] = []
    deadline = time.monotonic() + max(timeout, 60.0)
    while missing:
        attempt = max(5.0, min(15.0, deadline - time.monotonic()))
        futures = client.create_topics(
            [NewTopic(s.name, s.partitions, s.replication or rf_default, config=s.configs()) for s in missing],
            operation_timeout=attempt, request_timeout=attempt,
        )
        retry: list[TopicSpec] = []
        for spec in missing:
            try:
                futures[spec.name].result()
                created.append(spec.name)
            except KafkaException as exc:
                code = exc.args[0].code()
                if code == CKError.TOPIC_ALREADY_EXISTS:
                    continue
                err = classify(exc, f"cannot create topic {spec.name}: ")
                # A broker of the cluster restarting is briefly unregistered: a replication factor
                # the cluster has shown it can hold is retried, not refused.
                restarting = (code == CKError.INVALID_REPLICATION_FACTOR
                              and (spec.replication or rf_default) <= seen_brokers)
                if (isinstance(err, (RetriableError, BrokerUnavailableError)) or restarting) \
                        and time.monotonic() < deadline:
                    retry.append(spec)  # e.g. the controller is being re-elected
                else:
                    raise err from None
        if retry:
            time.sleep(0.5)
        missing = retry
    _wait_visible(client, [s.name for s in specs], timeout)
    return created


def _replica_hosts(md: Any) -> int:
    """Brokers existing replicas are placed on: counts a broker that is down right now."""
    return len({r for t in md.topics.values() for p in t.partitions.values() for r in p.replicas})


def _wait_visible(client: AdminClient, names: list[str], timeout: float) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        md = metadata(client, timeout)
        if all(n in md.topics and not md.topics[n].error and md.topics[n].partitions
               and all(p.leader >= 0 for p in md.topics[n].partitions.values()) for n in names):
            return
        time.sleep(0.1)


def ensure_topic(settings: Settings, name: str, partitions: int = 3, *, replication: int | None = None,
                 compacted: bool = False, config: dict[str, Any] | None = None) -> bool:
    """Create one topic if it does not exist. Returns True when it was created."""
    spec = TopicSpec(name, partitions, replication, compacted, {k: str(v) for k, v in (config or {}).items()})
    return bool(ensure_topics(settings, [spec]))


def delete_topics(settings: Settings, names: list[str], timeout: float = 30.0) -> None:
    """Delete topics; missing ones are ignored."""
    if not names:
        return
    client = make_admin(settings)
    for name, fut in client.delete_topics(names, operation_timeout=timeout).items():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != CKError.UNKNOWN_TOPIC_OR_PART:
                raise classify(exc, f"cannot delete topic {name}: ") from None


def list_topics(settings: Settings, timeout: float = 30.0, internal: bool = False) -> dict[str, int]:
    """Topic name -> partition count."""
    md = metadata(make_admin(settings), timeout)
    return {n: len(t.partitions) for n, t in sorted(md.topics.items()) if internal or not n.startswith("__")}


def topic_config(settings: Settings, name: str, timeout: float = 10.0) -> dict[str, str]:
    """The effective configuration of a topic."""
    client = make_admin(settings)
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    try:
        entries = client.describe_configs([res])[res].result(timeout=timeout)
    except KafkaException as exc:
        raise classify(exc, f"cannot describe topic {name}: ") from None
    return {k: v.value for k, v in entries.items()}
