"""Poison records at 1%: the exactly-once stream job on a clean input and on the same input
with every 100th record replaced by malformed JSON (dead-lettered with its reason), side by
side with the raw exactly-once pass-through of the same run. Target: the poisoned run at
>= 0.9x the clean run's events/s.

Run: ``python -m benchmarks.bench_faults [--events N] [--repeat R]``
"""

from __future__ import annotations

import argparse
import statistics

from benchmarks import bench_stream
from benchmarks.bench_stream import streamml_job
from benchmarks.common import (
    Measurement,
    Report,
    _keys,
    bench_broker,
    fill_topic,
    make_events,
    new_topic,
    raw_passthrough,
)


def _poisoned(events: list[bytes], every: int = 100) -> list[bytes]:
    return [e[: len(e) // 2] if i % every == every - 1 else e for i, e in enumerate(events)]


def _median(ms: list[Measurement]) -> Measurement:
    return sorted(ms, key=lambda m: m.per_s)[len(ms) // 2]


def run(n: int, repeat: int) -> None:
    report = Report("bench_faults", f"1% poison vs clean, streamml stateless exactly-once ({n:,} events, "
                                    f"median of {repeat})")
    with bench_broker() as s:
        events = make_events(n, 100)
        clean, poison = new_topic(s, "bench.clean"), new_topic(s, "bench.poison")  # dotted: used as is
        fill_topic(s, clean, events)
        bench_stream._src_bytes = sum(map(len, events))  # the MB/s column of the streamml rows
        fill_topic(s, poison, _poisoned(events), keys=_keys(events))  # the same keys, hence partitions
        raws, cleans, poisons = [], [], []
        for _ in range(repeat):
            raws.append(raw_passthrough(s, clean, n, eos=True))
            cleans.append(streamml_job(s, clean, n, stateful=False, eos=True))
            poisons.append(streamml_job(s, poison, n, stateful=False, eos=True))
        raw, c, p = _median(raws), _median(cleans), _median(poisons)
        c.name, p.name = "streamml clean input", "streamml 1% poison (dead-lettered)"
        report.add(raw, group="EOS")
        report.add(c, raw, group="EOS")
        report.add(p, raw, group="EOS")
        paired = statistics.median(pm.per_s / cm.per_s for pm, cm in zip(poisons, cleans))
        report.note(f"poisoned / clean events/s, paired median: {paired:.2f}x (target >= 0.90x)")
    report.show()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    run(args.events, args.repeat)


if __name__ == "__main__":
    main()
