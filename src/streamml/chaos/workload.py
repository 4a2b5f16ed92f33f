"""Workloads for fault injection: an acknowledging producer (the ingest stage), stream workers
and scorers as real processes (the CLI), and bookkeeping for the verifier."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from streamml.config import Settings
from streamml.headers import lineage
from streamml.kafka import clients
from streamml.kafka.produce import send

__all__ = ["AckedProducer", "Procs", "STATELESS_APP", "stage_report", "write_app", "wait_until"]


class AckedProducer(threading.Thread):
    """Writes JSON events at ``rate``/s and records the ids the brokers acknowledged.

    ``n`` events, or with ``n=None`` until :meth:`stop`; ``sent`` counts what was handed to the client.
    """

    def __init__(self, settings: Settings, topic: str, n: int | None, rate: float, keys: int = 20, seed: int = 3,
                 poison_every: int = 0) -> None:
        super().__init__(daemon=True)
        self.settings, self.topic, self.n, self.rate, self.keys = settings, topic, n, rate, keys
        self.sent = 0
        self._halt = threading.Event()
        self.rng = random.Random(seed)
        self.poison_every = poison_every
        self.acked: set[str] = set()
        self.failed: list[str] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.poison: set[str] = set()

    def run(self) -> None:
        p = clients.producer(self.settings, message_timeout_ms=300_000)

        def reporter(eid: str) -> Any:
            def report(err: Any, msg: Any) -> None:
                (self.failed.append(eid) if err is not None else self.acked.add(eid))
            return report

        chunk = 100
        start = 0
        while (self.n is None or start < self.n) and not self._halt.is_set():
            t0 = time.monotonic()
            end = start + chunk if self.n is None else min(self.n, start + chunk)
            for i in range(start, end):
                eid = f"e{i}"
                key = f"k{self.rng.randrange(self.keys)}"
                if self.poison_every and i % self.poison_every == self.poison_every - 1:
                    value = b'{"event_id": "' + eid.encode() + b'", "amount": "not-a-number",'
                    self.poison.add(eid)
                else:
                    ev = {"event_id": eid, "event_time": 1_700_000_000_000 + i, "key": key,
                          "amount": round(self.rng.uniform(1, 500), 2), "n": i}
                    self.events[eid] = ev
                    value = orjson.dumps(ev)
                send(p, self.topic, value, key.encode(), on_delivery=reporter(eid),
                     headers=lineage(event_id=eid, event_time_ms=1_700_000_000_000 + i, component="faults.ingest"))
            self.sent, start = end, end
            p.poll(0)
            time.sleep(max(0.0, chunk / self.rate - (time.monotonic() - t0)))
        p.flush(300)

    def stop(self) -> None:
        """End an open-ended run after the chunk in flight (everything sent is still flushed)."""
        self._halt.set()


class Procs:
    """CLI worker processes by name; SIGKILL, SIGSTOP/SIGCONT and restart them."""

    def __init__(self, settings: Settings, tmp: Path, extra_env: dict[str, str] | None = None) -> None:
        self.settings, self.tmp = settings, tmp
        self.cmds: dict[str, list[str]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = dict(os.environ, STREAMML_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "",
                        STREAMML_NAMESPACE=settings.namespace, STREAMML_HOME=str(settings.home),
                        **{f"STREAMML_KAFKA__{k.upper().replace('.', '_')}": v for k, v in settings.kafka.items()},
                        **(extra_env or {}))
        self.kills = 0
        self.pauses = 0

    def start(self, name: str, args: list[str] | None = None) -> None:
        if args is not None:
            self.cmds[name] = [sys.executable, "-m", "streamml", *args]
        log = open(self.tmp / f"{name}.log", "ab")
        # a session of its own: stop_all() signals the whole group, supervised children included
        self.procs[name] = subprocess.Popen(self.cmds[name], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def kill(self, name: str, restart: bool = True) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)
        self.kills += 1
        if restart:
            self.start(name)

    def pause(self, name: str, seconds: float) -> None:
        self.procs[name].send_signal(signal.SIGSTOP)
        time.sleep(seconds)
        self.procs[name].send_signal(signal.SIGCONT)
        self.pauses += 1

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM every process group, SIGKILL what is left after ``timeout``."""
        for p in self.procs.values():
            if p.poll() is None:
                _signal_group(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
            _signal_group(p.pid, signal.SIGKILL)  # children a supervisor left behind

    def dump_stacks(self, settle: float = 1.0) -> None:
        """Ask every live process for its threads' stacks (SIGUSR1: they go to its log).

        Only processes that catch SIGUSR1 get it: one still importing would be killed by it.
        """
        for p in self.procs.values():
            if p.poll() is None and catches(p.pid, signal.SIGUSR1):
                p.send_signal(signal.SIGUSR1)
        time.sleep(settle)

    def logs(self, lines: int = 40) -> str:
        """The tail of every process's log, each under its name."""
        return "\n".join(f"--- {name} ---\n{self.log(name, lines)}" for name in self.procs)

    def log(self, name: str, lines: int = 30) -> str:
        text = (self.tmp / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


STATELESS_APP = """
import polars as pl
from streamml.stream import stream
copy = (stream({src!r}).filter(pl.col("amount") > 0)
        .with_columns((pl.col("amount") * 100).round(0).cast(pl.Int64).alias("cents"))
        .to({dst!r}))
"""


def write_app(tmp: Path, src: str, dst: str) -> Path:
    path = tmp / f"app_{src}_{dst}.py"
    path.write_text(STATELESS_APP.format(src=src, dst=dst))
    return path


def catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (Linux: ``SigCgt`` in /proc; else assumed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return sys.platform != "linux"
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def stage_report(settings: Settings, topics: list[str]) -> str:
    """Where a pipeline stands, for a failure message: per partition of each topic the high
    watermark and the last stable offset (a gap means an open transaction), and the committed
    offsets of the namespace's consumer groups."""
    from streamml.kafka.read import watermarks
    from streamml.monitor.lag import consumer_lag

    lines = []
    try:
        hw = watermarks(settings, topics, committed=False, timeout=10)
        lso = watermarks(settings, topics, committed=True, timeout=10)
        for (t, p), (_, high) in sorted(hw.items()):
            lines.append(f"{t}[{p}] high={high} stable={lso.get((t, p), (0, -1))[1]}")
        for row in consumer_lag(settings, None, prefix=settings.namespace, timeout=10):
            lines.append(f"group {row['group']} {row['topic']}[{row['partition']}] committed={row['committed']}")
    except Exception as exc:  # a report must not hide the failure it explains
        lines.append(f"(no report: {exc})")
    return "\n".join(lines)


def wait_until(pred: Any, timeout: float, every: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:  # noqa: BLE001 - topics may not exist yet
            pass
        time.sleep(every)
    return False
