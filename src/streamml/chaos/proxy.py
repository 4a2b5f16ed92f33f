"""A TCP proxy on loopback that can partition the clients behind it from the brokers.

``cut()`` models a network partition: bytes stop flowing both ways on open connections and
new connections are accepted but never served (requests time out; nothing is reset).
``heal()`` resets the held connections so clients reconnect at once, and serves again.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Iterable


class PartitionProxy:
    def __init__(self, routes: Iterable[tuple[int, int]], host: str = "127.0.0.1") -> None:
        self.routes, self.host = list(routes), host
        self.blocked = threading.Event()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.servers: list[socket.socket] = []
        self.closed = False

    def start(self) -> "PartitionProxy":
        for listen, target in self.routes:
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind((self.host, listen))
            srv.listen(64)
            self.servers.append(srv)
            threading.Thread(target=self._accept, args=(srv, target), daemon=True).start()
        return self

    def _accept(self, srv: socket.socket, target: int) -> None:
        while not self.closed:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            with self.lock:  # decided under the lock heal() takes: a connection is held or served
                self.conns.append(client)
                if self.blocked.is_set():
                    continue  # held: accepted, never served
            try:
                upstream = socket.create_connection((self.host, target), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.conns.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.blocked.is_set() and not self.closed:
                    time.sleep(0.1)
                if self.closed:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _reset(src)
            _reset(dst)

    def cut(self) -> None:
        self.blocked.set()

    def heal(self) -> None:
        with self.lock:
            held, self.conns = self.conns, []
            self.blocked.clear()
        for s in held:
            _reset(s)

    def close(self) -> None:
        self.closed = True
        self.heal()
        for srv in self.servers:
            srv.close()


def _reset(s: socket.socket) -> None:
    """Tear a connection down so both ends see it at once. ``close()`` alone leaves it open while
    another thread is blocked in ``recv()`` on it: the client would wait on a dead connection."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, not FIN
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
