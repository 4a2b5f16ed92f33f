"""Build a feature pipeline and unit-test it without a broker.

Run: python examples/stream_testdriver.py
"""

import polars as pl

from streamml.stream import TestDriver, count, mean, stream, tumbling

# Per-card spending features over 1-minute event-time windows; records may arrive up to
# 10 s late and still count. Each window is emitted once, when it closes.
card_features = (
    stream("payments")
    .filter(pl.col("amount") > 0)
    .with_columns(big=pl.col("amount") > 100)
    .window(key="card", size=tumbling("1m", grace="10s"), time="ts")
    .agg(n=count(), avg_amount=mean("amount"))
    .to("card_features")
)

print(card_features.describe())
print("pipeline hash:", card_features.fingerprint())

driver = TestDriver(card_features)
driver.send({"card": "c1", "amount": 20.0, "ts": 1_000}, {"card": "c1", "amount": 40.0, "ts": 30_000},
            {"card": "c2", "amount": 5.0, "ts": 59_000})
driver.send({"card": "c1", "amount": 60.0, "ts": 65_000})           # stream time 65 s: window still in grace
driver.send({"card": "c2", "amount": 15.0, "ts": 50_000})           # late but within grace: counted
out = driver.send({"card": "c1", "amount": 1.0, "ts": 75_000})      # 75 s >= 60 s + 10 s: window [0, 60 s) closes
print(out)
assert out == [{"card": "c1", "window_start": 0, "window_end": 60_000, "n": 2, "avg_amount": 30.0},
               {"card": "c2", "window_start": 0, "window_end": 60_000, "n": 2, "avg_amount": 10.0}]
driver.send({"card": "c2", "amount": 99.0, "ts": 10_000})           # beyond grace: late, dropped and counted
assert driver.late == 1
