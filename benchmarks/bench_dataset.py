"""Materialising a topic into Arrow with ``Dataset`` vs the raw confluent-kafka consumer.

Both read the same committed records from the start of the same topic in the same run
(read_committed). The raw baseline only touches each value; the dataset also decodes every
JSON value into columns (vectorised, a batch at a time) and builds one Arrow table, or
streams Polars batches. Each figure is the best of ``--repeat`` runs, as a ratio to the raw
consumer's best. Target: >= 0.7x.

Run: ``python -m benchmarks.bench_dataset [--events N] [--repeat R]``
"""

from __future__ import annotations

import argparse
import time

import orjson

from benchmarks.common import (
    Measurement,
    Report,
    bench_broker,
    best,
    fill_topic,
    make_events,
    measure,
    new_topic,
    raw_consume,
)
from streamml.config import Settings
from streamml.kafka import clients
from streamml.train import Dataset

SCHEMA = {"event_id": "String", "event_time": "Int64", "card_id": "String", "amount": "Float64",
          "merchant": "String", "pad": "String"}


def _dataset_arrow(s: Settings, topic: str, nbytes: int, labels: str | None = None,
                   schema: dict[str, str] | None = None) -> Measurement:
    ds = Dataset.from_topics(s, topic, labels=labels, unlabelled="keep" if labels else "drop", schema=schema)
    box: dict[str, int] = {}

    def run() -> int:
        table = ds.to_arrow()
        box["cols"] = table.num_columns
        return table.num_rows

    name = "Dataset.to_arrow()" + (" + label join" if labels else "") + (" fixed schema" if schema else "")
    return measure(name, run, nbytes, columns=0)


def _dataset_stream(s: Settings, topic: str, nbytes: int) -> Measurement:
    ds = Dataset.from_topics(s, topic)
    return measure("Dataset.iter_batches()", lambda: sum(df.height for df in ds.iter_batches()), nbytes)


def _labels_for(s: Settings, n: int) -> str:
    topic = new_topic(s, "labels", 1)
    p = clients.producer(s)
    now = int(time.time() * 1000)
    for i in range(n):
        while True:
            try:
                p.produce(topic, orjson.dumps({"event_id": f"e{i}", "label": i % 50 == 0}), f"e{i}".encode(),
                          timestamp=now)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    return topic


def run(n: int, repeat: int) -> None:
    report = Report("bench_dataset", f"topic -> Arrow with Dataset vs raw consume ({n:,} events, best of {repeat})")
    with bench_broker() as s:
        for size, parts in ((100, 1), (100, 3), (1000, 1)):
            events = make_events(n, size)
            nbytes = sum(map(len, events))
            topic = new_topic(s, f"ds{size}", parts)
            fill_topic(s, topic, events)
            group = f"{size} B, {parts} part."
            raws, arrows, streams, typed = [], [], [], []
            for _ in range(repeat):
                raws.append(raw_consume(s, topic, n))
                arrows.append(_dataset_arrow(s, topic, nbytes))
                streams.append(_dataset_stream(s, topic, nbytes))
                typed.append(_dataset_arrow(s, topic, nbytes, schema=SCHEMA))
            base = best(raws)
            report.add(base, group=group)
            for m in (best(arrows), best(typed), best(streams)):
                report.note(f"{group}: {m.name} uses {m.cpu_s_per_million / base.cpu_s_per_million:.1f}x the raw "
                            f"consumer's CPU per row (JSON decode + columnar build)")
                if m.count != n:
                    report.note(f"{group}: {m.name} returned {m.count} rows, expected {n}")
                report.add(m, base, group=group)
            if size == 100 and parts == 1:
                labels = _labels_for(s, n)
                joined = best([_dataset_arrow(s, topic, nbytes, labels) for _ in range(repeat)])
                report.add(joined, base, group=group)
                report.note("'+ label join' also reads an equally long labels topic and joins it point-in-time; "
                            "its rows/s counts feature rows only.")
    report.note("Rows/s ratio to the raw consumer measured in the same run on the same topic. "
                "CPU-s/M: CPU seconds of this process per million rows.")
    report.show()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    run(a.events, a.repeat)


if __name__ == "__main__":
    main()
