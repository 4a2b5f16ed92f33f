"""Fault injection and verification tools: the fault suite and ``streamml soak`` use them.

- :class:`BrokerChaos` kills and restarts brokers of a local cluster;
- :class:`PartitionProxy` cuts clients off from the brokers (a network partition);
- :class:`AckedProducer` writes events and records which ones the brokers acknowledged;
- :class:`Procs` runs CLI workers and kills, pauses and restarts them.
"""

from streamml.chaos.brokers import BrokerChaos
from streamml.chaos.proxy import PartitionProxy
from streamml.chaos.workload import STATELESS_APP, AckedProducer, Procs, stage_report, wait_until, write_app

# soak (streamml.chaos.soak) is imported on use: it pulls in scikit-learn and the registry

__all__ = ["BrokerChaos", "PartitionProxy", "AckedProducer", "Procs", "STATELESS_APP", "stage_report", "write_app",
           "wait_until"]
