"""The HTTP ingest endpoint: a JSON array is accepted; an NDJSON body with bad lines is partly accepted.

Run: ``python examples/ingest_http.py``. The server here runs in a thread; from a shell it is
``streamml ingest http --token TOKEN`` (OpenAPI at http://127.0.0.1:8080/openapi.json).
"""

import socket
import threading
import time

import httpx
import uvicorn

import streamml
from streamml.ingest import HttpOptions, create_app
from streamml.schema import Field, Schema

settings = streamml.connect()
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
schema = Schema("clicks", [Field("user", str), Field("page", str), Field("ms", int, min=0)])
app = create_app(settings, HttpOptions(token="demo-token", schemas={"clicks": schema}))
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.05)

url = f"http://127.0.0.1:{port}/v1/streams/clicks/events"
auth = {"Authorization": "Bearer demo-token"}
with httpx.Client(timeout=30) as http:
    denied = http.post(url, json=[{"user": "a"}])                                          # 401, a problem
    print("no token:", denied.status_code, denied.headers["content-type"], denied.json()["detail"])
    print("ready:", http.get(f"http://127.0.0.1:{port}/readyz").status_code)               # probes need no token
    ok = http.post(url, json=[{"user": "ann", "page": "/", "ms": 120}, {"user": "bob", "page": "/buy", "ms": 80}],
                   headers=auth)
    print("array:", ok.status_code, ok.json()["accepted"], "accepted")                        # 200, after Kafka's ack
    body = b'{"user": "cid", "page": "/", "ms": 5}\n{"user": "dan", "page": \n{"user": "eve", "page": "/", "ms": -1}\n'
    part = http.post(url, content=body, headers={**auth, "Content-Type": "application/x-ndjson"})
    print("ndjson:", part.status_code, part.json()["detail"])                                # 400: partial accept
    for err in part.json()["errors"]:
        print(f"  record {err['index']}: {err['reason']}")
    assert ok.status_code == 200 and part.status_code == 400 and part.json()["accepted"] == 1
    assert denied.status_code == 401 and part.json()["type"] == "urn:streamml:problem:invalid-records"
server.should_exit = True
