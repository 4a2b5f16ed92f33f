"""SQL over topics with DuckDB: aggregates, filters and joins between topics.

Run: ``python examples/query_sql.py``. Table names are topic names (short names resolve:
``payments`` -> ``<ns>.raw.payments``, ``labels.payments`` -> ``<ns>.labels.payments``).
Each topic named is pinned and read once, then DuckDB runs the statement unchanged.
"""

import time

import streamml
import streamml.query as q
from streamml.ingest.generators import generate_transactions

settings = streamml.connect()
q.use(settings)
generate_transactions(settings, stream="payments", count=3000, seed=2, fraud_rate=0.03,
                      start_ms=int(time.time() * 1000) - 3_600_000, label_delay_ms=1_000)

# an aggregate over one topic
top = q.sql("""
    SELECT card_id, count(*) AS n, round(sum(amount), 2) AS spent
    FROM payments GROUP BY card_id ORDER BY n DESC, card_id LIMIT 5
""")
print(top)

# a join between two topics: payments and their (delayed) fraud labels
rates = q.sql("""
    SELECT p.merchant_category, count(*) AS n, round(avg(l.is_fraud), 4) AS fraud_rate
    FROM payments p JOIN labels.payments l USING (event_id)
    GROUP BY 1 ORDER BY fraud_rate DESC
""", output="pandas")
print(rates.head(10))
assert rates["n"].sum() == 3000

# metadata columns are columns like any other
per_partition = q.sql("SELECT _partition, count(*) AS n, max(_offset) AS last FROM payments GROUP BY 1 ORDER BY 1")
print(per_partition)
