"""The start-up probe against real peers: the session's Kafka broker answers ApiVersions like a
broker; an HTTP server on a loopback port is refused at once, by name, without librdkafka's
16 s of silence."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from streamml.errors import BrokerUnavailableError
from streamml.kafka.probe import check_reachable


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = HTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_the_session_broker_answers_like_kafka(bootstrap: str) -> None:
    check_reachable(bootstrap, 5.0)  # returns: ApiVersions answered with our correlation id


def test_an_http_server_is_not_taken_for_a_broker(http_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as info:
        check_reachable(f"127.0.0.1:{http_port}", 5.0)
    assert time.monotonic() - started < 15  # one wait for an answer, never librdkafka's retries
    # http.server waits for the end of a request line that a Kafka request never sends
    assert f"127.0.0.1:{http_port} (not a Kafka listener: it accepted the connection but did not answer " \
        "Kafka's ApiVersions request within 5s)" in info.value.message


def test_a_peer_that_answers_http_is_named(tmp_path: Path) -> None:
    import socket

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)

        def answer() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.recv(64)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(BrokerUnavailableError) as info:
            check_reachable(f"127.0.0.1:{srv.getsockname()[1]}", 5.0)
    assert "not a Kafka listener: it answered like an HTTP server (HTTP/1.1 400 Bad Request)" in info.value.message


def test_the_cli_names_the_address_of_a_non_kafka_peer(http_port: int, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "streamml", "-b", f"127.0.0.1:{http_port}", "topics"],
                         capture_output=True, text=True, timeout=60,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin",
                              "PYTHONPATH": str(Path(__file__).parents[2] / "src")})
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 1 and len(errors) == 1, res.stderr
    assert f"127.0.0.1:{http_port}" in errors[0] and "did not answer Kafka's ApiVersions" in errors[0]
    assert "Traceback" not in res.stderr
