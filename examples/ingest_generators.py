"""Synthetic streams: card payments with fraud (and a new pattern mid-run), machine sensors.

Run: ``python examples/ingest_generators.py``. The pure generators need no Kafka; the
runners write events to ``<ns>.raw.<stream>`` and the delayed labels to ``<ns>.labels.<stream>``.
"""

from collections import Counter

import streamml
from streamml.ingest import generate_sensors, generate_transactions, sensors, transactions

# without Kafka: deterministic given the seed
events = list(transactions(seed=1, count=20_000, fraud_rate=0.01, new_pattern_at=10_000))
print(events[0].record)
print("patterns before the switch:", dict(Counter(e.label["pattern"] for e in events[:10_000])))
print("patterns after the switch: ", dict(Counter(e.label["pattern"] for e in events[10_000:])))
readings = list(sensors(seed=1, count=5_000, machines=5, mean_life=400))
print("readings within the failure horizon:", sum(e.label["failure"] for e in readings))

# into Kafka
settings = streamml.connect()
tx = generate_transactions(settings, stream="payments_example", count=5_000, seed=3, fraud_rate=0.01)
print(tx.as_dict())
se = generate_sensors(settings, stream="sensors_example", duration=2, rate=500, machines=5)
print(se.as_dict())
assert tx.events == tx.labels == 5_000
