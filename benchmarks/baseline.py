"""The raw confluent-kafka baseline: produce, consume and consume→produce pass-through
of 100-byte and 1 KB JSON events. Every other benchmark divides by these figures.

Run: ``python -m benchmarks.baseline [--events N]``
"""

from __future__ import annotations

import argparse

from benchmarks.common import Report, bench_broker, make_events, new_topic, raw_consume, raw_passthrough, raw_produce


def run(n: int) -> None:
    report = Report("baseline", f"raw confluent-kafka on the local broker ({n:,} events per run)")
    with bench_broker() as s:
        for size in (100, 1000):
            events = make_events(n, size)
            group = f"{size} B"
            topic = new_topic(s, f"base{size}", 1)
            prod = raw_produce(s, events, topic)
            report.add(prod, group=group)
            cons = raw_consume(s, topic, n)
            report.add(cons, group=group)
            report.add(raw_passthrough(s, topic, n), group=group)
            report.add(raw_passthrough(s, topic, n, eos=True), group=group)
    report.note("CPU-s/M: CPU seconds of the benchmark process per million events (broker CPU not counted).")
    report.show()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=500_000)
    run(ap.parse_args().events)


if __name__ == "__main__":
    main()
