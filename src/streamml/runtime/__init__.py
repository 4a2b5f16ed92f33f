"""The one runtime under every consume -> process -> produce loop in streamml.

- :class:`Loop` with a :class:`Processor`: poll, process, produce, commit (a transaction or
  at-least-once), one policy for rebalances, errors, recovery and stalls;
- :class:`LoopOptions`: how a loop runs (one spelling per idea);
- :class:`Clients`: the client seam for unit tests;
- :class:`Watchdog`: progress over the whole loop;
- :func:`supervise`: worker processes restarted with capped back-off (see ``supervisor``).
"""

from streamml.runtime.loop import Loop, LoopStats, Processor
from streamml.runtime.options import GUARANTEES, Guarantee, LoopOptions, instance_id, normalise_guarantee
from streamml.runtime.seam import Clients, KafkaClients
from streamml.runtime.watchdog import Watchdog, thread_stacks

__all__ = ["Loop", "LoopStats", "Processor", "LoopOptions", "Guarantee", "GUARANTEES", "instance_id",
           "normalise_guarantee", "Clients", "KafkaClients", "Watchdog", "thread_stacks"]
