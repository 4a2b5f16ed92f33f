"""The HTTP endpoint over real HTTP against the real broker: auth, limits, partial accept, 503, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import uvicorn
from helpers import drain

from streamml import headers as H
from streamml.config import Settings
from streamml.ingest import HttpOptions, create_app
from streamml.schema import Field, Schema

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCHEMA = Schema("clicks", [Field("user", str), Field("n", int, min=0)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(settings: Settings, options: HttpOptions) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, options), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def endpoint(settings: Settings) -> Iterator[str]:
    yield from serve(settings, HttpOptions(token=TOKEN, max_body_bytes=2 << 20, schemas={"clicks": SCHEMA}))


def test_auth_limits_partial_accept_and_dead_letters(settings: Settings, endpoint: str) -> None:
    url = f"{endpoint}/v1/streams/clicks/events"
    with httpx.Client(timeout=30) as http:
        assert http.post(url, json=[{"user": "a", "n": 1}]).status_code == 401
        for auth in ("Bearer wrong", "Basic " + TOKEN, TOKEN):
            r = http.post(url, json=[{"user": "a", "n": 1}], headers={"Authorization": auth})
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", auth
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"] == "urn:streamml:problem:unauthorized" and r.json()["status"] == 401
        assert http.get(f"{endpoint}/v1/streams/clicks/stats").status_code == 401
        r404 = http.post(f"{endpoint}/v1/streams/not%20a%20name/events", json=[{}], headers=AUTH)
        assert r404.status_code == 404 and r404.json()["type"] == "urn:streamml:problem:unknown-stream"

        api = http.get(f"{endpoint}/openapi.json").json()
        op = api["paths"]["/v1/streams/{stream}/events"]["post"]
        assert {"200", "400", "401", "413", "503"} <= set(op["responses"])
        assert "partial accept" in op["responses"]["400"]["description"]
        assert "application/x-ndjson" in op["requestBody"]["content"]

        ok = http.post(url, json=[{"user": "a", "n": 1, "event_id": "mine-1"}, {"user": "b", "n": 2}], headers=AUTH)
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert body["accepted"] == 2 and body["event_ids"][0] == "mine-1"

        nd = b"\n".join([b'{"user": "c", "n": 3}', b'{"user": "d", "n": ', b'{"user": "e", "n": 5}',
                         b'{"user": "f", "n": "six"}', b'{"user": "g", "n": -1}', b'{"user": "h", "n": 8}'])
        part = http.post(url, content=nd, headers={**AUTH, "Content-Type": "application/x-ndjson"})
        assert part.status_code == 400 and part.headers["content-type"] == "application/problem+json"
        pb = part.json()
        assert pb["type"] == "urn:streamml:problem:invalid-records" and pb["status"] == 400
        assert pb["detail"] == "3 of 6 record(s) invalid; the valid ones were accepted"
        assert pb["accepted"] == 3 and pb["dead_lettered"] == 3 and len(pb["event_ids"]) == 3
        assert [(e["index"], e["reason"].split(":")[0]) for e in pb["errors"]] == [
            (1, "malformed JSON"), (3, "field 'n'"), (4, "field 'n'")]
        assert "below the minimum 0" in pb["errors"][2]["reason"]

        big_record = json.dumps([{"user": "x" * 1_200_000, "n": 1}])
        too_big = http.post(url, content=big_record, headers={**AUTH, "Content-Type": "application/json"})
        assert too_big.status_code == 400 and "record too large" in too_big.json()["errors"][0]["reason"]

        huge = b"[" + b",".join([b'{"user": "zzzzzzzzzzzzzzzzzzzz", "n": 1}'] * 80_000) + b"]"
        r413 = http.post(url, content=huge, headers={**AUTH, "Content-Type": "application/json"})
        assert r413.status_code == 413 and "over the limit" in r413.json()["detail"]
        assert r413.json()["type"] == "urn:streamml:problem:body-too-large"

        def chunks() -> Iterator[bytes]:
            yield b"["
            for _ in range(80_000):
                yield b'{"user": "zzzzzzzzzzzzzzzzzzzz", "n": 1},'
            yield b'{"user": "z", "n": 1}]'

        chunked = http.post(url, content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
        assert chunked.status_code == 413

        stats = http.get(f"{endpoint}/v1/streams/clicks/stats", headers=AUTH).json()
        assert (stats["records_in"], stats["accepted"], stats["dead_lettered"], stats["failed"]) == (9, 5, 4, 0)
        assert stats["balanced"]

    raw = drain(settings, settings.topic("raw", "clicks"), expect=5)
    assert sorted(json.loads(m["value"])["user"] for m in raw) == ["a", "b", "c", "e", "h"]
    assert {m["headers"][H.EVENT_ID] for m in raw} == set(body["event_ids"]) | set(pb["event_ids"])
    assert all(m["headers"][H.COMPONENT] == "ingest.http" and m["headers"][H.SCHEMA] == "clicks" for m in raw)
    dlq = drain(settings, settings.topic("dlq"), expect=4)
    sources = {m["headers"][H.SOURCE] for m in dlq}
    assert {f"http:{pb['request_id']}#{i}" for i in (1, 3, 4)} < sources and len(sources) == 4
    trunc = [m for m in dlq if "sm.original_size" in m["headers"]]
    assert len(trunc) == 1 and len(trunc[0]["value"]) <= 64 * 1024
    # an element of a JSON array is dead-lettered re-encoded compactly; an NDJSON line as sent
    assert int(trunc[0]["headers"]["sm.original_size"]) == len(b'{"user":"' + b"x" * 1_200_000 + b'","n":1}')
    assert {m["value"] for m in dlq} >= {b'{"user": "d", "n": ', b'{"user": "f", "n": "six"}'}


def test_503_with_retry_after_when_kafka_is_unavailable(settings: Settings) -> None:
    dead = settings.with_(bootstrap_servers=f"127.0.0.1:{free_port()}")
    for base in serve(dead, HttpOptions(token=TOKEN, ack_timeout=3)):
        with httpx.Client(timeout=30) as http:
            r = http.post(f"{base}/v1/streams/s/events", json=[{"a": 1}], headers=AUTH)
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert r.headers["content-type"] == "application/problem+json"
            assert "Kafka is unavailable" in r.json()["detail"] and r.json()["type"].endswith(":kafka-unavailable")
            # not ready (no traffic, please) but alive (a restart would not bring Kafka back)
            for probe in ("/readyz", "/healthz"):
                nr = http.get(f"{base}{probe}")
                assert nr.status_code == 503 and nr.json()["type"] == "urn:streamml:problem:not-ready", probe
                assert nr.json()["kafka"] == "unavailable" and "Kafka" in nr.json()["detail"]
            assert http.get(f"{base}/livez").json() == {"status": "alive"}


def _resolve(doc: dict, schema: dict) -> dict:  # type: ignore[type-arg]
    ref = schema.get("$ref")
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else schema  # type: ignore[no-any-return]


def test_openapi_security_scheme_models_and_one_error_shape(settings: Settings, endpoint: str) -> None:
    doc = httpx.get(f"{endpoint}/openapi.json", timeout=10).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearerAuth"][
            "description"]}
    paths = doc["paths"]
    for path in ("/v1/streams/{stream}/events", "/v1/streams/{stream}/stats"):
        op = next(iter(paths[path].values()))
        assert op["security"] == [{"bearerAuth": []}], path
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
    for path in ("/livez", "/readyz", "/healthz", "/openapi.json"):  # probes need no token
        assert "security" not in paths.get(path, {}).get("get", {}), path
    ingest = paths["/v1/streams/{stream}/events"]["post"]
    ok = _resolve(doc, ingest["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"request_id", "accepted", "dead_lettered", "event_ids"} <= set(ok["required"])
    partial = _resolve(doc, ingest["responses"]["400"]["content"]["application/problem+json"]["schema"])
    assert {"type", "title", "status", "detail", "accepted", "event_ids", "errors"} <= set(partial["properties"])
    assert "Retry-After" in ingest["responses"]["503"]["headers"]
    errors = 0
    for path, item in paths.items():
        for method, op in item.items():
            assert op.get("summary") and "200" in op["responses"], (method, path)
            for status, resp in op["responses"].items():
                if status[0] in "45":
                    errors += 1
                    assert list(resp["content"]) == ["application/problem+json"], (path, status)
                    props = _resolve(doc, resp["content"]["application/problem+json"]["schema"])["properties"]
                    assert {"type", "title", "status", "detail"} <= set(props), (path, status)
    assert errors >= 8
    with httpx.Client(timeout=30) as http:  # readiness once a broker answered; liveness always
        deadline = time.monotonic() + 20
        while (ready := http.get(f"{endpoint}/readyz")).status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready.json() == {"status": "ready", "kafka": "ok"}
        assert http.get(f"{endpoint}/healthz").json() == ready.json()
        assert http.get(f"{endpoint}/livez").json() == {"status": "alive"}
        for body, ctype in ((b"", "application/json"), (b"  \n", "application/x-ndjson")):  # nothing to store
            r = http.post(f"{endpoint}/v1/streams/clicks/events", content=body, headers={**AUTH, "Content-Type": ctype})
            assert r.status_code == 200 and r.json()["records"] == 0, r.text


def test_fatal_producer_error_fails_liveness(settings: Settings) -> None:
    from confluent_kafka import KafkaError as CKError

    app = create_app(settings, HttpOptions(token=None))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        while httpx.get(f"{base}/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert httpx.get(f"{base}/livez").status_code == 200
        # what librdkafka reports when the producer cannot go on (e.g. fenced): only a restart helps
        app.state.ingest._on_error(CKError(CKError._FATAL, "producer fenced", fatal=True))
        for probe in ("/livez", "/readyz"):
            r = httpx.get(f"{base}{probe}")
            assert r.status_code == 503 and "fatally: producer fenced" in r.json()["detail"], probe
        r = httpx.post(f"{base}/v1/streams/s/events", json=[{"a": 1}])
        assert r.status_code == 503 and r.json()["type"] == "urn:streamml:problem:kafka-unavailable"
    finally:
        server.should_exit = True
        thread.join(20)


def test_sigkill_under_load_loses_no_acknowledged_event(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STREAMML_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
           "STREAMML_NAMESPACE": settings.namespace, "STREAMML_HOME": str(settings.home),
           "STREAMML_HTTP_TOKEN": TOKEN}
    server = subprocess.Popen([str(Path(sys.executable).parent / "streamml"), "ingest", "http", "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    acked: list[str] = []
    sent: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(worker: int) -> None:
        with httpx.Client(timeout=20) as http:
            batch = 0
            while not stop.is_set():
                ids = [f"w{worker}-b{batch}-{i}" for i in range(50)]
                batch += 1
                with lock:
                    sent.extend(ids)
                try:
                    r = http.post(f"{base}/v1/streams/load/events", headers=AUTH,
                                  json=[{"event_id": e, "v": i} for i, e in enumerate(ids)])
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    assert r.json()["event_ids"] == ids
                    with lock:
                        acked.extend(ids)

    workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    while len(acked) < 3000 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.send_signal(signal.SIGKILL)
    server.wait(10)
    stop.set()
    for w in workers:
        w.join(30)
    assert server.returncode == -signal.SIGKILL
    assert len(acked) >= 3000
    stored = {m["headers"][H.EVENT_ID] for m in drain(settings, settings.topic("raw", "load"), expect=len(acked))}
    missing = set(acked) - stored
    assert not missing, f"{len(missing)} acknowledged events are not in Kafka"
    assert stored <= set(sent)
