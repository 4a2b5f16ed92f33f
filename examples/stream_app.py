"""A stream app: `streamml run examples/stream_app.py --workers 2` runs every pipeline defined here.

Run as a script, it writes some events, runs the pipeline until it is idle, replays it
over the same history and checks that live and replayed features are equal.
"""

import random

import orjson
import polars as pl

from streamml.stream import count, max, mean, replay, stream, tumbling

card_stats = (
    stream("demo_payments")
    .filter(pl.col("amount") > 0)
    .window(key="card", size=tumbling("10s", grace="2s"), time="ts")
    .agg(n=count(), avg=mean("amount"), biggest=max("amount"))
    .to("demo_card_stats")
)

if __name__ == "__main__":
    import streamml
    from streamml.kafka import clients, ensure_topic
    from streamml.stream import Worker
    from streamml.verify import read_topic

    settings = streamml.connect(namespace=f"examples{random.randrange(10**6)}")
    topic = card_stats.source_topic(settings)
    ensure_topic(settings, topic, 3)
    rnd = random.Random(1)
    p = clients.producer(settings)
    for i in range(5000):
        card = f"c{rnd.randrange(20)}"
        p.produce(topic, orjson.dumps({"card": card, "amount": round(rnd.uniform(1, 200), 2), "ts": i * 50}),
                  card.encode())
    p.flush(30)
    print(Worker(card_stats, settings).run(idle_exit=3.0))
    live = [r.json() for r in read_topic(settings, card_stats.sink_topic(settings))]
    replayed = replay(card_stats, settings)
    assert sorted(map(str, live)) == sorted(map(str, replayed.to_dicts())), "live != replay"
    print(f"{len(live)} window rows; replay matches the live run")
