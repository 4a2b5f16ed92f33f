"""Follow a topic live: a generator of records committed after it started, filtered, in partition order.

Run: ``python examples/query_tail.py``. The start offsets are pinned when ``tail()`` returns, so
nothing produced afterwards is missed. It stops at ``max_records``, after ``timeout`` /
``idle_timeout`` seconds, on ``close()``, or at the end of the ``with`` block.
"""

import threading
import time

import streamml
import streamml.query as q
from streamml.ingest.generators import generate_transactions

settings = streamml.connect()
q.use(settings)
generate_transactions(settings, stream="payments", count=100, seed=3)   # something already there


def more() -> None:
    generate_transactions(settings, stream="payments", count=1000, seed=4, start_ms=int(time.time() * 1000))


with q.tail("payments", where="amount > 200 AND channel = 'online'", max_records=10, idle_timeout=20) as live:
    threading.Thread(target=more).start()          # produced after the tail started
    for rec in live:
        print(f"{rec['_partition']}/{rec['_offset']:>5}  {rec['card_id']}  {rec['amount']:>9.2f}  {rec['country']}")

print(f"{live.delivered} records; the tail is closed: {live!r}")
assert live.delivered == 10
