"""Request/response scoring: ``POST /v1/models/{name}/predict`` from the scorer's own loaded models.

The endpoint shares the stream scorer's :class:`~streamml.serve.swap.ModelHost`, so a
synchronous answer comes from exactly the version the stream serves, and inputs go
through the same validation (:func:`~streamml.serve.features.to_matrix`).

Request (``PredictRequest`` in the OpenAPI document): ``{"instances": [{"amount": 12.5, ...}, ...]}``,
columnar ``{"instances": {"amount": [12.5, 900.0], ...}}`` (one list per feature, all as long),
``{"features": {...}}`` for one row, or a bare JSON array of row objects; ``?stage=canary``
asks another stage. Answer (``PredictResponse``)::

    {"model": "fraud", "version": 4, "stage": "production", "latency_ms": 0.4,
     "predictions": [{"score": 0.02, "label": 0}, ...]}

Errors are RFC 9457 problems (``application/problem+json``; ``type`` is
``urn:streamml:problem:<kind>``): 404 ``unknown-model`` for a model this process does not
serve, 503 ``model-not-loaded`` while it has no loaded version, 400 ``bad-request`` for a body
that is not instances (``rows`` lists the offending indices), 413 ``too-many-instances``,
422 ``invalid-input`` for rows that cannot be scored (``errors``: each row with its reason,
``inputs``: the columns the model takes) and ``validation-error`` for a body that is not JSON.

Probes (for Kubernetes): ``GET /livez`` answers 200 while the process serves HTTP, loaded
model or not (a restart does not make a model appear). ``GET /readyz`` answers 200 once every
role in ``ready_roles`` (default: the host's first role, the strategy's primary) has a loaded
version, else 503 with a problem naming the roles still loading, so no traffic is routed to a
scorer that would answer 503. ``/healthz`` is an alias of ``/readyz`` (it used to answer 200
while loading).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Annotated, Any

import polars as pl

from streamml.extras import missing, require

try:
    from fastapi import Body, FastAPI, Query
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, RootModel, WithJsonSchema
except ImportError as _exc:
    raise missing(_exc, "the HTTP predict endpoint", extra="http") from None

from streamml.http_common import (
    Liveness,
    Problem,
    ProblemError,
    ValidationProblem,
    error_responses,
    install,
    problem_response,
)
from streamml.serve.features import to_matrix
from streamml.serve.swap import ModelHost, Role

__all__ = ["create_app", "serve_http", "MAX_INSTANCES", "PredictRequest", "PredictResponse"]

MAX_INSTANCES = 10_000

_ROW_EXAMPLE: dict[str, Any] = {"amount": 12.0, "log_amount": 2.56, "hour": 14, "merchant_risk": 0.1, "tx_count_1h": 1,
                "amount_ratio": 1.0}


class InstancesRequest(BaseModel):
    """Rows to score: a list of objects (one per row), or columnar (one list per feature, all as long)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"instances": [_ROW_EXAMPLE]}, {"instances": {k: [v] for k, v in _ROW_EXAMPLE.items()}}]})

    instances: list[dict[str, Any]] | dict[str, list[Any]] = Field(
        description=f"1 to {MAX_INSTANCES:,} rows; each needs every input column of the model (`GET /v1/models/"
                    "{name}` lists them), with numbers (or booleans) that are not null")


class FeaturesRequest(BaseModel):
    """One row to score."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"features": _ROW_EXAMPLE}]})

    features: dict[str, Any] = Field(description="feature name -> value")


class PredictRequest(RootModel[InstancesRequest | FeaturesRequest | list[dict[str, Any]]]):
    """`{"instances": [...]}` (rows or columnar), `{"features": {...}}`, or a bare array of rows."""


# validated by _instances (400s keep their meaning), documented as PredictRequest
PredictBody = Annotated[Any, Body(), WithJsonSchema({"$ref": "#/components/schemas/PredictRequest"})]


class Prediction(BaseModel):
    score: float
    label: int | None = Field(None, description="Present when the model outputs a label")


class PredictResponse(BaseModel):
    """The scores, from the version named here."""

    model: str = Field(examples=["fraud"])
    version: int = Field(examples=[4])
    stage: str = Field(examples=["production"])
    latency_ms: float = Field(description="Time spent in the server, validation included")
    predictions: list[Prediction] = Field(description="One per instance, in request order")


class ModelInfo(BaseModel):
    name: str
    stage: str
    version: int | None = Field(description="The loaded version (null while none is loaded)")
    inputs: list[str] | None = Field(description="The input columns of the loaded version")


class RowError(BaseModel):
    row: int
    reason: str


class ServeProblem(Problem):
    """A problem; some kinds carry the data to fix the request."""

    errors: list[RowError] | None = Field(None, description="422 invalid-input: each row that cannot be scored")
    inputs: list[str] | None = Field(None, description="422 invalid-input: the columns the model takes")
    rows: list[int] | None = Field(None, description="400: indices of the instances that are not objects")


class ServeReadiness(BaseModel):
    """Ready: every required role has a loaded version."""

    status: str = Field("ready", examples=["ready"])
    models: dict[str, int] = Field(description="role -> loaded version", examples=[{"fraud": 4}])
    loading: list[str] = Field(default_factory=list, description="Roles served here with no version yet")


class NotReady(Problem):
    """Not ready: `loading` names the required roles that have no version yet."""

    models: dict[str, int] | None = None
    loading: list[str] | None = None


def _error(status: int, slug: str, message: str, **extra: Any) -> ProblemError:
    return ProblemError(status, slug, message, **extra)


def _instances(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict) and "instances" in body:
        rows = body["instances"]
        if isinstance(rows, dict):
            rows = _columnar(rows)
    elif isinstance(body, dict) and "features" in body:
        rows = [body["features"]]
    elif isinstance(body, list):
        rows = body
    else:
        raise _error(400, "bad-request", 'send {"instances": [{feature: value, ...}, ...]}, columnar '
                                         '{"instances": {feature: [values]}} or {"features": {...}}')
    if not isinstance(rows, list) or not rows:
        raise _error(400, "bad-request", "instances must be a non-empty list of objects (or columnar lists)")
    if len(rows) > MAX_INSTANCES:
        raise _error(413, "too-many-instances", f"{len(rows)} instances; at most {MAX_INSTANCES} per request",
                     max_instances=MAX_INSTANCES)
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict)]
    if bad:
        raise _error(400, "bad-request", f"instance {bad[0]} is not an object", rows=bad[:20])
    return rows


def _columnar(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a columnar body ``{feature: [values]}``; every column a list, all of one length."""
    if not columns:
        return []
    not_lists = [k for k, v in columns.items() if not isinstance(v, list)]
    if not_lists:
        raise _error(400, "bad-request", f"columnar instances: {not_lists[0]!r} is not a list of values",
                     columns=not_lists[:20])
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise _error(400, "bad-request", "columnar instances: the columns are not all as long", lengths=lengths)
    names = list(columns)
    return [dict(zip(names, vals)) for vals in zip(*columns.values())]


def create_app(host: ModelHost, *, ready_roles: Sequence[Role] | None = None) -> FastAPI:
    """A FastAPI app answering from ``host``'s current models.

    ``/readyz`` answers 200 once every role of ``ready_roles`` has a loaded version (default:
    the host's first role, which is the strategy's primary)."""
    app = FastAPI(title="streamml scoring", version="1",
                  description=(__doc__ or "").split("\n\n", 1)[1] if __doc__ else "")
    install(app, extra_schemas=[PredictRequest, ServeProblem])
    required = list(ready_roles) if ready_roles is not None else list(host.roles[:1])

    @app.get("/livez", response_model=Liveness, summary="Liveness: the process serves HTTP")
    def livez() -> dict[str, Any]:
        """200 while the process answers, with or without a loaded model."""
        return {"status": "alive"}

    probe_errors = error_responses({503: "Not ready: a required model has no loaded version yet."}, model=NotReady)

    def ready() -> Any:
        snap = host.snapshot()
        loaded = {str(r): m.version for r, m in snap.items() if m is not None}
        loading = [str(r) for r, m in snap.items() if m is None]
        missing = [str(r) for r in required if snap.get(r) is None]
        if missing:
            return problem_response(503, "not-ready", f"no version of {', '.join(missing)} is loaded yet",
                                    title="Not ready", models=loaded, loading=loading)
        return {"status": "ready", "models": loaded, "loading": loading}

    app.get("/readyz", response_model=ServeReadiness, responses=probe_errors,
            summary="Readiness: the required models are loaded",
            description="200 when predictions can be answered; 503 while a required model is loading.")(ready)
    app.get("/healthz", response_model=ServeReadiness, responses=probe_errors, summary="Alias of /readyz",
            description="Kept for existing probes; the same answer as `/readyz`.")(ready)

    not_served = {404: "This process does not serve that model at that stage."}

    @app.get("/v1/models", response_model=list[ModelInfo], summary="The models this process serves")
    def models() -> list[dict[str, Any]]:
        return [{"name": r.name, "stage": r.stage, "version": m.version if m else None,
                 "inputs": list(m.input_columns) if m else None} for r, m in host.snapshot().items()]

    @app.get("/v1/models/{name}", response_model=ModelInfo, summary="One served model: version and inputs",
             responses=error_responses({**not_served, 503: "No version loaded yet."}))
    def model(name: str, stage: str = Query("production")) -> dict[str, Any]:
        m = _model(name, stage)
        return {"name": m.name, "stage": stage, "version": m.version, "inputs": list(m.input_columns)}

    def _model(name: str, stage: str) -> Any:
        role = Role(name, stage)
        if role not in host.slots:
            served = ", ".join(str(r) for r in host.slots) or "none"
            raise _error(404, "unknown-model", f"this scorer does not serve {role} (it serves: {served})",
                         title="Unknown model")
        host.swap()
        m = host.get(name, stage)
        if m is None:
            raise _error(503, "model-not-loaded", f"no version of {role} is loaded yet", title="Model not loaded")
        return m

    predict_errors = error_responses({
        400: "The body is not instances (`rows`: the instances that are not objects).",
        **not_served,
        413: f"More than {MAX_INSTANCES:,} instances.",
        422: "The body is not JSON (`validation-error`), or rows cannot be scored (`invalid-input`: `errors` "
             "names each row with its reason, `inputs` the model's columns).",
        503: "No version of the model is loaded yet."},
        model=ServeProblem, models={422: (ValidationProblem, ServeProblem)})
    body_doc = {"requestBody": {"content": {"application/json": {"examples": {
        "rows": {"summary": "a list of rows", "value": {"instances": [_ROW_EXAMPLE]}},
        "columnar": {"summary": "columnar: one list per feature",
                     "value": {"instances": {k: [v, v] for k, v in _ROW_EXAMPLE.items()}}},
        "one": {"summary": "one row", "value": {"features": _ROW_EXAMPLE}}}}}}}

    @app.post("/v1/models/{name}/predict", response_model=PredictResponse,
              responses=predict_errors, openapi_extra=body_doc, summary="Score instances with a served model")
    def predict(name: str, body: PredictBody, stage: str = Query("production")) -> Any:
        """Score the instances with the version the stream serves at ``stage``."""
        t0 = time.perf_counter()
        m = _model(name, stage)
        rows = _instances(body)
        try:
            df = pl.from_dicts(rows, infer_schema_length=None)
        except Exception as exc:  # polars cannot find one type for a column
            raise _error(422, "invalid-input",
                         f"instances do not share one schema: {str(exc).splitlines()[0]}") from None
        fm = to_matrix(df, tuple(m.input_columns))
        if fm.rejected:
            errors = [{"row": i, "reason": r} for i, r in sorted(fm.rejected.items())[:50]]
            raise _error(422, "invalid-input", f"{len(fm.rejected)} of {len(rows)} instances cannot be scored",
                         errors=errors, inputs=list(m.input_columns))
        s = m.predict(fm.x)
        preds: list[dict[str, Any]] = [{"score": float(v)} for v in s.score.tolist()]
        if s.label is not None:
            for p, lab in zip(preds, s.label.tolist()):
                p["label"] = int(lab)
        return JSONResponse({"model": m.name, "version": m.version, "stage": stage,
                             "latency_ms": round((time.perf_counter() - t0) * 1000, 3), "predictions": preds})

    return app


def serve_http(host: ModelHost, port: int, bind: str = "127.0.0.1", *,
               ready_roles: Sequence[Role] | None = None) -> tuple[Any, threading.Thread]:
    """Run the app with uvicorn in a background thread; returns ``(server, thread)``
    (``server.should_exit = True`` stops it)."""
    uvicorn = require("uvicorn", "the HTTP predict endpoint", extra="http")

    server = uvicorn.Server(uvicorn.Config(create_app(host, ready_roles=ready_roles), host=bind, port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="streamml-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, thread
