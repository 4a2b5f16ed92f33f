"""Where artifact bytes live: inline chunks on the models topic, or an fsspec artifact store.

Inline artifacts are cut into chunks of at most :data:`CHUNK_BYTES` (under the broker's
default ``message.max.bytes`` of 1 MiB), each a record keyed ``<name>:<version>:<i>`` on
the chunk partition, carrying its index, the chunk count and its own SHA-256 in headers.

>>> chunks = split_chunks(b"x" * 25, 10)
>>> [len(c) for c in chunks]
[10, 10, 5]
>>> chunk_key("fraud", 3, 1)
b'fraud:3:chunk:1'
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from streamml.errors import ConfigError, IntegrityError

__all__ = ["CHUNK_BYTES", "split_chunks", "chunk_key", "ArtifactStore"]

CHUNK_BYTES = 900_000
H_CHUNK = "sm.chunk"
H_CHUNKS = "sm.chunks"
H_CHUNK_SHA = "sm.chunk_sha256"


def split_chunks(data: bytes, size: int = CHUNK_BYTES) -> list[bytes]:
    if size <= 0:
        raise ConfigError("chunk size must be positive")
    return [data[i:i + size] for i in range(0, len(data), size)] or [b""]


def chunk_key(name: str, version: int, index: int) -> bytes:
    return f"{name}:{version}:chunk:{index}".encode()


def chunk_headers(index: int, count: int, chunk: bytes) -> list[tuple[str, bytes]]:
    return [(H_CHUNK, str(index).encode()), (H_CHUNKS, str(count).encode()),
            (H_CHUNK_SHA, hashlib.sha256(chunk).hexdigest().encode())]


def check_chunk(ref: str, index: int, count: int, key: bytes | None, expected_key: bytes, value: bytes | None,
                headers: dict[str, str]) -> bytes:
    """A chunk record as read back: right key, right index, bytes matching their own hash."""
    if key != expected_key:
        raise IntegrityError(f"{ref}: chunk {index}/{count} has key {key!r}, expected {expected_key!r}",
                             hint="the descriptor points at the wrong records; republish the model")
    if value is None:
        raise IntegrityError(f"{ref}: chunk {index}/{count} was deleted (tombstone)")
    if headers.get(H_CHUNK) != str(index) or headers.get(H_CHUNKS) != str(count):
        raise IntegrityError(f"{ref}: chunk {index}/{count} carries index {headers.get(H_CHUNK)}/"
                             f"{headers.get(H_CHUNKS)}")
    digest = hashlib.sha256(value).hexdigest()
    if headers.get(H_CHUNK_SHA) != digest:
        raise IntegrityError(f"{ref}: chunk {index}/{count} is corrupted (SHA-256 {digest[:16]}... does not match "
                             f"{(headers.get(H_CHUNK_SHA) or '?')[:16]}...)",
                             hint="the artifact was not loaded; republish the model")
    return value


class ArtifactStore:
    """Artifacts by URI, through fsspec: a local folder (default) or any fsspec URL
    (``s3://bucket/models``, ``gcs://...``, ``memory://...``).

    Files are content-addressed: ``<base>/<name>/<version>/<sha256>.<format>``.
    """

    def __init__(self, url: str | Path) -> None:
        url = str(url)
        if "://" not in url:
            Path(url).expanduser().mkdir(parents=True, exist_ok=True)
            url = Path(url).expanduser().resolve().as_uri()
        self.url = url.rstrip("/")

    def put(self, name: str, version: int, data: bytes, fmt: str) -> str:
        import fsspec

        uri = f"{self.url}/{name}/{version}/{hashlib.sha256(data).hexdigest()}.{fmt}"
        fs, path = fsspec.core.url_to_fs(uri)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with fs.open(path, "wb") as fh:
            fh.write(data)
        return uri

    @staticmethod
    def get(uri: str) -> bytes:
        import fsspec

        try:
            with fsspec.open(uri, "rb") as fh:
                data: Any = fh.read()
        except FileNotFoundError:
            raise IntegrityError(f"artifact {uri} is missing from the artifact store") from None
        return bytes(data)
