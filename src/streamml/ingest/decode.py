"""Decode chunks of JSONL, CSV and Parquet into records, a whole chunk at a time.

Each chunk takes the fast path first: Arrow's JSON or CSV reader parses the chunk in one
call and the schema is checked column by column (:meth:`Schema.validate_table`). A chunk
the fast path cannot take as a whole (a malformed line, invalid UTF-8, a type Arrow will
not convert) is decoded line by line, so each bad record gets its own reason and the good
records of the chunk are kept. Both paths accept and reject exactly the same records.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from streamml.errors import SchemaError
from streamml.schema.codec import Codec
from streamml.schema.core import Schema, parse_timestamp_ms

__all__ = ["RecordSpec", "Decoded", "decode_jsonl", "decode_csv", "decode_table"]


@dataclass(frozen=True)
class RecordSpec:
    """How to turn rows into records: schema, key and event-time columns, wire codec (None: JSON)."""

    schema: Schema | None = None
    key: str | None = None
    time: str | None = None
    codec: Codec | None = None


@dataclass
class Decoded:
    """One decoded chunk: per record its value, original bytes, position and verdict."""

    values: list[bytes]
    originals: list[bytes]
    positions: Sequence[int]
    ok: np.ndarray
    reasons: dict[int, str] = field(default_factory=dict)
    keys: list[bytes | None] | None = None
    times: list[int | None] | None = None

    def __len__(self) -> int:
        return len(self.values)


# -- JSONL --------------------------------------------------------------------------------
def decode_jsonl(chunk: bytes, first_line: int, spec: RecordSpec) -> Decoded:
    """Decode newline-delimited JSON; ``first_line`` is the 1-based line number of the chunk's start."""
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r\n", b"\n")
    lines = chunk.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    fast = _jsonl_fast(chunk, lines, first_line, spec)
    return fast if fast is not None else _jsonl_slow(lines, first_line, spec)


def _jsonl_fast(chunk: bytes, lines: list[bytes], first_line: int, spec: RecordSpec) -> Decoded | None:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    records = list(filter(None, lines))
    positions: Sequence[int]
    if len(records) != len(lines):
        positions = [first_line + i for i, line in enumerate(lines) if line]
    else:
        positions = range(first_line, first_line + len(lines))
    if not records:
        return Decoded([], [], [], np.ones(0, dtype=bool))
    if spec.schema is None:
        # no types to check: Polars' reader (faster) proves every line is a JSON object
        # with only the key and time columns declared, it still checks every line's syntax
        wanted: dict[str, Any] = {c: pl.String for c in (spec.key, spec.time) if c} or {"__streamml_none__": pl.Null}
        try:
            df = pl.read_ndjson(io.BytesIO(chunk), schema=wanted)
        except (pl.exceptions.PolarsError, pa.ArrowException):
            return None
        if df.height != len(records):
            return None
        table = df.to_arrow()
        return _finish(table, records, records, positions, np.ones(len(records), dtype=bool), {}, spec,
                       reencode=False)
    opts = pajson.ParseOptions(newlines_in_values=False, unexpected_field_behavior="infer",
                               explicit_schema=spec.schema.arrow_schema())
    try:
        table = pajson.read_json(io.BytesIO(chunk), parse_options=opts)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != len(records):
        return None
    ok, reasons = spec.schema.validate_table(table, records)
    return _finish(table, records, records, positions, ok, reasons, spec, reencode=False)


def _jsonl_slow(lines: list[bytes], first_line: int, spec: RecordSpec) -> Decoded:
    values: list[bytes] = []
    positions: list[int] = []
    reasons: dict[int, str] = {}
    rows: list[dict[str, Any] | None] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        idx = len(values)
        values.append(line)
        positions.append(first_line + i)
        rec: Any = None
        try:
            line.decode("utf-8")
            rec = orjson.loads(line)
            if not isinstance(rec, dict):
                reasons[idx] = f"expected a JSON object, got {_json_kind(rec)}"
                rec = None
        except UnicodeDecodeError as exc:
            reasons[idx] = f"invalid UTF-8 at byte {exc.start}"
        except orjson.JSONDecodeError as exc:
            reasons[idx] = f"malformed JSON: {exc}"
        if rec is not None and spec.schema is not None:
            errs = spec.schema.errors(rec)
            if errs:
                reasons[idx] = "; ".join(errs)
                rec = None
        rows.append(rec)
    return _finish_rows(rows, values, list(values), positions, reasons, spec, reencode=spec.codec is not None)


def _json_kind(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null")


# -- CSV ----------------------------------------------------------------------------------
def decode_csv(chunk: bytes, first_line: int, columns: list[str], spec: RecordSpec,
               delimiter: str = ",") -> Decoded:
    """Decode CSV lines (no header) with the given column names."""
    if b"\r" in chunk:
        chunk = chunk.replace(b"\r\n", b"\n")
    lines = chunk.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    tokens = _csv_fast(chunk, lines, first_line, columns, delimiter)
    if tokens is None:
        tokens = _csv_slow(lines, first_line, columns, delimiter)
    table, originals, positions, reasons = tokens
    ok = np.array([i not in reasons for i in range(table.num_rows)], dtype=bool)
    table, conv_reasons = _convert_strings(table, spec.schema, ok)
    for i, r in conv_reasons.items():
        reasons.setdefault(i, r)
        ok[i] = False
    if spec.schema is not None:
        ok2, reasons2 = spec.schema.validate_table(table)
        for j in np.flatnonzero(~ok2 & ok):
            reasons[int(j)] = reasons2[int(j)]
            ok[int(j)] = False
    return _finish(table, None, originals, positions, ok, reasons, spec, reencode=True)


def _csv_fast(chunk: bytes, lines: list[bytes], first_line: int, columns: list[str],
              delimiter: str) -> tuple[pa.Table, list[bytes], list[int], dict[int, str]] | None:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return None
    invalid: list[int] = []

    def handler(row: Any) -> str:
        invalid.append(1)
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(chunk),
            read_options=pacsv.ReadOptions(column_names=columns),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=handler),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                                 strings_can_be_null=True, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    records = [line for line in lines if line.strip()]
    if invalid or table.num_rows != len(records):
        return None
    positions = [first_line + i for i, line in enumerate(lines) if line.strip()]
    return table, records, positions, {}


def _csv_slow(lines: list[bytes], first_line: int, columns: list[str],
              delimiter: str) -> tuple[pa.Table, list[bytes], list[int], dict[int, str]]:
    rows: list[list[str | None]] = []
    originals: list[bytes] = []
    positions: list[int] = []
    reasons: dict[int, str] = {}
    n = len(columns)
    i = 0
    while i < len(lines):
        line = lines[i]
        start = i
        i += 1
        if not line.strip():
            continue
        idx = len(rows)
        try:
            text = line.decode("utf-8")
            while text.count('"') % 2 and i < len(lines):      # a quoted value spans lines
                text += "\n" + lines[i].decode("utf-8")
                i += 1
        except UnicodeDecodeError as exc:
            rows.append([None] * n)
            originals.append(line)
            positions.append(first_line + start)
            reasons[idx] = f"invalid UTF-8 at byte {exc.start}"
            continue
        originals.append(b"\n".join(lines[start:i]))
        positions.append(first_line + start)
        try:
            parsed = next(csv.reader([text], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            rows.append([None] * n)
            reasons[idx] = f"malformed CSV line: {exc}"
            continue
        if len(parsed) != n:
            rows.append([None] * n)
            reasons[idx] = f"malformed CSV line: expected {n} fields, got {len(parsed)}"
            continue
        rows.append([v if v != "" else None for v in parsed])
    table = pa.table({c: pa.array([r[j] for r in rows], type=pa.string()) for j, c in enumerate(columns)})
    return table, originals, positions, reasons


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False,
              "t": True, "f": False}


def _convert_strings(table: pa.Table, schema: Schema | None,
                     ok: np.ndarray) -> tuple[pa.Table, dict[int, str]]:
    """Convert CSV text columns to the schema's types (or inferred ones); unparsable cells are reasons."""
    reasons: dict[int, str] = {}
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    out: dict[str, pl.Series] = {}
    fields = {f.name: f for f in schema.fields} if schema else {}
    for name in df.columns:
        s = df[name]
        f = fields.get(name)
        if f is None:
            out[name] = _infer(s) if schema is None else s
            continue
        if f.type == "string":
            out[name] = s
            continue
        if f.type == "int":
            conv = s.str.strip_chars().cast(pl.Int64, strict=False)
        elif f.type == "float":
            conv = s.str.strip_chars().cast(pl.Float64, strict=False)
        elif f.type == "bool":
            conv = s.str.strip_chars().str.to_lowercase().replace_strict(_BOOL_TEXT, default=None,
                                                                        return_dtype=pl.Boolean)
        else:
            vals = []
            for v in s.to_list():
                try:
                    vals.append(None if v is None else parse_timestamp_ms(int(v) if v.strip().lstrip("-").isdigit()
                                                                          else v))
                except (ValueError, OverflowError):
                    vals.append(None)
            conv = pl.Series(name, vals, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC"))
        failed = (conv.is_null() & s.is_not_null()).to_numpy()
        for i in np.flatnonzero(failed & ok):
            reasons[int(i)] = f"field {name!r}: {s[int(i)]!r} is not a valid {f.type}"
        out[name] = conv
    return pl.DataFrame(out).to_arrow(), reasons


def _infer(s: pl.Series) -> pl.Series:
    non_null = int(s.is_not_null().sum())
    if non_null == 0:
        return s
    for dtype in (pl.Int64, pl.Float64):
        conv = s.str.strip_chars().cast(dtype, strict=False)
        if int(conv.is_not_null().sum()) == non_null:
            return conv
    return s


# -- Arrow tables (Parquet) ---------------------------------------------------------------
def decode_table(table: pa.Table, first_row: int, spec: RecordSpec) -> Decoded:
    """Decode a table read from Parquet; positions are 0-based row numbers."""
    ok, reasons = (spec.schema.validate_table(table) if spec.schema
                   else (np.ones(table.num_rows, dtype=bool), {}))
    positions = list(range(first_row, first_row + table.num_rows))
    return _finish(table, None, None, positions, ok, reasons, spec, reencode=True)


# -- shared -------------------------------------------------------------------------------
def _ndjson(table: pa.Table) -> list[bytes]:
    """Each row of ``table`` as compact JSON (timestamps as ms since the epoch), in one pass."""
    if table.num_rows == 0:
        return []
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    casts = [pl.col(c).dt.epoch("ms") for c, t in df.schema.items() if isinstance(t, pl.Datetime)]
    if casts:
        df = df.with_columns(casts)
    data = df.write_ndjson().encode()
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return lines


def _finish(table: pa.Table, values: list[bytes] | None, originals: list[bytes] | None, positions: Sequence[int],
            ok: np.ndarray, reasons: dict[int, str], spec: RecordSpec, reencode: bool) -> Decoded:
    if values is None or reencode:
        if spec.codec is not None and spec.codec.format != "json":
            values = [_encode(spec.codec, r) if good else b"" for r, good in zip(table.to_pylist(), ok)]
        else:
            values = _ndjson(table)
    elif spec.codec is not None and spec.codec.format != "json":
        values = [_encode(spec.codec, r) if good else b"" for r, good in zip(table.to_pylist(), ok)]
    if originals is None:
        originals = values if spec.codec is None or spec.codec.format == "json" else _ndjson(table)
    keys = times = None
    if spec.key:
        keys = _keys(table, spec.key, ok, reasons)
    if spec.time:
        times = _times(table, spec.time, ok, reasons)
    return Decoded(values, originals, positions, ok, reasons, keys, times)


def _finish_rows(rows: list[dict[str, Any] | None], values: list[bytes], originals: list[bytes],
                 positions: list[int], reasons: dict[int, str], spec: RecordSpec, reencode: bool) -> Decoded:
    """Finish records decoded one by one (the slow path): keys, event times, encoding."""
    ok = np.array([r is not None for r in rows], dtype=bool)
    keys: list[bytes | None] | None = [None] * len(rows) if spec.key else None
    times: list[int | None] | None = [None] * len(rows) if spec.time else None
    for i, rec in enumerate(rows):
        if rec is None:
            continue
        if spec.key and keys is not None:
            k = rec.get(spec.key)
            keys[i] = None if k is None else (k if isinstance(k, str) else orjson.dumps(k).decode()).encode()
        if spec.time and times is not None:
            try:
                times[i] = parse_timestamp_ms(rec[spec.time])
            except (KeyError, ValueError, TypeError, OverflowError):
                reasons[i], ok[i] = f"event-time column {spec.time!r} is missing or not a timestamp", False
                continue
        if reencode and spec.codec is not None:
            try:
                values[i] = spec.codec.encode(rec)
            except SchemaError as exc:
                reasons[i], ok[i] = str(exc), False
    return Decoded(values, originals, positions, ok, reasons, keys, times)


def _encode(codec: Codec, record: dict[str, Any]) -> bytes:
    try:
        return codec.encode(record)
    except SchemaError:
        return b""


def _keys(table: pa.Table, column: str, ok: np.ndarray, reasons: dict[int, str]) -> list[bytes | None]:
    if column not in table.column_names:
        return [None] * table.num_rows                     # no key: the producer spreads the records
    col = table.column(column)
    if not pa.types.is_string(col.type):
        col = pc.cast(col, pa.string())
    keys: list[bytes | None] = col.cast(pa.binary()).to_pylist()
    return keys


def _times(table: pa.Table, column: str, ok: np.ndarray, reasons: dict[int, str]) -> list[int | None]:
    n = table.num_rows
    if column not in table.column_names:
        for i in np.flatnonzero(ok):
            reasons[int(i)] = f"missing event-time column {column!r}"
        ok[:] = False
        return [None] * n
    col = table.column(column)
    out: list[int | None]
    if pa.types.is_timestamp(col.type):
        out = pc.cast(pc.cast(col, pa.timestamp("ms", tz=col.type.tz)), pa.int64()).to_pylist()
    elif pa.types.is_integer(col.type):
        out = col.to_pylist()
    else:
        out = []
        for v in col.to_pylist():
            try:
                if isinstance(v, str) and v.isdigit():
                    v = int(v)
                out.append(None if v is None else parse_timestamp_ms(v))
            except (ValueError, TypeError, OverflowError):
                out.append(None)
    for i in np.flatnonzero(ok):
        if out[int(i)] is None:
            reasons[int(i)] = f"event-time column {column!r} is missing or not a timestamp"
            ok[int(i)] = False
    return out
