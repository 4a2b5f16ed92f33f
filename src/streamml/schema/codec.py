"""Wire formats: JSON (the default, readable by any client) and Avro (schemaless, compact).

The schema's name and version travel in the record headers ``sm.schema`` and
``sm.schema_version``, and the format in ``sm.format``; an Avro reader looks the writer's
schema up by name and version (see :mod:`streamml.schema.registry`).

>>> from streamml.schema.core import Field, Schema
>>> s = Schema("p", [Field("x", float), Field("tag", str, required=False)])
>>> c = codec_for("avro", s)
>>> c.decode(c.encode({"x": 1.5}))
{'x': 1.5, 'tag': None}
>>> codec_for("json").encode({"x": 1})
b'{"x":1}'
>>> decode_batch([b'{"x": 1}', b'{"x": 2.5, "tag": "a"}'], s).to_pylist()
[{'x': 1.0, 'tag': None}, {'x': 2.5, 'tag': 'a'}]
"""

from __future__ import annotations

import io
from typing import Any, Protocol

import orjson
import pyarrow as pa
import pyarrow.json as pajson

from streamml import headers as H
from streamml.errors import ConfigError, SchemaError
from streamml.schema.core import Schema, parse_timestamp_ms

__all__ = ["Codec", "JsonCodec", "AvroCodec", "codec_for", "schema_headers", "decode_batch", "FORMATS"]

FORMATS = ("json", "avro")
FORMAT_HEADER = "sm.format"


class Codec(Protocol):
    """Encode one record to bytes and back."""

    format: str

    def encode(self, record: dict[str, Any]) -> bytes: ...

    def decode(self, data: bytes) -> dict[str, Any]: ...


class JsonCodec:
    """UTF-8 JSON objects (``orjson``)."""

    format = "json"

    def encode(self, record: dict[str, Any]) -> bytes:
        return orjson.dumps(record)

    def decode(self, data: bytes) -> dict[str, Any]:
        out = orjson.loads(data)
        if not isinstance(out, dict):
            raise SchemaError(f"expected a JSON object, got {type(out).__name__}")
        return out


class AvroCodec:
    """Schemaless Avro (no container header): the schema is named in the record headers."""

    format = "avro"

    def __init__(self, schema: Schema) -> None:
        import fastavro

        from streamml.schema.loaders import to_avro

        untyped = sorted(set((schema.json_schema or {}).get("properties") or ()) - set(schema.names))
        if untyped:
            raise ConfigError(f"the avro wire format cannot carry JSON Schema properties {', '.join(untyped)} "
                              "(objects, arrays, unions or $ref have no Avro field here)",
                              hint="use --format json for this schema, or flatten those properties")
        self.schema = schema
        self._parsed = fastavro.parse_schema(to_avro(schema))
        self._ts = [f.name for f in schema.fields if f.type == "timestamp"]
        self._names = schema.names
        self._fastavro = fastavro

    def encode(self, record: dict[str, Any]) -> bytes:
        rec = {k: record.get(k) for k in self._names}
        for name in self._ts:
            if rec[name] is not None:
                rec[name] = parse_timestamp_ms(rec[name])
        buf = io.BytesIO()
        try:
            self._fastavro.schemaless_writer(buf, self._parsed, rec)
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"record does not fit Avro schema {self.schema.name!r}: {exc}") from None
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        rec = self._fastavro.schemaless_reader(io.BytesIO(data), self._parsed, None)
        if not isinstance(rec, dict):
            raise SchemaError(f"an Avro {self.schema.name!r} value is not a record")
        for name in self._ts:
            value = rec.get(name)
            if value is not None and not isinstance(value, int):
                rec[name] = parse_timestamp_ms(value)
        return rec


def codec_for(fmt: str, schema: Schema | None = None) -> Codec:
    """The codec for a wire format name; Avro needs a schema."""
    if fmt == "json":
        return JsonCodec()
    if fmt == "avro":
        if schema is None:
            raise ConfigError("the avro format needs a schema", hint="pass --schema FILE (.avsc or JSON Schema)")
        return AvroCodec(schema)
    raise ConfigError(f"unknown wire format {fmt!r}", hint="use one of " + ", ".join(FORMATS))


def schema_headers(schema: Schema | None, fmt: str = "json") -> list[tuple[str, bytes]]:
    """The headers naming a record's schema and format."""
    out = [(FORMAT_HEADER, fmt.encode())]
    if schema is not None:
        out += [(H.SCHEMA, schema.name.encode()), (H.SCHEMA_VERSION, str(schema.version).encode())]
    return out


def decode_batch(values: list[bytes], schema: Schema, fmt: str = "json") -> pa.Table:
    """Decode a whole batch of record values into one Arrow table with the schema's types.

    JSON batches are parsed in one pass by Arrow's JSON reader; when a batch does not fit
    that path (mixed number forms, ISO and epoch timestamps mixed), records are decoded
    one by one. Invalid records raise :class:`SchemaError`.
    """
    if fmt == "json":
        try:
            table = pajson.read_json(
                io.BytesIO(b"\n".join(values)),
                parse_options=pajson.ParseOptions(explicit_schema=schema.arrow_schema(),
                                                  unexpected_field_behavior="ignore"))
            if table.num_rows == len(values):
                return table.select(schema.names).cast(schema.arrow_schema())
        except pa.ArrowInvalid:
            pass
        codec: Codec = JsonCodec()
    else:
        codec = codec_for(fmt, schema)
    records = []
    for i, v in enumerate(values):
        try:
            records.append(schema.validate(codec.decode(v)))
        except (orjson.JSONDecodeError, SchemaError, ValueError, EOFError) as exc:
            raise SchemaError(f"record {i} of the batch cannot be decoded: {exc}") from None
    return schema.to_arrow(records)
