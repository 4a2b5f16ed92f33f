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

Every error is an RFC 9457 problem (``application/problem+json``: ``type``, ``title``,
``status``, ``detail``); the 400 and 503 answers to a request whose records were processed
also carry ``request_id``, ``accepted``, ``dead_lettered``, ``event_ids`` and ``errors`` or
``failed``. The token is declared in OpenAPI as the ``bearerAuth`` security scheme.

Probes (for Kubernetes; no token needed):

- ``GET /livez``: liveness, 200 while the process answers, whatever Kafka does (restarting
  the pod does not bring a broker back). 503 only when the producer failed fatally or its
  poll thread died, which only a restart repairs.
- ``GET /readyz``: readiness, 200 once a broker answered and while Kafka is reachable and the
  producer healthy; else 503 with a problem saying why, so no traffic is sent to a process
  that would answer 503. ``/healthz`` is an alias of ``/readyz``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import KafkaError as CKError
from confluent_kafka import Producer

from streamml.extras import missing, require

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, Field
except ImportError as _exc:
    raise missing(_exc, "HTTP ingest", extra="http") from None

from streamml import headers as H
from streamml._version import __version__
from streamml.config import Settings, topic_name
from streamml.errors import ConfigError, KafkaError
from streamml.http_common import Liveness, Problem, bearer_auth, error_responses, install, problem_response
from streamml.ingest.writer import IngestCounts, RecordWriter
from streamml.kafka.clients import producer as make_producer
from streamml.schema.codec import Codec, codec_for, schema_headers
from streamml.schema.core import Schema, parse_timestamp_ms
from streamml.schema.registry import SchemaRegistry

__all__ = ["HttpOptions", "create_app", "serve_http", "COMPONENT", "IngestResult", "IngestProblem"]

COMPONENT = "ingest.http"
PUMP_INTERVAL_S = 0.001  # how often the event loop serves delivery reports while requests wait
PUMP_LINGER_S = 0.2  # and for how long after the last request was answered
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


class RecordError(BaseModel):
    """One record that was not accepted, and why."""

    index: int = Field(description="Position of the record in the request (array element or NDJSON line)")
    event_id: str
    reason: str


class IngestResult(BaseModel):
    """Every record accepted, and acknowledged by Kafka."""

    request_id: str = Field(examples=["3f2a9c0d1e7b4a55"])
    stream: str = Field(examples=["clicks"])
    records: int = Field(description="Records in the request")
    accepted: int = Field(description="Records stored in `<ns>.raw.<stream>`")
    dead_lettered: int = Field(description="Records sent to the dead-letter topic")
    event_ids: list[str] = Field(description="The event ids of the accepted records, in request order")


class IngestProblem(Problem):
    """A problem; when the records were processed it also says which were accepted."""

    request_id: str | None = None
    stream: str | None = None
    records: int | None = None
    accepted: int | None = None
    dead_lettered: int | None = None
    event_ids: list[str] | None = Field(None, description="Accepted (stored and acknowledged) records")
    errors: list[RecordError] | None = Field(None, description="400: each invalid record by index with its reason")
    failed: list[int] | None = Field(None, description="503: indices of the records Kafka did not acknowledge")
    streams: list[str] | None = Field(None, description="404: the streams served here")
    max_body_bytes: int | None = Field(None, description="413: the limit")
    retry_after_s: int | None = Field(None, description="503: the same as the `Retry-After` header")


class StreamStats(BaseModel):
    """Counts of one stream since the server started; records_in = accepted + dead_lettered + failed."""

    stream: str
    records_in: int
    accepted: int
    dead_lettered: int
    failed: int
    reasons: dict[str, int] = Field(description="Dead-letter reasons and their counts")
    balanced: bool


class IngestReadiness(BaseModel):
    """Ready: a broker answered, Kafka is reachable and the producer healthy."""

    status: str = Field("ready", examples=["ready"])
    kafka: str = Field("ok", examples=["ok"])


class NotReady(Problem):
    """Not ready (or, on /livez, broken beyond repair): `detail` says why."""

    kafka: str | None = Field(None, examples=["unavailable"])


class _Acks:
    """Counts the broker's answers for one request and wakes the request when all are in.

    Delivery reports are normally served on the event loop's own thread (:meth:`_State.pump`),
    so the last one resolves the future directly: no thread hop, no GIL hand-over per record.
    A report served by the poll thread (while no request waited) goes through
    ``call_soon_threadsafe``.
    """

    __slots__ = ("loop", "thread", "pending", "errors", "future")

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
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
                if threading.get_ident() == self.thread:
                    _resolve(self.future)
                else:
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
        self.reachable = False  # a broker answered a metadata request since the start
        self.fatal = ""  # the producer's fatal error: it cannot be used any more
        # linger 1 ms: enough for the records of concurrent requests to share batches; every
        # millisecond more is latency each request pays, and with few clients it bounds req/s
        self.producer: Producer = make_producer(
            settings, error_cb=self._on_error, linger_ms=1,
            message_timeout_ms=int(options.ack_timeout * 1000),
            message_max_bytes=8 << 20)
        self.writers: dict[str, RecordWriter] = {}
        self.counts: dict[str, IngestCounts] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.waiting = 0  # requests awaiting acknowledgements (changed on the event loop's thread only)
        self._pumping = threading.Event()  # set while the event loop serves the delivery reports
        self._pump_task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._poll, name="streamml-http-poll", daemon=True)
        self._thread.start()

        self.version = __version__.encode()
        self.registry = SchemaRegistry.for_settings(settings)
        self.schemas = {s: self.registry.register(s, sch) for s, sch in options.schemas.items()}
        self._encodings: dict[str, tuple[Codec, list[tuple[str, bytes]]]] = {}

    def _on_error(self, err: CKError) -> None:
        if err.fatal():
            self.fatal = err.str()
        if err.code() == CKError._ALL_BROKERS_DOWN or err.fatal():
            self.kafka_down = True
            self.down_reason = err.str()

    def _poll(self) -> None:
        last_probe = 0.0
        while not self._stop.is_set():
            if self._pumping.is_set():
                # the event loop serves the delivery reports itself: polling here too would take
                # them away from it and make every report wait for the GIL
                self._stop.wait(0.05)
            else:
                self.producer.poll(0.05)
            if (self.kafka_down or not self.reachable) and not self.fatal and time.monotonic() - last_probe > 1.0:
                last_probe = time.monotonic()
                try:
                    md = self.producer.list_topics(timeout=1.0)
                    if md.brokers:
                        self.kafka_down, self.reachable = False, True
                except Exception:  # noqa: BLE001 - still down
                    pass

    def pump(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve delivery reports on the event loop while requests wait (one task, started on demand).

        Each turn serves every report that arrived (``poll(0)`` never blocks), then sleeps
        ``PUMP_INTERVAL_S``: the records of all concurrent requests go out in shared batches
        (librdkafka batches per partition) and their acknowledgements come back in one sweep.
        """
        if self._pump_task is None or self._pump_task.done():
            self._pumping.set()
            self._pump_task = loop.create_task(self._pump())

    async def _pump(self) -> None:
        poll = self.producer.poll
        last_wait = time.monotonic()
        try:
            # keep serving for a moment after the last request was answered: under steady load
            # the next one comes at once, and a pump that stopped would hand its reports back
            # to the poll thread for up to one poll timeout
            while True:
                poll(0)
                if self.waiting > 0:
                    last_wait = time.monotonic()
                elif time.monotonic() - last_wait > PUMP_LINGER_S:
                    break
                await asyncio.sleep(PUMP_INTERVAL_S)
        finally:
            self._pumping.clear()

    def broken(self) -> str | None:
        """Why the process cannot recover without a restart (None: it can)."""
        if self.fatal:
            return f"the Kafka producer failed fatally: {self.fatal}"
        if not self._thread.is_alive() and not self._stop.is_set():
            return "the producer's poll thread stopped"
        return None

    def not_ready(self) -> str | None:
        """Why requests would fail now (None: ready)."""
        if (reason := self.broken()) is not None:
            return reason
        if self.kafka_down:
            return f"Kafka is unavailable: {self.down_reason}"
        if not self.reachable:
            return "no Kafka broker has answered yet"
        return None

    def encoding(self, stream: str) -> tuple[Codec, list[tuple[str, bytes]]]:
        """The codec and schema headers of a stream's records (built once per stream)."""
        enc = self._encodings.get(stream)
        if enc is None:
            schema = self.schemas.get(stream)
            enc = self._encodings[stream] = (codec_for(self.options.wire_format, schema),
                                             schema_headers(schema, self.options.wire_format))
        return enc

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
        state_box["s"] = app.state.ingest = _State(settings, opts)
        yield
        await asyncio.get_running_loop().run_in_executor(None, state_box["s"].close)

    app = FastAPI(title="streamml ingest", version="1", lifespan=lifespan,
                  description=(__doc__ or "").split("\n\n", 1)[1] if __doc__ else "")
    install(app)

    def problem(status: int, slug: str, message: str, **extra: Any) -> JSONResponse:
        return problem_response(status, slug, message, **extra)

    def unavailable(reason: str) -> JSONResponse:
        return problem(503, "kafka-unavailable", reason, title="Kafka unavailable",
                       headers={"Retry-After": str(opts.retry_after)}, retry_after_s=opts.retry_after)

    auth = [Depends(bearer_auth(opts.token))] if opts.token is not None else []
    unauthorized = {401: "Missing or wrong bearer token."} if opts.token is not None else {}
    responses = error_responses({
        400: "Some records invalid: the valid ones were accepted (partial accept), "
             "the invalid ones dead-lettered; `errors` names each by index with its reason.",
        **unauthorized,
        404: "Stream not served here (or not a valid stream name).",
        413: "Body larger than the limit; nothing stored.",
        503: "Kafka unavailable or too slow; retry after `Retry-After` seconds. Records acknowledged "
             "before the failure are in `event_ids`, the others in `failed`."},
        model=IngestProblem, retry_after=True)
    body_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [{"type": "array", "items": {"type": "object"}},
                                                   {"type": "object"}]},
                             "example": [{"user": "ann", "n": 1, "event_id": "click-1"}, {"user": "bob", "n": 2}]},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one JSON object per line"},
                                 "example": '{"user": "ann", "n": 1}\n{"user": "bob", "n": 2}\n'}}}}

    @app.post("/v1/streams/{stream}/events", response_model=IngestResult, responses=responses,
              openapi_extra=body_doc, dependencies=auth, summary="Ingest events into a stream",
              response_description="Every record accepted and acknowledged by Kafka.")
    async def ingest(stream: str, request: Request) -> Response:
        """Validate events and write them to ``<ns>.raw.<stream>``; answer after Kafka acknowledged them."""
        st = state_box["s"]
        try:
            topic_name(settings.namespace, "raw", stream)
        except ConfigError as exc:
            return problem(404, "unknown-stream", str(exc), title="Unknown stream")
        if opts.streams is not None and stream not in opts.streams:
            return problem(404, "unknown-stream", f"stream {stream!r} is not served here", title="Unknown stream",
                           streams=list(opts.streams))
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > opts.max_body_bytes:
            return problem(413, "body-too-large",
                           f"body of {int(length):,} bytes is over the limit of {opts.max_body_bytes:,} bytes",
                           max_body_bytes=opts.max_body_bytes)
        if st.kafka_down:
            return unavailable(f"Kafka is unavailable: {st.down_reason}")
        chunks: list[bytes] = []
        size = 0
        async for part in request.stream():
            size += len(part)
            if size > opts.max_body_bytes:
                return problem(413, "body-too-large", f"body is over the limit of {opts.max_body_bytes:,} bytes",
                               max_body_bytes=opts.max_body_bytes)
            chunks.append(part)
        body = b"".join(chunks)
        loop = asyncio.get_running_loop()
        try:
            writer = st.writers.get(stream)
            if writer is None:
                writer = await loop.run_in_executor(None, st.writer, stream)
        except KafkaError as exc:
            st.kafka_down, st.down_reason = True, str(exc)
            return unavailable(f"Kafka is unavailable: {exc}")
        return await _handle(st, writer, stream, body, request.headers.get("content-type", ""), loop)

    @app.get("/v1/streams/{stream}/stats", response_model=StreamStats, dependencies=auth,
             responses=error_responses(unauthorized), summary="Counts of one stream since the server started")
    async def stats(stream: str) -> JSONResponse:
        counts = state_box["s"].counts.get(stream, IngestCounts())
        return JSONResponse({"stream": stream, **counts.as_dict(), "balanced": counts.balanced})

    probe_errors = error_responses({503: "Not ready: `detail` says why."}, model=NotReady)

    @app.get("/livez", response_model=Liveness, summary="Liveness: the process is up",
             responses=error_responses({503: "Broken beyond repair (fatal producer error): restart the process."},
                                       model=NotReady))
    async def livez() -> JSONResponse:
        """200 while the process answers, whatever Kafka does; 503 only when a restart is needed."""
        reason = state_box["s"].broken()
        if reason is not None:
            return problem(503, "broken", reason, title="Broken: restart needed")
        return JSONResponse({"status": "alive"})

    async def ready() -> JSONResponse:
        reason = state_box["s"].not_ready()
        if reason is not None:
            return problem(503, "not-ready", reason, title="Not ready", kafka="unavailable")
        return JSONResponse({"status": "ready", "kafka": "ok"})

    app.get("/readyz", response_model=IngestReadiness, responses=probe_errors,
            summary="Readiness: Kafka reachable and the producer healthy",
            description="200 when a request would be written to Kafka now; 503 with the reason otherwise.")(ready)
    app.get("/healthz", response_model=IngestReadiness, responses=probe_errors,
            summary="Alias of /readyz", description="Kept for existing probes; the same answer as `/readyz`.")(ready)

    return app


async def _handle(st: _State, writer: RecordWriter, stream: str, body: bytes, content_type: str,
                  loop: asyncio.AbstractEventLoop) -> Response:
    opts = st.options
    request_id = os.urandom(8).hex()
    originals, parsed = _split_body(body, content_type)
    schema = st.schemas.get(stream)
    codec, schema_hdrs = st.encoding(stream)
    now = int(time.time() * 1000)
    const = [(H.COMPONENT, COMPONENT.encode()), (H.VERSION, st.version), (H.INGEST_TIME, str(now).encode()),
             (H.SOURCE, f"http:{request_id}".encode()), *schema_hdrs]
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
    if not acks.future.done():
        # a late report finds the future done and is only counted; pending > 0 means "unanswered"
        timer = loop.call_later(opts.ack_timeout + 5, _resolve, acks.future)
        st.waiting += 1
        st.pump(loop)
        try:
            await acks.future
        finally:
            st.waiting -= 1
            timer.cancel()
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
        body_out["failed"] = sorted(failed_idx | dlq_failed) if not unanswered else list(range(n_in))
        st.kafka_down = st.kafka_down or unanswered
        return problem_response(503, "kafka-unacknowledged",
                                "Kafka did not acknowledge every record: retry the records not listed as accepted",
                                title="Records not acknowledged", headers={"Retry-After": str(opts.retry_after)},
                                retry_after_s=opts.retry_after, **body_out)
    if errors:
        return problem_response(400, "invalid-records",
                                f"{len(errors)} of {n_in} record(s) invalid; the valid ones were accepted",
                                title="Some records are invalid", errors=errors, **body_out)
    return Response(orjson.dumps(body_out), media_type="application/json")  # orjson: the hot path


def serve_http(settings: Settings, options: HttpOptions | None = None, *, host: str = "127.0.0.1",
               port: int = 8080, log_level: str = "warning") -> None:
    """Serve the endpoint until interrupted (uvicorn, one process)."""
    uvicorn = require("uvicorn", "HTTP ingest", extra="http")

    app = create_app(settings, options)
    # the modules and the app built so far live as long as the process: out of the collector's
    # sight, a full collection under load walks only what requests allocate (shorter pauses)
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level=log_level,
                access_log=False, lifespan="on", timeout_graceful_shutdown=10)
