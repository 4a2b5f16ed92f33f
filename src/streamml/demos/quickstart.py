"""The smallest real end-to-end path: events into a topic, read back, summarised."""

from __future__ import annotations

import random
import time

import orjson
from rich.console import Console
from rich.table import Table

from streamml.config import Settings
from streamml.headers import lineage
from streamml.kafka import clients
from streamml.kafka.admin import ensure_topic
from streamml.kafka.produce import send

__all__ = ["run"]


def run(settings: Settings, events: int = 10_000, console: Console | None = None) -> dict[str, float]:
    """Produce ``events`` card payments to ``<ns>.raw.payments``, read them back, summarise."""
    console = console or Console()
    topic = settings.topic("raw", "quickstart")
    ensure_topic(settings, topic, 3)
    rng = random.Random(42)
    p = clients.producer(settings)
    t0 = time.perf_counter()
    start_ms = int(time.time() * 1000)
    for i in range(events):
        card = f"card-{rng.randrange(500)}"
        eid, ts = f"q{start_ms}-{i}", start_ms + i
        ev = {"event_id": eid, "event_time": ts, "card_id": card, "amount": round(rng.expovariate(1 / 40), 2)}
        send(p, topic, orjson.dumps(ev), card.encode(),
             headers=lineage(event_id=eid, event_time_ms=ts, component="demo"))
        if i % 10_000 == 0:
            p.poll(0)
    p.flush(60)
    produced_s = time.perf_counter() - t0
    c = clients.consumer(settings, f"quickstart-{start_ms}")
    c.subscribe([topic])
    seen, total, cards = 0, 0.0, set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for m in c.consume(5000, timeout=0.5):
            value = m.value()
            if m.error() is None and value:
                ev = orjson.loads(value)
                if ev["event_id"].startswith(f"q{start_ms}-"):
                    seen += 1
                    total += ev["amount"]
                    cards.add(ev["card_id"])
        if seen >= events:
            break
    c.close()
    table = Table(title=f"quickstart on {settings.bootstrap_servers}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    summary = {"produced": events, "read back": seen, "cards": len(cards), "total amount": round(total, 2),
               "produce events/s": round(events / produced_s)}
    for k, v in summary.items():
        table.add_row(k, f"{v:,}")
    console.print(table)
    return summary
