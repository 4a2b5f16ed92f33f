"""A quick look before the first Kafka call: are the bootstrap servers well formed, and does
any of them accept a TCP connection?

librdkafka retries an unreachable broker quietly until a request times out (16-30 s), then
reports ``[_TRANSPORT]`` without the address. :func:`check_reachable` answers in a few
seconds, naming every address it tried and what happened.

>>> parse_bootstrap("broker1:9093, SASL_SSL://broker2:9094,[::1]:9092,kafka")
[('broker1', 9093), ('broker2', 9094), ('::1', 9092), ('kafka', 9092)]
>>> parse_bootstrap("broker:x")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.ConfigError: bootstrap server 'broker:x' has an invalid port 'x' (hint: ...)
"""

from __future__ import annotations

import socket
import time

from streamml.errors import BrokerUnavailableError, ConfigError

__all__ = ["parse_bootstrap", "check_reachable", "PROBE_SECONDS"]

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


def check_reachable(servers: str, timeout: float = PROBE_SECONDS) -> None:
    """Return as soon as one bootstrap server accepts a TCP connection; raise
    BrokerUnavailableError naming each address and why, after ``timeout`` seconds of
    refused connections (a broker that is restarting gets that long). A host name that does
    not resolve is not retried."""
    addresses = parse_bootstrap(servers)
    deadline = time.monotonic() + timeout
    while True:
        why: dict[tuple[str, int], str] = {}
        for host, port in addresses:
            left = max(0.2, min(1.5, deadline - time.monotonic()))
            try:
                socket.create_connection((host, port), timeout=left).close()
                return
            except socket.gaierror:
                why[(host, port)] = "unknown host"
            except TimeoutError:
                why[(host, port)] = f"no answer within {left:.1f}s"
            except OSError as exc:
                why[(host, port)] = (exc.strerror or str(exc)).lower()
        if all(w == "unknown host" for w in why.values()) or time.monotonic() >= deadline:
            tried = "; ".join(f"{h}:{p} ({w})" for (h, p), w in why.items())
            raise BrokerUnavailableError(
                f"cannot reach Kafka at {tried}", code="_TRANSPORT",
                hint="check that the brokers run and the bootstrap servers are right "
                     "(-b HOST:PORT, STREAMML_BOOTSTRAP_SERVERS or bootstrap_servers in the config file); "
                     "without any, streamml uses the local cluster (streamml kafka up)")
        time.sleep(0.25)
