"""ksqlDB's REST endpoints over this process's ksqlDB session: ``POST /ksql`` and ``POST /query``.

The bodies and answers are those ksqlDB users know (``{"ksql": "...", "streamsProperties": {}}``):

- ``POST /ksql`` runs statements: ``CREATE STREAM|TABLE x (...) WITH (...)`` declares a source,
  ``CREATE STREAM|TABLE x AS SELECT ...`` *starts* the persistent query (a
  :class:`~streamml.query.deploy.Deployment` in this process, as ksqlDB's server runs it),
  ``SET`` sets a session property. The answer is one status object per statement:
  ``{"@type": "currentStatus", "statementText": ..., "commandStatus": {"status": "SUCCESS", ...}}``.
- ``POST /query`` runs a pull query (``SELECT ... FROM table WHERE key = ...``) and answers
  ``[{"header": {"queryId": ..., "schema": "`CARD` STRING KEY, `TOTAL` DOUBLE"}},
  {"row": {"columns": ["a", 5.0]}}, ...]``; a push query (``... EMIT CHANGES [LIMIT n]``)
  streams the same shape, one JSON element per line, until its LIMIT or the client leaves.
  ``streamsProperties`` may set ``auto.offset.reset``.

Errors are RFC 9457 problems (:mod:`streamml.http_common`): 400 ``bad-statement`` with the
statement's error as ``detail`` and what to write instead as ``hint``; 401 without the token.

>>> ksql_type(pl.Int64), ksql_type(pl.String), ksql_type(pl.Float64)
('BIGINT', 'STRING', 'DOUBLE')
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import polars as pl

from streamml.config import Settings
from streamml.errors import QueryError
from streamml.extras import require
from streamml.http_common import Liveness, ProblemError, bearer_auth, error_responses, install
from streamml.query.deploy import deploy
from streamml.query.ksql import CreateAs, CreateSource, InsertInto, parse_ksql, split_statements
from streamml.query.ksql_pull import key_column
from streamml.query.ksql_push import OFFSET_RESET, push
from streamml.query.ksql_run import catalog, run_ksql
from streamml.query.ksql_select import PullQuery, parse_transient, source_of

try:
    from fastapi import Depends, FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from pydantic import BaseModel, Field
except ImportError as _exc:  # pragma: no cover - http_common raised already
    raise ImportError(str(_exc)) from None

__all__ = ["create_app", "serve_ksql_http", "KsqlRequest", "ksql_type"]

_ADMIN = re.compile(r"^\s*(SET|UNSET|SHOW|LIST|DESCRIBE|DROP|TERMINATE)\b", re.I)
_TYPES = {pl.String: "STRING", pl.Int64: "BIGINT", pl.Int32: "INTEGER", pl.Float64: "DOUBLE",
          pl.Boolean: "BOOLEAN"}


def ksql_type(dt: Any) -> str:
    """The ksqlDB type name of a Polars dtype (``STRING`` for anything without one).

    >>> ksql_type(pl.List(pl.Float64))
    'ARRAY<DOUBLE>'
    """
    if isinstance(dt, pl.List):
        return f"ARRAY<{ksql_type(dt.inner)}>"
    return next((name for t, name in _TYPES.items() if dt == t), "STRING")


class KsqlRequest(BaseModel):
    """A ksqlDB REST request body."""

    ksql: str = Field(description="One or more statements, separated by semicolons",
                      examples=["SELECT * FROM per_card WHERE card = 'c1';"])
    streamsProperties: dict[str, Any] = Field(default_factory=dict,  # noqa: N815 - ksqlDB's name
                                              description="Session properties, e.g. `auto.offset.reset`")


def _problem(exc: QueryError) -> ProblemError:
    return ProblemError(400, "bad-statement", exc.message, title="Bad statement", hint=exc.hint)


def _schema(df: pl.DataFrame, key: str | None) -> str:
    """ksqlDB's schema string: key columns (and a windowed key's bounds) marked KEY."""
    keys = {key, "WINDOWSTART", "WINDOWEND"} if key is not None else set()
    return ", ".join(f"`{c}` {ksql_type(t)}" + (" KEY" if c in keys else "") for c, t in df.schema.items())


def _key_of(text: str, settings: Settings) -> str | None:
    name = source_of(text) or ""
    cat = catalog(settings)
    if name in cat.queries:
        return key_column(cat.queries[name])
    src = cat.sources.get(name)
    return src.key.name if src is not None and src.key is not None else None


def create_app(settings: Settings, *, token: str | None = None) -> FastAPI:
    """The ksqlDB REST app over ``settings``' session (bearer ``token`` required when given)."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for d in list(app.state.deployments.values()):  # the persistent queries end with the server
            d.stop()

    app = FastAPI(title="streamml ksqlDB", version="1", description=(__doc__ or "").split("\n\n>>>")[0],
                  lifespan=lifespan)
    install(app, extra_schemas=[KsqlRequest])
    deps = [Depends(bearer_auth(token))] if token else []
    app.state.deployments = catalog(settings).running  # query id -> Deployment (SHOW QUERIES, TERMINATE)
    lock = threading.Lock()
    errors = error_responses({400: "The statement is not valid or cannot run (`hint`: what to write instead).",
                              **({401: "Missing or invalid bearer token."} if token else {})})

    @app.get("/livez", response_model=Liveness, summary="Liveness: the process serves HTTP")
    def livez() -> dict[str, Any]:
        return {"status": "alive"}

    @app.post("/ksql", dependencies=deps, responses=errors, summary="Run statements (CREATE, SET)")
    def ksql(body: KsqlRequest) -> Any:
        out: list[dict[str, Any]] = []
        try:
            for piece in split_statements(body.ksql):
                if source_of(piece) is not None:
                    raise QueryError("queries are run with POST /query", hint="send SELECT statements to /query")
                st = None if _ADMIN.match(piece) else parse_ksql(piece)
                if isinstance(st, (CreateAs, InsertInto)):
                    with lock:
                        d = deploy(piece, settings=settings)
                    qid = d.query_id
                    message = f"Created query with ID {qid}"
                else:
                    res = run_ksql(piece, settings)
                    if st is None and isinstance(res, pl.DataFrame) and not piece.lstrip().upper().startswith("SET"):
                        out.append({"@type": piece.split()[0].lower(), "statementText": piece,
                                    "rows": res.to_dicts()})
                        continue
                    message = f"{st.kind.capitalize()} created" if isinstance(st, CreateSource) else "Property set"
                    qid = None
                out.append({"@type": "currentStatus", "statementText": piece,
                            "commandId": f"{uuid.uuid4().hex[:8]}", "commandStatus": {
                                "status": "SUCCESS", "message": message, **({"queryId": qid} if qid else {})}})
        except QueryError as exc:
            raise _problem(exc) from None
        return out

    @app.post("/query", dependencies=deps, responses=errors, summary="Run a pull or push query")
    def query(body: KsqlRequest) -> Any:
        pieces = split_statements(body.ksql)
        try:
            if len(pieces) != 1 or source_of(pieces[0]) is None:
                raise QueryError("POST /query takes one SELECT statement",
                                 hint="send CREATE and SET statements to /ksql")
            text = pieces[0]
            tq = parse_transient(text)
            key = _key_of(text, settings)
            qid = f"transient_{uuid.uuid4().hex[:12]}"
            if isinstance(tq, PullQuery):
                df = run_ksql(text, settings)
                rows = [{"row": {"columns": list(r)}} for r in df.rows()]
                return JSONResponse([{"header": {"queryId": qid, "schema": _schema(df, key)}}, *rows])
            cat = catalog(settings)
            props = {k.upper(): str(v).lower() for k, v in body.streamsProperties.items()}
            live = push(tq, cat, settings, from_=props.get(OFFSET_RESET))
        except QueryError as exc:
            raise _problem(exc) from None

        def lines() -> Iterator[bytes]:
            header_sent = False
            try:
                for df in live.batches():
                    df = df.drop([c for c in df.columns if c == "_tombstone"])
                    if not header_sent:
                        header_sent = True
                        yield orjson.dumps({"header": {"queryId": qid, "schema": _schema(df, key)}}) + b"\n"
                    for r in df.rows():
                        yield orjson.dumps({"row": {"columns": list(r)}}) + b"\n"
            finally:
                live.close()

        return StreamingResponse(lines(), media_type="application/json")

    return app


def serve_ksql_http(settings: Settings, port: int, bind: str = "127.0.0.1", *,
                    token: str | None = None) -> tuple[Any, threading.Thread]:
    """Run the app with uvicorn in a background thread; returns ``(server, thread)``
    (``server.should_exit = True`` stops it)."""
    uvicorn = require("uvicorn", "the ksqlDB HTTP endpoints", extra="http")
    server = uvicorn.Server(uvicorn.Config(create_app(settings, token=token), host=bind, port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="streamml-ksql-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, thread
