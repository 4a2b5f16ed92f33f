"""Ingest a CSV file with a schema: bad rows go to the dead-letter topic, a re-run resumes.

Run: ``python examples/ingest_files.py`` (uses STREAMML_BOOTSTRAP_SERVERS, or starts the local cluster).
"""

import tempfile
import time
from pathlib import Path

import streamml
from streamml import headers as H
from streamml.ingest import ingest_files
from streamml.kafka import consumer
from streamml.schema import Field, Schema

settings = streamml.connect()
folder = Path(tempfile.mkdtemp())
csv = folder / "payments.csv"
rows = ["card_id,amount,currency,ts"] + [f"c{i % 7},{i * 1.25:.2f},EUR,2024-05-01T12:{i % 60:02d}:00Z"
                                         for i in range(1, 200)]
rows[10] = "c3,not-a-number,EUR,2024-05-01T12:00:00Z"      # wrong type
rows[20] = "c4,12.00"                                       # malformed line
rows[30] = "c5,-3.00,EUR,2024-05-01T12:00:00Z"              # out of range
csv.write_text("\n".join(rows) + "\n")

schema = Schema("payments", [Field("card_id", str), Field("amount", float, min=0),
                             Field("currency", str, enum=["EUR", "USD"]), Field("ts", "timestamp")])
stream = f"payments{int(time.time())}"
report = ingest_files(settings, csv, stream, schema=schema, key="card_id", time_column="ts")
c = report.counts
print(f"in {c.records_in}, accepted {c.accepted}, dead-lettered {c.dead_lettered}")
assert c.records_in == c.accepted + c.dead_lettered and c.dead_lettered == 3

# why were they rejected? the dead-letter topic says, in headers
dlq = consumer(settings, f"example-{time.time_ns()}")
dlq.subscribe([settings.topic("dlq")])
seen = 0
deadline = time.monotonic() + 20
while seen < 3 and time.monotonic() < deadline:
    for m in dlq.consume(100, timeout=0.5):
        h = H.as_dict(m.headers())
        if m.error() is None and h.get("sm.stream") == stream:
            print(f"  {h[H.SOURCE]}: {h[H.REASON]}  <- {m.value()!r}")
            seen += 1
dlq.close()

# a second run of the same source continues after its checkpoint: nothing is written twice
again = ingest_files(settings, csv, stream, schema=schema, key="card_id", time_column="ts")
print(f"re-run: resumed={again.resumed}, new records={again.counts.records_in}")
assert again.resumed and again.counts.records_in == 0
