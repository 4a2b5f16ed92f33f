"""The HTTP ingest endpoint: ``POST /v1/streams/{stream}/events``.

A request carries a JSON array of objects, one JSON object, or NDJSON (one object per line,
``Content-Type: application/x-ndjson``). The answer comes only after the broker acknowledged
every accepted record:

- **200**: every record was accepted; the body lists their event ids.
- **400**: some records were invalid. **Partial accept**: the valid records of the request
  *are* stored (and acknowledged) and the invalid ones go to the dead-letter topic; the body
  names each failed record by index with its reason, and gives the accepted count and event
  ids. Resend only the failed records, corrected: resending the whole request duplicates the
  accepted ones (give records an ``event_id`` so readers can drop duplicates).
- **401**: no valid ``Authorization: Bearer <token>``.
- **413**: the body is larger than the limit; refused from ``Content-Length`` before it is
  read, or as soon as a streamed (chunked) body passes the limit. Nothing is stored.
- **503** with ``Retry-After``: Kafka is unavailable, or did not acknowledge every record in
  time; retry later. Records acknowledged before the failure are listed in the body.

Each record's event id is its ``event_id`` field when it has one (a string), else
``<request id>-<index>``; its event time is its ``event_time`` field (ms or ISO-8601) when
present, else the time of arrival. Dead letters name ``http:<request id>#<index>`` as source;
their value is the NDJSON line exactly as sent, or the array element re-encoded as compact JSON.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError as CKError
from confluent_kafka import Producer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from streamml import headers as H
from streamml._version import __version__
from streamml.config import Settings, topic_name
from streamml.errors import ConfigError, KafkaError
from streamml.ingest.writer import IngestCounts, RecordWriter
from streamml.kafka.clients import producer as make_producer
from streamml.schema.codec import codec_for, schema_headers
from streamml.schema.core import Schema, parse_timestamp_ms
from streamml.schema.registry import SchemaRegistry

__all__ = ["HttpOptions", "create_app", "serve_http", "COMPONENT"]

COMPONENT = "ingest.http"
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines")


@dataclass(frozen=True)
class HttpOptions:
    """How the endpoint behaves.

    ``token`` None disables authentication (say so explicitly: the CLI asks for ``--no-auth``).
    ``streams`` limits the stream names accepted (None: any valid name). ``schemas`` maps
    stream names to the schema their records must match. ``ack_timeout`` bounds how long a
    request waits for the broker before answering 503.
    """

    token: str | None = None
    max_body_bytes: int = 8 << 20
    streams: tuple[str, ...] | None = None
    schemas: dict[str, Schema] = field(default_factory=dict)
    wire_format: str = "json"
    ack_timeout: float = 15.0
    retry_after: int = 5
    partitions: int = 3


class _Acks:
    """Counts the broker's answers for one request and wakes the request when all are in."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self.loop = loop
        self.pending = expected
        self.errors: list[tuple[int, str]] = []
        self.future: asyncio.Future[None] = loop.create_future()
        if expected == 0:
            self.future.set_result(None)

    def callback(self, index: int) -> Any:
        def done(err: Any, msg: Any) -> None:
            if err is not None:
                self.errors.append((index, f"{err.str()} [{err.name()}]"))
            self.pending -= 1
            if self.pending == 0:
                self.loop.call_soon_threadsafe(_resolve, self.future)
        return done


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _State:
    """The producer, its poll thread and one writer per stream."""

    def __init__(self, settings: Settings, options: HttpOptions) -> None:
        self.settings = settings
        self.options = options
        self.kafka_down = False
        self.down_reason = ""
        self.producer: Producer = make_producer(
            settings, error_cb=self._on_error, linger_ms=2,
            message_timeout_ms=int(options.ack_timeout * 1000),
            message_max_bytes=8 << 20)
        self.writers: dict[str, RecordWriter] = {}
        self.counts: dict[str, IngestCounts] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="streamml-http-poll", daemon=True)
        self._thread.start()

        self.version = __version__.encode()
        self.registry = SchemaRegistry.for_settings(settings)
        self.schemas = {s: self.registry.register(s, sch) for s, sch in options.schemas.items()}

    def _on_error(self, err: CKError) -> None:
        if err.code() == CKError._ALL_BROKERS_DOWN or err.fatal():
            self.kafka_down = True
            self.down_reason = err.str()

    def _poll(self) -> None:
        last_probe = 0.0
        while not self._stop.is_set():
            self.producer.poll(0.05)
            if self.kafka_down and time.monotonic() - last_probe > 1.0:
                last_probe = time.monotonic()
                try:
                    md = self.producer.list_topics(timeout=1.0)
                    if md.brokers:
                        self.kafka_down = False
                except Exception:  # noqa: BLE001 - still down
                    pass

    def writer(self, stream: str) -> RecordWriter:
        with self._lock:
            w = self.writers.get(stream)
            if w is None:
                w = RecordWriter(self.settings, stream, COMPONENT, partitions=self.options.partitions,
                                 producer=self.producer, admin_timeout=5.0)
                self.writers[stream] = w
                self.counts[stream] = IngestCounts()
            return w

    def close(self) -> None:
        self.producer.flush(30)
        self._stop.set()
        self._thread.join(5)


def _split_body(body: bytes, content_type: str) -> tuple[list[bytes], list[Any]]:
    """The records of a body: originals and parsed values (an exception where parsing failed)."""
    ctype = content_type.split(";")[0].strip().lower()
    stripped = body.strip()
    if ctype not in NDJSON_TYPES and stripped.startswith(b"["):
        try:
            items = orjson.loads(stripped)
            return [orjson.dumps(x) for x in items], list(items)
        except orjson.JSONDecodeError as exc:
            return [body], [ValueError(f"malformed JSON array: {exc}")]
    lines = [line for line in stripped.split(b"\n") if line.strip()]
    parsed: list[Any] = []
    for line in lines:
        try:
            line.decode("utf-8")
            parsed.append(orjson.loads(line))
        except UnicodeDecodeError as exc:
            parsed.append(ValueError(f"invalid UTF-8 at byte {exc.start}"))
        except orjson.JSONDecodeError as exc:
            parsed.append(ValueError(f"malformed JSON: {exc}"))
    return lines, parsed


def create_app(settings: Settings, options: HttpOptions | None = None) -> Any:
    """The FastAPI application (serve it with uvicorn, or use :func:`serve_http`)."""
    opts = options or HttpOptions()
    state_box: dict[str, _State] = {}

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        state_box["s"] = _State(settings, opts)
        yield
        await asyncio.get_running_loop().run_in_executor(None, state_box["s"].close)

    app = FastAPI(title="streamml ingest", version="1", lifespan=lifespan,
                  description=(__doc__ or "").split("\n\n", 1)[1] if __doc__ else "")

    def problem(status: int, message: str, **extra: Any) -> JSONResponse:
        headers = extra.pop("headers", None)
        return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)

    def authorized(request: Request) -> bool:
        if opts.token is None:
            return True
        auth = request.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), opts.token.encode())

    responses: dict[int | str, dict[str, Any]] = {
        200: {"description": "Every record accepted and acknowledged by Kafka."},
        400: {"description": "Some records invalid: the valid ones were accepted (partial accept), "
                             "the invalid ones dead-lettered; `errors` names each by index with its reason."},
        401: {"description": "Missing or wrong bearer token."},
        404: {"description": "Stream not served here."},
        413: {"description": "Body larger than the limit; nothing stored."},
        503: {"description": "Kafka unavailable or too slow; retry after `Retry-After` seconds."},
    }
    body_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [{"type": "array", "items": {"type": "object"}},
                                                   {"type": "object"}]}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON object per line"}}}}}

    @app.post("/v1/streams/{stream}/events", responses=responses, openapi_extra=body_doc,
              summary="Ingest events into a stream")
    async def ingest(stream: str, request: Request) -> JSONResponse:
        """Validate events and write them to ``<ns>.raw.<stream>``; answer after Kafka acknowledged them."""
        st = state_box["s"]
        if not authorized(request):
            return problem(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        try:
            topic_name(settings.namespace, "raw", stream)
        except ConfigError as exc:
            return problem(404, str(exc))
        if opts.streams is not None and stream not in opts.streams:
            return problem(404, f"stream {stream!r} is not served here", streams=list(opts.streams))
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > opts.max_body_bytes:
            return problem(413, f"body of {int(length):,} bytes is over the limit of {opts.max_body_bytes:,} bytes")
        if st.kafka_down:
            return problem(503, f"Kafka is unavailable: {st.down_reason}",
                           headers={"Retry-After": str(opts.retry_after)})
        chunks: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > opts.max_body_bytes:
                return problem(413, f"body is over the limit of {opts.max_body_bytes:,} bytes")
            chunks.append(part)
        body = b"".join(chunks)
        loop = asyncio.get_running_loop()
        try:
            writer = st.writers.get(stream)
            if writer is None:
                writer = await loop.run_in_executor(None, st.writer, stream)
        except KafkaError as exc:
            st.kafka_down, st.down_reason = True, str(exc)
            return problem(503, f"Kafka is unavailable: {exc}", headers={"Retry-After": str(opts.retry_after)})
        return await _handle(st, writer, stream, body, request.headers.get("content-type", ""), loop)

    @app.get("/v1/streams/{stream}/stats", summary="Counts of one stream since the server started")
    async def stats(stream: str, request: Request) -> JSONResponse:
        if not authorized(request):
            return problem(401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"})
        counts = state_box["s"].counts.get(stream, IngestCounts())
        return JSONResponse({"stream": stream, **counts.as_dict(), "balanced": counts.balanced})

    @app.get("/healthz", summary="Liveness and Kafka reachability")
    async def health() -> JSONResponse:
        st = state_box["s"]
        return JSONResponse({"status": "ok", "kafka": "unavailable" if st.kafka_down else "ok"},
                            status_code=503 if st.kafka_down else 200)

    return app


async def _handle(st: _State, writer: RecordWriter, stream: str, body: bytes, content_type: str,
                  loop: asyncio.AbstractEventLoop) -> JSONResponse:
    opts = st.options
    request_id = uuid.uuid4().hex[:16]
    originals, parsed = _split_body(body, content_type)
    schema = st.schemas.get(stream)
    codec = codec_for(opts.wire_format, schema)
    now = int(time.time() * 1000)
    const = [(H.COMPONENT, COMPONENT.encode()), (H.VERSION, st.version), (H.INGEST_TIME, str(now).encode()),
             (H.SOURCE, f"http:{request_id}".encode())] + schema_headers(schema, opts.wire_format)
    errors: list[dict[str, Any]] = []
    good: list[tuple[int, bytes, bytes | None, list[tuple[str, bytes]], str]] = []
    for i, (orig, rec) in enumerate(zip(originals, parsed)):
        reason = None
        if isinstance(rec, Exception):
            reason = str(rec)
        elif not isinstance(rec, dict):
            reason = f"expected a JSON object, got {type(rec).__name__}"
        elif schema is not None:
            errs = schema.errors(rec)
            reason = "; ".join(errs) if errs else None
        eid = rec.get("event_id") if isinstance(rec, dict) and isinstance(rec.get("event_id"), str) else None
        eid = eid or f"{request_id}-{i}"
        etime = now
        if reason is None and isinstance(rec, dict) and rec.get("event_time") is not None:
            try:
                etime = parse_timestamp_ms(rec["event_time"])
            except (ValueError, TypeError, OverflowError):
                reason = "field 'event_time' is not a timestamp"
        value = orig
        if reason is None and codec.format != "json":
            value = codec.encode(rec)
        hdrs = [(H.EVENT_ID, eid.encode()), (H.EVENT_TIME, str(etime).encode())] + const
        if reason is None and not writer.fits(value, None, hdrs):
            reason = writer.too_large_reason(value, None, hdrs)
        if reason is not None:
            errors.append({"index": i, "event_id": eid, "reason": reason})
        else:
            good.append((i, value, None, hdrs, eid))
    acks = _Acks(loop, len(good) + len(errors))
    for i, value, key, hdrs, _ in good:
        writer.produce(value, key, hdrs, on_delivery=acks.callback(i))
    for e in errors:
        writer.dead_letter(originals[e["index"]], f"http:{request_id}#{e['index']}", e["reason"],
                           event_id=e["event_id"], on_delivery=acks.callback(-1 - e["index"]))
    try:
        await asyncio.wait_for(asyncio.shield(acks.future), timeout=opts.ack_timeout + 5)
    except asyncio.TimeoutError:
        pass
    failed_idx = {i for i, _ in acks.errors if i >= 0}
    dlq_failed = {-1 - i for i, _ in acks.errors if i < 0}
    unanswered = acks.pending > 0
    counts = st.counts[stream]
    accepted_ids = [eid for i, _, _, _, eid in good if i not in failed_idx]
    n_in = len(originals)
    if unanswered:
        # the broker has not answered for some records: report none as accepted for certain
        failed_now = n_in
        counts.records_in += n_in
        counts.failed += failed_now
    else:
        counts.records_in += n_in
        counts.accepted += len(accepted_ids)
        counts.dead_lettered += len(errors) - len(dlq_failed)
        counts.failed += len(failed_idx) + len(dlq_failed)
        for e in errors:
            counts.reasons[e["reason"].split(":")[0]] += 1
    body_out: dict[str, Any] = {"request_id": request_id, "stream": stream, "records": n_in,
                                "accepted": 0 if unanswered else len(accepted_ids),
                                "dead_lettered": 0 if unanswered else len(errors) - len(dlq_failed),
                                "event_ids": [] if unanswered else accepted_ids}
    if unanswered or failed_idx or dlq_failed:
        body_out["error"] = "Kafka did not acknowledge every record: retry the records not listed as accepted"
        body_out["failed"] = sorted(failed_idx | dlq_failed) if not unanswered else list(range(n_in))
        st.kafka_down = st.kafka_down or unanswered
        return JSONResponse(body_out, status_code=503, headers={"Retry-After": str(opts.retry_after)})
    if errors:
        body_out["error"] = f"{len(errors)} of {n_in} record(s) invalid; the valid ones were accepted"
        body_out["errors"] = errors
        return JSONResponse(body_out, status_code=400)
    return JSONResponse(body_out, status_code=200)


def serve_http(settings: Settings, options: HttpOptions | None = None, *, host: str = "127.0.0.1",
               port: int = 8080, log_level: str = "warning") -> None:
    """Serve the endpoint until interrupted (uvicorn, one process)."""
    import uvicorn

    uvicorn.run(create_app(settings, options), host=host, port=port, log_level=log_level,
                access_log=False, lifespan="on", timeout_graceful_shutdown=10)
