"""A quick look before the first Kafka call: are the bootstrap servers well formed, does any
of them accept a TCP connection, and does what answers speak Kafka?

librdkafka retries an unreachable broker quietly until a request times out (16-30 s), then
reports ``[_TRANSPORT]`` without the address. :func:`check_reachable` answers in a few
seconds, naming every address it tried and what happened. On a plaintext listener it also
sends Kafka's ApiVersions request (v0, the one request every broker answers before any
authentication) and refuses a peer that answers something else (an HTTP server, a TLS
listener), the same 16 s librdkafka would otherwise spend in silence.

>>> parse_bootstrap("broker1:9093, SASL_SSL://broker2:9094,[::1]:9092,kafka")
[('broker1', 9093), ('broker2', 9094), ('::1', 9092), ('kafka', 9092)]
>>> speaks_kafka(api_versions_request(7)[:4] + b"\\x00\\x00\\x00\\x07", 7)
True
>>> not_kafka(b"HTTP/1.1 400 Bad Request\\r\\n")
'it answered like an HTTP server (HTTP/1.1 400 Bad Request)'
>>> parse_bootstrap("broker:x")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.ConfigError: bootstrap server 'broker:x' has an invalid port 'x' (hint: ...)
"""

from __future__ import annotations

import socket
import struct
import time

from streamml.errors import BrokerUnavailableError, ConfigError

__all__ = ["parse_bootstrap", "check_reachable", "PROBE_SECONDS", "api_versions_request", "speaks_kafka",
           "not_kafka"]

PROBE_SECONDS = 3.0  # how long check_reachable keeps trying addresses that refuse connections
_FORMAT_HINT = "write HOST:PORT[,HOST:PORT...], e.g. broker1:9092,broker2:9092"


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """``host:port`` pairs of a bootstrap list (a ``PROTOCOL://`` prefix is dropped; the port
    defaults to 9092 as in librdkafka)."""
    out: list[tuple[str, int]] = []
    for item in servers.split(","):
        entry = item.strip()
        if not entry:
            continue
        address = entry.split("://", 1)[1] if "://" in entry else entry
        if address.startswith("["):  # [IPv6]:port
            host, _, rest = address[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else (rest or "9092")
        elif address.count(":") == 1:
            host, port_text = address.split(":")
        else:
            host, port_text = address, "9092"
        if not host:
            raise ConfigError(f"bootstrap server {entry!r} has no host", hint=_FORMAT_HINT)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigError(f"bootstrap server {entry!r} has an invalid port {port_text!r}", hint=_FORMAT_HINT)
        out.append((host, int(port_text)))
    if not out:
        raise ConfigError(f"bootstrap servers {servers!r} name no broker", hint=_FORMAT_HINT)
    return out


_API_VERSIONS = 18  # Kafka's ApiVersions request key; v0 has an empty body
_PLAIN = ("PLAINTEXT", "SASL_PLAINTEXT")  # listeners that answer ApiVersions in the clear
_ANSWER_SECONDS = 5.0  # how long a peer that accepted the connection gets to answer (a broker takes ms)


def api_versions_request(correlation_id: int, client_id: bytes = b"streamml-probe") -> bytes:
    """Kafka's ApiVersions request v0: size, api key, version, correlation id, client id."""
    body = struct.pack(">hhih", _API_VERSIONS, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def speaks_kafka(answer: bytes, correlation_id: int) -> bool:
    """Whether ``answer`` starts like a Kafka response to request ``correlation_id``: a
    plausible size, then the same correlation id."""
    if len(answer) < 8:
        return False
    size, corr = struct.unpack(">ii", answer[:8])
    return bool(4 <= size <= 1 << 20 and corr == correlation_id)


def not_kafka(answer: bytes) -> str:
    """What a peer that does not speak Kafka seems to be, from its first bytes."""
    if not answer:
        return "it closed the connection without answering Kafka's ApiVersions request"
    if answer[:1] == b"\x15" and answer[1:2] == b"\x03":  # a TLS alert record
        return "it answered with TLS (set security.protocol to SSL or SASL_SSL)"
    first = answer.split(b"\r\n", 1)[0].split(b"\n", 1)[0][:60].decode("latin-1")
    if first.startswith(("HTTP/", "<")):
        return f"it answered like an HTTP server ({first.strip()})"
    return f"it answered {answer[:16]!r}, which is not a Kafka response"


def _ask(sock: socket.socket, seconds: float) -> str | None:
    """None when the peer answers ApiVersions like a broker; else why it is not a broker (a
    peer that keeps silent, like an HTTP server waiting for the end of a request line, is not:
    a broker answers within milliseconds, even a loaded one well within the limit)."""
    corr = int(time.monotonic() * 1000) & 0x7FFFFFFF
    answer = b""
    try:
        sock.settimeout(seconds)
        sock.sendall(api_versions_request(corr))
        while len(answer) < 8:
            chunk = sock.recv(8 - len(answer))
            if not chunk:
                break
            answer += chunk
    except TimeoutError:
        if answer:
            return not_kafka(answer)
        return f"it accepted the connection but did not answer Kafka's ApiVersions request within {seconds:.0f}s"
    except OSError as exc:
        return f"it dropped the connection ({(exc.strerror or str(exc)).lower()})"
    if speaks_kafka(answer, corr):
        return None
    try:  # the rest of its first line, to say what it is
        sock.settimeout(0.2)
        answer += sock.recv(120)
    except OSError:
        pass
    return not_kafka(answer)


def check_reachable(servers: str, timeout: float = PROBE_SECONDS, *, protocol: str = "PLAINTEXT") -> None:
    """Return as soon as one bootstrap server accepts a TCP connection (and, on a plaintext
    ``protocol``, answers Kafka's ApiVersions request like a broker); raise
    BrokerUnavailableError naming each address and why, after ``timeout`` seconds of
    refused connections (a broker that is restarting gets that long). A host name that does
    not resolve, or a peer that is not Kafka, is not retried."""
    addresses = parse_bootstrap(servers)
    ask = protocol.upper() in _PLAIN
    deadline = time.monotonic() + timeout
    while True:
        why: dict[tuple[str, int], str] = {}
        for host, port in addresses:
            left = max(0.2, min(1.5, deadline - time.monotonic()))
            try:
                with socket.create_connection((host, port), timeout=left) as sock:
                    wrong = _ask(sock, _ANSWER_SECONDS) if ask else None
                if wrong is None:
                    return
                why[(host, port)] = f"not a Kafka listener: {wrong}"
            except socket.gaierror:
                why[(host, port)] = "unknown host"
            except TimeoutError:
                why[(host, port)] = f"no answer within {left:.1f}s"
            except OSError as exc:
                why[(host, port)] = (exc.strerror or str(exc)).lower()
        final = all(w == "unknown host" or w.startswith("not a Kafka") for w in why.values())
        if final or time.monotonic() >= deadline:
            tried = "; ".join(f"{h}:{p} ({w})" for (h, p), w in why.items())
            raise BrokerUnavailableError(
                f"cannot reach Kafka at {tried}", code="_TRANSPORT",
                hint="check that the brokers run and the bootstrap servers are right "
                     "(-b HOST:PORT, STREAMML_BOOTSTRAP_SERVERS or bootstrap_servers in the config file); "
                     "without any, streamml uses the local cluster (streamml kafka up)")
        time.sleep(0.25)
