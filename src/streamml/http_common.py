"""What the HTTP apps share: one error shape (RFC 9457 problem details), bearer auth, probes.

Every error of the ingest and the scoring app is ``application/problem+json``::

    {"type": "urn:streamml:problem:unknown-model", "title": "Unknown model", "status": 404,
     "detail": "this scorer does not serve nope@production (it serves: fraud@production)"}

``type`` identifies the kind of problem (``about:blank`` for plain HTTP errors such as an
unknown path, whose ``title`` is then the status phrase); ``detail`` explains this occurrence.
Extra members carry the data a client acts on: ``errors`` (validation errors, failed records
by index), ``accepted``/``event_ids`` (ingest), ``inputs``, ``retry_after_s``...

:func:`install` registers the exception handlers (:class:`ProblemError`, request validation
-> 422, any ``HTTPException`` -> its status, anything else -> 500) and rewrites the app's
OpenAPI so that every documented error response is ``application/problem+json``.

This module imports neither :mod:`streamml.ingest` nor :mod:`streamml.serve`; both import it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Any

from streamml.extras import missing

try:
    from fastapi import FastAPI, Request, Security
    from fastapi.exceptions import RequestValidationError
    from fastapi.openapi.utils import get_openapi
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as _exc:
    raise missing(_exc, "the HTTP endpoints", extra="http") from None

__all__ = ["PROBLEM_JSON", "Problem", "ValidationProblem", "ProblemError", "problem_response", "problem_type",
           "install", "error_responses", "bearer_auth", "Liveness"]

_log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:streamml:problem:"


def problem_type(slug: str) -> str:
    """The ``type`` URI of a streamml problem: ``urn:streamml:problem:<slug>``."""
    return TYPE_PREFIX + slug


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "urn:streamml:problem:unauthorized", "title": "Unauthorized", "status": 401,
        "detail": "missing or invalid bearer token"}]})

    type: str = Field("about:blank", description="URI of the problem type: `urn:streamml:problem:<kind>`, "
                                                 "or `about:blank` for a plain HTTP error")
    title: str = Field(description="Short summary of the problem type")
    status: int = Field(description="The HTTP status code")
    detail: str | None = Field(None, description="What went wrong in this occurrence")
    instance: str | None = Field(None, description="The request path")


class FieldError(BaseModel):
    """One validation error of a request."""

    loc: list[str | int] = Field(description="Where: `body`, `query`, `path`, then the field names/indices")
    msg: str
    type: str


class ValidationProblem(Problem):
    """A request that does not match the declared parameters or body (422)."""

    errors: list[FieldError] = Field(default_factory=list)


class ProblemError(Exception):
    """Raise in a handler to answer with a problem; ``extra`` become members of the body."""

    def __init__(self, status: int, slug: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.slug, self.detail, self.title = status, slug, detail, title
        self.headers, self.extra = headers, extra


def problem_response(status: int, slug: str | None, detail: str | None, *, title: str | None = None,
                     headers: dict[str, str] | None = None, instance: str | None = None,
                     **extra: Any) -> JSONResponse:
    """A ``application/problem+json`` response; ``slug`` None means ``about:blank``."""
    if title is None:
        title = slug.replace("-", " ").capitalize() if slug else _phrase(status)
    body: dict[str, Any] = {"type": problem_type(slug) if slug else "about:blank", "title": title,
                            "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    return problem_response(exc.status, exc.slug, exc.detail, title=exc.title, headers=exc.headers,
                            instance=request.url.path, **exc.extra)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()[:50]]
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:3])
    return problem_response(422, "validation-error", f"the request is not valid: {where}", title="Invalid request",
                            instance=request.url.path, errors=errors)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != _phrase(exc.status_code) else None
    return problem_response(exc.status_code, None, detail, headers=dict(exc.headers or {}),
                            instance=request.url.path)


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    _log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return problem_response(500, "internal-error", f"{type(exc).__name__}: the server failed on this request",
                            title="Internal error", instance=request.url.path)


def error_responses(descriptions: dict[int, str], *, model: type[Problem] = Problem,
                    models: dict[int, type[Problem] | tuple[type[Problem], ...]] | None = None,
                    retry_after: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses, each a problem: ``model``, or per status one of
    ``models`` (a tuple: one of these shapes; pass them to :func:`install` as ``extra_schemas``).
    401 documents ``WWW-Authenticate``, 503 ``Retry-After`` when ``retry_after``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status, text in descriptions.items():
        chosen = (models or {}).get(status, ValidationProblem if status == 422 else model)
        entry: dict[str, Any] = {"description": text}
        if isinstance(chosen, tuple):
            entry["content"] = {PROBLEM_JSON: {"schema": {"oneOf": [
                {"$ref": f"#/components/schemas/{m.__name__}"} for m in chosen]}}}
        else:
            entry["model"] = chosen
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}}
        if status == 503 and retry_after:
            entry["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                                "schema": {"type": "integer"}}}
        out[status] = entry
    return out


def bearer_auth(token: str, *, scheme_name: str = "bearerAuth") -> Callable[..., Any]:
    """A dependency checking ``Authorization: Bearer <token>`` (constant-time); declared in
    OpenAPI as an HTTP bearer security scheme. Answers 401 with ``WWW-Authenticate: Bearer``."""
    bearer = HTTPBearer(auto_error=False, scheme_name=scheme_name,
                        description="The token the server was started with (`--token`, `STREAMML_HTTP_TOKEN`).")
    expected = token.encode()

    async def check(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:
        given = credentials.credentials.strip().encode() if credentials is not None else b""
        if credentials is None or not secrets.compare_digest(given, expected):
            raise ProblemError(401, "unauthorized", "missing or invalid bearer token", title="Unauthorized",
                               headers={"WWW-Authenticate": "Bearer"})

    return check


class Liveness(BaseModel):
    """The process is up and answering."""

    status: str = Field("alive", examples=["alive"])


def install(app: FastAPI, *, extra_schemas: Sequence[type[BaseModel]] = ()) -> None:
    """Register the problem handlers on ``app`` and make its OpenAPI document them.

    ``extra_schemas`` are added to ``components.schemas`` (for bodies documented by hand)."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_crash)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                              summary=app.summary, description=app.description, routes=app.routes,
                              tags=app.openapi_tags, servers=app.servers)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            models: list[type[BaseModel]] = [Problem, ValidationProblem, *extra_schemas]
            for model in models:
                _add_schema(schemas, model)
            for op in _operations(doc):
                for status, resp in op.get("responses", {}).items():
                    content = resp.get("content", {})
                    if status[:1] in "45" and "application/json" in content:
                        content[PROBLEM_JSON] = content.pop("application/json")
                    media = content.get(PROBLEM_JSON, {})
                    if media.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                        media["schema"] = {"$ref": "#/components/schemas/ValidationProblem"}
            for name in ("HTTPValidationError", "ValidationError"):  # FastAPI's own 422 shape, replaced above
                schemas.pop(name, None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_schema(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas.setdefault(model.__name__, schema)


def _operations(doc: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for item in doc.get("paths", {}).values():
        for method, op in item.items():
            if method in ("get", "put", "post", "delete", "patch", "head", "options") and isinstance(op, dict):
                yield op
