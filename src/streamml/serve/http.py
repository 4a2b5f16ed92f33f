"""Request/response scoring: ``POST /v1/models/{name}/predict`` from the scorer's own loaded models.

The endpoint shares the stream scorer's :class:`~streamml.serve.swap.ModelHost`, so a
synchronous answer comes from exactly the version the stream serves, and inputs go
through the same validation (:func:`~streamml.serve.features.to_matrix`).

Request: ``{"instances": [{"amount": 12.5, ...}, ...]}`` (or ``{"features": {...}}`` for one
row); ``?stage=canary`` asks another stage. Answer::

    {"model": "fraud", "version": 4, "stage": "production", "latency_ms": 0.4,
     "predictions": [{"score": 0.02, "label": 0}, ...]}

Errors are JSON ``{"detail": {"error": ..., "message": ..., ...}}``: 404 for a model this
process does not serve, 503 while it has no loaded version, 400 for a body that is not
instances, 413 for too many, 422 for rows that cannot be scored (each with its reason).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import polars as pl
from fastapi import Body, FastAPI, HTTPException, Query

from streamml.serve.features import to_matrix
from streamml.serve.swap import ModelHost, Role

__all__ = ["create_app", "serve_http", "MAX_INSTANCES"]

MAX_INSTANCES = 10_000


def _error(status: int, error: str, message: str, **extra: Any) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": error, "message": message, **extra})


def _instances(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and "instances" in body:
        rows = body["instances"]
    elif isinstance(body, dict) and "features" in body:
        rows = [body["features"]]
    elif isinstance(body, list):
        rows = body
    else:
        raise _error(400, "bad_request", 'send {"instances": [{feature: value, ...}, ...]} or {"features": {...}}')
    if not isinstance(rows, list) or not rows:
        raise _error(400, "bad_request", "instances must be a non-empty list of objects")
    if len(rows) > MAX_INSTANCES:
        raise _error(413, "too_many_instances", f"{len(rows)} instances; at most {MAX_INSTANCES} per request")
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict)]
    if bad:
        raise _error(400, "bad_request", f"instance {bad[0]} is not an object", rows=bad[:20])
    return rows


def create_app(host: ModelHost) -> FastAPI:
    """A FastAPI app answering from ``host``'s current models."""
    app = FastAPI(title="streamml scoring", version="1")

    @app.get("/healthz")
    def health() -> dict[str, Any]:
        loaded = {str(r): m.version for r, m in host.snapshot().items() if m is not None}
        return {"status": "ok" if loaded else "loading", "models": loaded}

    @app.get("/v1/models")
    def models() -> list[dict[str, Any]]:
        return [{"name": r.name, "stage": r.stage, "version": m.version if m else None,
                 "inputs": list(m.input_columns) if m else None} for r, m in host.snapshot().items()]

    @app.get("/v1/models/{name}")
    def model(name: str, stage: str = Query("production")) -> dict[str, Any]:
        m = _model(name, stage)
        return {"name": m.name, "stage": stage, "version": m.version, "inputs": list(m.input_columns)}

    def _model(name: str, stage: str) -> Any:
        role = Role(name, stage)
        if role not in host.slots:
            served = ", ".join(str(r) for r in host.slots) or "none"
            raise _error(404, "unknown_model", f"this scorer does not serve {role} (it serves: {served})")
        host.swap()
        m = host.get(name, stage)
        if m is None:
            raise _error(503, "model_not_loaded", f"no version of {role} is loaded yet")
        return m

    @app.post("/v1/models/{name}/predict")
    def predict(name: str, body: Any = Body(...), stage: str = Query("production")) -> dict[str, Any]:
        t0 = time.perf_counter()
        m = _model(name, stage)
        rows = _instances(body)
        try:
            df = pl.from_dicts(rows, infer_schema_length=None)
        except Exception as exc:  # polars cannot find one type for a column
            raise _error(422, "invalid_input",
                         f"instances do not share one schema: {str(exc).splitlines()[0]}") from None
        fm = to_matrix(df, tuple(m.input_columns))
        if fm.rejected:
            errors = [{"row": i, "reason": r} for i, r in sorted(fm.rejected.items())[:50]]
            raise _error(422, "invalid_input", f"{len(fm.rejected)} of {len(rows)} instances cannot be scored",
                         errors=errors, inputs=list(m.input_columns))
        s = m.predict(fm.x)
        preds: list[dict[str, Any]] = [{"score": float(v)} for v in s.score.tolist()]
        if s.label is not None:
            for p, lab in zip(preds, s.label.tolist()):
                p["label"] = int(lab)
        return {"model": m.name, "version": m.version, "stage": stage,
                "latency_ms": round((time.perf_counter() - t0) * 1000, 3), "predictions": preds}

    return app


def serve_http(host: ModelHost, port: int, bind: str = "127.0.0.1") -> tuple[Any, threading.Thread]:
    """Run the app with uvicorn in a background thread; returns ``(server, thread)``
    (``server.should_exit = True`` stops it)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app(host), host=bind, port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="streamml-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, thread
