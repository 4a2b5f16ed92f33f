"""The HTTP stack's ceiling: FastAPI + uvicorn with the ingest server's settings, no Kafka.

``POST /v1/streams/{stream}/events`` reads the body (streamed, as the ingest endpoint does),
parses it as JSON, and answers 200 with a body of the same shape as the ingest answer
(request id, counts, event ids). Run: ``python -m benchmarks.http_bare PORT``.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from streamml.http_common import install


def create_app() -> Any:
    app = FastAPI(title="bare")
    install(app)

    @app.post("/v1/streams/{stream}/events")
    async def events(stream: str, request: Request) -> JSONResponse:
        chunks = [part async for part in request.stream()]
        value = orjson.loads(b"".join(chunks))
        records = value if isinstance(value, list) else [value]
        request_id = uuid.uuid4().hex[:16]
        ids = [r.get("event_id") or f"{request_id}-{i}" for i, r in enumerate(records)]
        return JSONResponse({"request_id": request_id, "stream": stream, "records": len(records),
                             "accepted": len(records), "dead_lettered": 0, "event_ids": ids})

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ready"})

    return app


if __name__ == "__main__":
    # the same uvicorn settings as streamml.ingest.http.serve_http
    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, lifespan="on", timeout_graceful_shutdown=10)
