"""Continuous SQL: preview a statement in a notebook, then run the same statement as a pipeline.

Run: ``python examples/query_continuous.py``. ``EMIT CHANGES`` marks a statement over a stream.
``q.sql`` runs it over what the topic holds now; ``q.deploy`` runs it batch by batch, exactly once,
into ``<ns>.features.<to>``; ``q.changes`` yields its rows live without writing anything.
Only statements that give the same rows batch by batch can be deployed (projections, derived
columns, WHERE); GROUP BY, joins, DISTINCT, ORDER BY/LIMIT and window functions are refused.
"""

import time

import streamml
import streamml.query as q
from streamml.errors import QueryError
from streamml.ingest.generators import generate_transactions

settings = streamml.connect()
q.use(settings)
generate_transactions(settings, stream="payments", count=2000, seed=5, start_ms=int(time.time() * 1000) - 600_000)

BIG = """
SELECT event_id, card_id, amount, amount * 100 AS cents, country <> card_country AS abroad
FROM payments
WHERE amount > 500
EMIT CHANGES
"""

preview = q.sql(BIG)                                  # what the pipeline will write, for the records there now
print(preview.head())

with q.deploy(BIG, to="big_payments") as pipeline:    # the same statement, as a running stream pipeline
    print(pipeline.describe())
    pipeline.wait(preview.height, timeout=60)
written = q.topic("features.big_payments").to_polars().select(preview.columns)
assert written.sort("event_id").equals(preview.sort("event_id")), "the pipeline wrote what the preview showed"
print(f"the pipeline wrote the {written.height} rows the preview showed")

try:
    q.deploy("SELECT card_id, avg(amount) FROM payments GROUP BY card_id EMIT CHANGES", to="avg")
except QueryError as exc:
    print("refused:", exc)
