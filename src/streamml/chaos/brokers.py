"""Broker chaos on a local cluster: SIGKILL or clean restarts of brokers and partition leaders."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field

from streamml.config import Settings
from streamml.kafka.inspect import partition_leader, wait_fully_replicated
from streamml.kafka.local import LocalCluster

__all__ = ["BrokerChaos"]


@dataclass
class BrokerChaos:
    """Kills and restarts brokers of a local cluster, and counts what it did."""

    cluster: LocalCluster
    settings: Settings
    log: list[str] = field(default_factory=list)

    def bounce(self, node_id: int, *, hard: bool, down_for: float = 2.0) -> None:
        t0 = time.monotonic()
        self.cluster.kill_node(node_id, signal.SIGKILL if hard else signal.SIGTERM, wait=60)
        t_down = time.monotonic()
        time.sleep(down_for)
        self.cluster.start_node(node_id)
        self.cluster.wait_ready(timeout=120)
        t_ready = time.monotonic()
        healed = wait_fully_replicated(self.settings, timeout=120)
        t_end = time.monotonic()
        self.log.append(f"{'SIGKILL' if hard else 'clean restart'} node {node_id}: back in {t_end - t0:.1f}s "
                        f"(stopped {t_down - t0:.1f}s, serving {t_ready - t_down:.1f}s, in sync "
                        f"{t_end - t_ready:.1f}s), replicas in sync: {healed}")

    def each_broker_in_turn(self, *, hard: bool) -> None:
        for node in self.cluster.node_infos:
            self.bounce(node.node_id, hard=hard)

    def leader_kills(self, topic: str, times: int = 5, partition: int = 0) -> None:
        for i in range(times):
            leader = -1
            deadline = time.monotonic() + 60
            while leader < 0 and time.monotonic() < deadline:
                leader = partition_leader(self.settings, topic, partition)
            self.bounce(leader, hard=(i % 2 == 0))

    @property
    def faults(self) -> int:
        return len(self.log)
