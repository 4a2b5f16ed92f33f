"""Look at a topic as a table: the first records, a range by offset or by time, pandas/Polars/Arrow.

Run: ``python examples/query_topic.py`` (uses STREAMML_BOOTSTRAP_SERVERS, or starts the local cluster).
Every read is a snapshot pinned at call time (each partition's last stable offset), of committed
records only: a topic that keeps growing never makes a read wait or change under you.
"""

import time
from datetime import datetime, timezone

import streamml
import streamml.query as q
from streamml.ingest.generators import generate_transactions

settings = streamml.connect()
q.use(settings)

# 2000 synthetic card payments into <ns>.raw.payments, event time starting 10 minutes ago
start_ms = int(time.time() * 1000) - 600_000
generate_transactions(settings, stream="payments", count=2000, seed=1, start_ms=start_ms)

payments = q.topic("payments")          # a short name: resolves to <ns>.raw.payments
print(payments, "partitions:", payments.partitions())
print(payments.head(3))                 # the first records by time, with _partition, _offset, _timestamp, _key

# the last 5 offsets of every partition, as pandas
last = payments.range(start=-5).to_pandas()
print(last[["card_id", "amount", "_partition", "_offset"]])

# by time: records whose Kafka timestamp is in the last minute (the generator wrote them just now: all of them)
recent = payments.range(start=datetime.fromtimestamp(time.time() - 60, tz=timezone.utc)).to_arrow()
print("records in the last minute:", recent.num_rows)
assert recent.num_rows == 2000
