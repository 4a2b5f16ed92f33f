"""HTTP ingest's acknowledgement path without a broker: a fake producer stands in for librdkafka.

The fake keeps produced records until ``poll`` serves their delivery reports, as librdkafka
does; a record can be made to fail. The handler must answer only once every record of the
request was reported, list exactly the acknowledged ones on a 503, and let concurrent
requests share one sweep of delivery reports (nothing serialises them per request).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamml.config import Settings
from streamml.ingest.http import HttpOptions, _handle, _State
from streamml.ingest.writer import IngestCounts


class FakeError:
    def str(self) -> str:
        return "Local: Message timed out"

    def name(self) -> str:
        return "_MSG_TIMED_OUT"


class FakeProducer:
    """Records wait in a queue until ``poll``; values listed in ``fail`` get an error report."""

    def __init__(self, fail: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.queue: list[tuple[bytes, Any]] = []
        self.fail = fail
        self.lock = threading.Lock()
        self.sweeps: list[int] = []  # how many reports each serving poll delivered
        self.threads: set[int] = set()  # where the reports were served
        self.hold = False  # while True, poll serves nothing (the broker does not answer)

    def produce(self, topic: str, value: bytes, key: bytes | None = None, **kw: Any) -> None:
        with self.lock:
            self.queue.append((value, kw.get("on_delivery")))

    def poll(self, timeout: float = 0) -> int:
        with self.lock:
            batch, self.queue = ([], self.queue) if self.hold else (self.queue, [])
        if not batch:
            threading.Event().wait(min(timeout, 0.005))
            return 0
        self.sweeps.append(len(batch))
        self.threads.add(threading.get_ident())
        for value, cb in batch:
            cb(FakeError() if value in self.fail else None, None)
        return len(batch)

    def flush(self, timeout: float = 0) -> int:
        return 0


class FakeWriter:
    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer

    def fits(self, value: bytes, key: Any = None, headers: Any = None) -> bool:
        return True

    def produce(self, value: bytes, key: Any, headers: Any, on_delivery: Any = None) -> None:
        self.producer.produce("raw", value, key, on_delivery=on_delivery)

    def dead_letter(self, original: bytes, source: str, reason: str, *, event_id: str | None = None,
                    on_delivery: Any = None) -> None:
        self.producer.produce("dlq", original, None, on_delivery=on_delivery)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def state(tmp_path: Path) -> Any:
    settings = Settings.load(config_file=None).with_(bootstrap_servers=f"127.0.0.1:{_free_port()}",
                                                     home=tmp_path, namespace="t")
    st = _State(settings, HttpOptions(ack_timeout=0.2))
    real = st.producer
    st.counts["s"] = IngestCounts()
    yield st
    st.producer = real
    st._stop.set()
    st._thread.join(5)


def _use(st: Any, producer: FakeProducer) -> FakeWriter:
    st.producer = producer
    return FakeWriter(producer)


def _answer(response: Any) -> tuple[int, dict[str, Any]]:
    return response.status_code, orjson.loads(response.body)


def test_200_only_after_every_record_is_reported_and_served_on_the_loop(state: Any) -> None:
    fake = FakeProducer()
    writer = _use(state, fake)

    async def main() -> tuple[int, dict[str, Any], int]:
        loop = asyncio.get_running_loop()
        resp = await _handle(state, writer, "s", b'[{"a": 1, "event_id": "x"}, {"a": 2}]', "application/json", loop)
        return (*_answer(resp), threading.get_ident())

    status, body, loop_thread = asyncio.run(main())
    assert status == 200 and body["accepted"] == 2 and body["event_ids"][0] == "x"
    assert fake.queue == [] and sum(fake.sweeps) == 2
    assert fake.threads == {loop_thread}  # served by the event loop, not by the poll thread
    assert state.counts["s"].balanced and state.counts["s"].accepted == 2


def test_503_lists_exactly_the_acknowledged_records(state: Any) -> None:
    fake = FakeProducer(fail={b'{"n":1}'})
    writer = _use(state, fake)
    body_in = b'{"n":0}\n{"n":1}\n{"n":2}\n'

    async def main() -> tuple[int, dict[str, Any]]:
        return _answer(await _handle(state, writer, "s", body_in, "application/x-ndjson", asyncio.get_running_loop()))

    status, body = asyncio.run(main())
    assert status == 503 and body["failed"] == [1] and body["accepted"] == 2
    rid = body["request_id"]
    assert len(rid) == 16 and body["event_ids"] == [f"{rid}-0", f"{rid}-2"]
    c = state.counts["s"]
    assert (c.records_in, c.accepted, c.failed) == (3, 2, 1) and c.balanced


def test_unanswered_records_time_out_as_503_with_none_accepted(state: Any) -> None:
    fake = FakeProducer()
    fake.hold = True
    writer = _use(state, fake)

    async def main() -> tuple[int, dict[str, Any]]:
        return _answer(await _handle(state, writer, "s", b'{"a": 1}', "application/json", asyncio.get_running_loop()))

    status, body = asyncio.run(main())
    assert status == 503 and body["accepted"] == 0 and body["failed"] == [0] and body["event_ids"] == []
    assert state.waiting == 0


def test_concurrent_requests_share_one_sweep_of_reports(state: Any) -> None:
    fake = FakeProducer()
    writer = _use(state, fake)

    async def main() -> list[tuple[int, dict[str, Any]]]:
        loop = asyncio.get_running_loop()
        resps = await asyncio.gather(*(_handle(state, writer, "s", orjson.dumps({"i": i}), "application/json", loop)
                                       for i in range(64)))
        return [_answer(r) for r in resps]

    answers = asyncio.run(main())
    assert all(status == 200 and body["accepted"] == 1 for status, body in answers)
    # every request produced before the first sweep: one poll acknowledged all 64 records
    assert fake.sweeps[0] == 64 and sum(fake.sweeps) == 64
    assert state.waiting == 0 and not state._pumping.is_set()
