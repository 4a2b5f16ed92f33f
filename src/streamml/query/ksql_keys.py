"""Record keys in ksqlDB's KAFKA key format, plain and windowed.

A key column is written as ksqlDB's KAFKA format writes it (VARCHAR: UTF-8; BIGINT: 8 bytes
big-endian; INT: 4 bytes; DOUBLE: 8-byte IEEE 754). A time-windowed key (TUMBLING, HOPPING)
is followed by the window start as 8 bytes big-endian (ms); a session-windowed key by the
session's start and then its end, 8 bytes each (Kafka Streams' ``SessionWindowedSerializer``),
so a session's key changes as the session grows.

>>> encode_key(pl.Series(["c1"]), "VARCHAR", pl.Series([1]), pl.Series([2]))
[b'c1\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02']
>>> decode_window_key(_[0], "VARCHAR", "session")
('c1', 1, 2)
"""

from __future__ import annotations

import struct
from typing import Any

import polars as pl

__all__ = ["encode_key", "decode_key", "decode_window_key"]


def encode_key(values: pl.Series, ktype: str, window_start: pl.Series | None = None,
               window_end: pl.Series | None = None) -> list[bytes | None]:
    """Keys in ksqlDB's KAFKA format; windowed ones followed by the 8-byte window start, and
    session-windowed ones (``window_end`` given) by the 8-byte session end after it.

    >>> encode_key(pl.Series(["c1"]), "VARCHAR", pl.Series([60000]))
    [b'c1\\x00\\x00\\x00\\x00\\x00\\x00\\xea`']
    """
    out: list[bytes | None] = []
    starts = window_start.to_list() if window_start is not None else [None] * len(values)
    ends = window_end.to_list() if window_end is not None else [None] * len(values)
    for v, ws, we in zip(values.to_list(), starts, ends):
        if v is None:
            out.append(None)
            continue
        if ktype in ("BIGINT",):
            k = struct.pack(">q", int(v))
        elif ktype in ("INT", "INTEGER"):
            k = struct.pack(">i", int(v))
        elif ktype == "DOUBLE":
            k = struct.pack(">d", float(v))
        else:
            k = str(v).encode()
        if ws is not None:
            k += struct.pack(">q", int(ws))
        if we is not None:
            k += struct.pack(">q", int(we))
        out.append(k)
    return out


def _body(body: bytes, ktype: str) -> Any:
    if ktype == "BIGINT":
        return struct.unpack(">q", body)[0]
    if ktype in ("INT", "INTEGER"):
        return struct.unpack(">i", body)[0]
    if ktype == "DOUBLE":
        return struct.unpack(">d", body)[0]
    return body.decode()


def decode_key(raw: bytes | None, ktype: str, windowed: bool) -> tuple[Any, int | None]:
    """(key, window start) of a key written by :func:`encode_key` (not session-windowed).

    >>> decode_key(encode_key(pl.Series([7]), "BIGINT", pl.Series([5]))[0], "BIGINT", True)
    (7, 5)
    """
    if raw is None:
        return None, None
    body, ws = (raw[:-8], struct.unpack(">q", raw[-8:])[0]) if windowed else (raw, None)
    return _body(body, ktype), ws


def decode_window_key(raw: bytes | None, ktype: str, kind: str | None) -> tuple[Any, int | None, int | None]:
    """(key, window start, session end) of a key; ``kind`` is ``"session"``, another window
    kind (start only: the end is ``None``) or ``None`` (not windowed)."""
    if raw is None:
        return None, None, None
    if kind == "session":
        start, end = struct.unpack(">qq", raw[-16:])
        return _body(raw[:-16], ktype), start, end
    key, ws = decode_key(raw, ktype, kind is not None)
    return key, ws, None
