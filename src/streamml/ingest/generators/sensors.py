"""Synthetic machine sensors whose readings degrade before failures, deterministic given a seed.

Each machine reports every ``interval_ms``. It runs a random number of readings until it
fails; over the last part of that life (its degradation phase) vibration and temperature
climb, pressure sags and the speed gets unsteady, more and more steeply. After a failure
the machine is repaired and starts a new life.

Record fields (``<ns>.raw.<stream>``, key ``machine_id``): ``event_id`` (``s<seed>-<n>``),
``event_time`` (ms), ``machine_id`` (``machine-007``), ``machine_type`` (A, B, C),
``temperature`` (°C), ``vibration`` (mm/s), ``pressure`` (bar), ``rpm``, ``load`` (0-1).

Label fields (``<ns>.labels.<stream>``, key ``event_id``): ``event_id``, ``machine_id``,
``failure`` (1 when the machine fails within ``horizon_ms`` after the reading), ``failed_at``
(the failure's time, ms), ``time_to_failure_ms``, ``event_time``, ``label_time`` (the end of
the horizon, when the truth is known).

>>> evs = list(sensors(seed=1, count=3000, machines=5, mean_life=300))
>>> len(evs), evs[0].key, sorted(evs[0].record)[:3]
(3000, 'machine-000', ['event_id', 'event_time', 'load'])
>>> fail = [e.record["vibration"] for e in evs if e.label["failure"]]
>>> ok = [e.record["vibration"] for e in evs if not e.label["failure"]]
>>> sum(fail) / len(fail) > 1.5 * sum(ok) / len(ok)
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from streamml.errors import ConfigError
from streamml.ingest.generators.transactions import DEFAULT_START_MS, Event

__all__ = ["sensors"]

_TYPES = {"A": (65.0, 2.0, 6.0, 1500.0), "B": (72.0, 2.8, 8.0, 1800.0), "C": (58.0, 1.5, 4.5, 1200.0)}


@dataclass
class _Machine:
    id: str
    type: str
    age: int = 0
    life: int = 0
    degrade_from: int = 0
    failed_at: int = 0


def sensors(seed: int = 0, *, count: int | None = None, start_ms: int = DEFAULT_START_MS, machines: int = 20,
            interval_ms: int = 1000, mean_life: int = 2000, degrade_fraction: float = 0.2,
            horizon_ms: int | None = None) -> Iterator[Event]:
    """Yield sensor readings, machine by machine each interval (endless when ``count`` is None).

    ``mean_life`` is the mean number of readings between failures; ``horizon_ms`` (default:
    the length of a typical degradation phase) is how far ahead the label looks.
    """
    if machines < 1 or interval_ms < 1 or mean_life < 10 or not 0 < degrade_fraction < 1:
        raise ConfigError("machines >= 1, interval_ms >= 1, mean_life >= 10 and 0 < degrade_fraction < 1 please")
    rng = random.Random(seed)
    horizon = horizon_ms if horizon_ms is not None else int(mean_life * degrade_fraction * interval_ms)
    fleet = [_Machine(f"machine-{i:03d}", "ABC"[i % 3]) for i in range(machines)]

    def new_life(m: _Machine, now: int) -> None:
        m.age = 0
        m.life = max(20, int(rng.gammavariate(4.0, mean_life / 4.0)))
        m.degrade_from = int(m.life * (1 - degrade_fraction * rng.uniform(0.7, 1.3)))
        m.failed_at = now + m.life * interval_ms

    for m in fleet:
        new_life(m, start_ms)
        m.age = rng.randrange(m.life // 2)              # machines do not all start new
        m.failed_at = start_ms + (m.life - m.age) * interval_ms
    n = 0
    tick = 0
    while True:
        now = start_ms + tick * interval_ms
        for m in fleet:
            if count is not None and n >= count:
                return
            base_t, base_v, base_p, base_rpm = _TYPES[m.type]
            load = min(1.0, max(0.0, 0.6 + 0.25 * rng.gauss(0, 1)))
            wear = 0.0
            if m.age >= m.degrade_from:
                wear = ((m.age - m.degrade_from) / max(1, m.life - m.degrade_from)) ** 2
            ts = now + rng.randrange(max(1, interval_ms // 10))
            rec = {
                "event_id": f"s{seed}-{n:09d}", "event_time": ts, "machine_id": m.id, "machine_type": m.type,
                "temperature": round(base_t + 8 * load + 25 * wear + rng.gauss(0, 1.2), 2),
                "vibration": round(max(0.0, base_v * (1 + 0.2 * load) + 9 * wear + rng.gauss(0, 0.25)), 3),
                "pressure": round(base_p - 2.5 * wear + rng.gauss(0, 0.15), 3),
                "rpm": round(base_rpm * (1 - 0.05 * load) + rng.gauss(0, 15 + 150 * wear), 1),
                "load": round(load, 3),
            }
            ttf = m.failed_at - ts
            label = {"event_id": rec["event_id"], "machine_id": m.id, "failure": int(0 <= ttf <= horizon),
                     "failed_at": m.failed_at, "time_to_failure_ms": ttf, "event_time": ts,
                     "label_time": ts + horizon}
            n += 1
            yield Event(rec, m.id, label)
            m.age += 1
            if m.age >= m.life:
                new_life(m, m.failed_at)
        tick += 1
