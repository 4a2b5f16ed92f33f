"""Streaming a topic into PyTorch batches with ``Dataset.to_torch()`` vs the raw confluent-kafka consumer.

Both read the same committed records (the whole topic, read_committed) in the same run. The raw
baseline only touches each value; ``to_torch()`` also decodes the JSON values into columns,
builds float32 feature tensors and cuts them into batches of ``--batch-size`` rows, in this
process (``num_workers=0``) or in two DataLoader workers each reading its own shard of the
partitions (``num_workers=2``; their CPU is not in this process's CPU-s/M). Each figure is the
best of ``--repeat`` runs, as a ratio to the raw consumer's best.

Run: ``python -m benchmarks.bench_torch [--events N] [--repeat R] [--batch-size B]``
"""

from __future__ import annotations

import argparse
from typing import Any

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
from streamml.train import Dataset


def _rows(batches: Any) -> int:
    return sum(int(b[0].shape[0]) for b in batches)


def _stream(ds: Dataset, nbytes: int) -> Measurement:
    return measure("Dataset.iter_batches()", lambda: sum(df.height for df in ds.iter_batches()), nbytes)


def _torch(ds: Dataset, nbytes: int, batch_size: int, workers: int, shuffle_buffer: int = 0) -> Measurement:
    it = ds.to_torch(batch_size=batch_size, shuffle_buffer=shuffle_buffer)
    name = f"to_torch() workers={workers}" + (f" shuffle={shuffle_buffer:,}" if shuffle_buffer else "")
    if workers == 0:
        return measure(name, lambda: _rows(it), nbytes)
    return measure(name, lambda: _rows(it.loader(num_workers=workers)), nbytes)


def run(n: int, repeat: int, batch_size: int) -> None:
    import torch

    torch.set_num_threads(1)
    report = Report("bench_torch", f"topic -> torch batches with Dataset.to_torch() vs raw consume "
                                   f"({n:,} events, batch {batch_size}, best of {repeat})")
    with bench_broker() as s:
        for parts in (1, 4):
            events = make_events(n, 100)
            nbytes = sum(map(len, events))
            topic = new_topic(s, f"torch{parts}", parts)
            fill_topic(s, topic, events)
            group = f"100 B, {parts} part."
            ds = Dataset.from_topics(s, topic, features=["amount", "event_time"])
            raws: list[Measurement] = []
            runs: dict[str, list[Measurement]] = {}
            for _ in range(repeat):
                raws.append(raw_consume(s, topic, n))
                for m in (_stream(ds, nbytes),
                          _torch(ds, nbytes, batch_size, 0),
                          _torch(ds, nbytes, batch_size, 0, shuffle_buffer=10_000),
                          _torch(ds, nbytes, batch_size, 2)):
                    runs.setdefault(m.name, []).append(m)
            base = best(raws)
            report.add(base, group=group)
            for ms in runs.values():
                m = best(ms)
                if m.count != n:
                    report.note(f"{group}: {m.name} returned {m.count} rows, expected {n}")
                report.add(m, base, group=group)
    report.note("Rows/s ratio to the raw consumer measured in the same run on the same topic. CPU-s/M: CPU "
                "seconds of this process per million rows (DataLoader workers' CPU is not counted). "
                "workers=2 includes starting the two worker processes.")
    report.show()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    a = ap.parse_args()
    run(a.events, a.repeat, a.batch_size)


if __name__ == "__main__":
    main()
