"""The Confluent Schema Registry wire format: magic byte 0, a 4-byte big-endian schema id, the payload.

Records are written and read through confluent-kafka's own serializers
(``AvroSerializer``/``AvroDeserializer``, ``JSONSerializer``/``JSONDeserializer``,
``ProtobufSerializer``/``ProtobufDeserializer``) against a Confluent-compatible registry, so
any Confluent client decodes what streamml writes and the reverse. The schema is a
streamml :class:`~streamml.schema.core.Schema`, turned into Avro, JSON Schema or a
Protobuf message as needed; its subject is the topic's (``<topic>-value`` or ``<topic>-key``,
Confluent's TopicNameStrategy).

Each codec here has the :class:`~streamml.schema.codec.Codec` shape (``format``,
``encode``, ``decode``), bound to one topic. A real registry for tests and local use is
:class:`streamml.schema.server.RegistryServer` (Apicurio Registry's Confluent-compatible API).

>>> schema_id(b"\\x00\\x00\\x00\\x00\\x07payload")
7
"""

from __future__ import annotations

import json
import struct
from typing import Any, Callable

from streamml.errors import ConfigError, SchemaError
from streamml.schema.core import Schema, parse_timestamp_ms

__all__ = ["CONFLUENT_FORMATS", "MAGIC_BYTE", "ConfluentAvroCodec", "ConfluentJsonCodec",
           "ConfluentProtobufCodec", "confluent_codec", "registry_client", "schema_id", "protobuf_message_class"]

MAGIC_BYTE = 0
CONFLUENT_FORMATS = ("confluent-avro", "confluent-json", "confluent-protobuf")


def schema_id(data: bytes) -> int:
    """The registry schema id that a Confluent-framed value names; SchemaError when it is not framed."""
    if len(data) < 5 or data[0] != MAGIC_BYTE:
        raise SchemaError("value is not in the Confluent wire format (no magic byte 0 and schema id)")
    return int(struct.unpack(">I", data[1:5])[0])


def registry_client(url_or_conf: str | dict[str, Any] | Any) -> Any:
    """A confluent-kafka ``SchemaRegistryClient`` for a URL, a config dict, or the client itself."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    if isinstance(url_or_conf, SchemaRegistryClient):
        return url_or_conf
    conf = {"url": url_or_conf} if isinstance(url_or_conf, str) else dict(url_or_conf)
    return SchemaRegistryClient(conf)


class _Framed:
    format = ""

    def __init__(self, registry: Any, schema: Schema, topic: str, *, key: bool = False) -> None:
        from confluent_kafka.serialization import MessageField, SerializationContext

        self.client = registry_client(registry)
        self.schema = schema
        self.topic = topic
        self._ctx = SerializationContext(topic, MessageField.KEY if key else MessageField.VALUE)
        self._ts = [f.name for f in schema.fields if f.type == "timestamp"]
        self._names = schema.names
        self._ser: Callable[..., bytes | None]
        self._de: Callable[..., Any]

    def _out(self, record: dict[str, Any]) -> dict[str, Any]:
        rec = {k: record.get(k) for k in self._names}
        for name in self._ts:
            if rec[name] is not None:
                rec[name] = parse_timestamp_ms(rec[name])
        return rec

    def _in(self, rec: Any) -> dict[str, Any]:
        if not isinstance(rec, dict):
            raise SchemaError(f"a {self.format} {self.schema.name!r} value is not a record")
        for name in self._ts:
            value = rec.get(name)
            if value is not None and not isinstance(value, int):
                rec[name] = parse_timestamp_ms(value)
        return rec

    def encode(self, record: dict[str, Any]) -> bytes:
        try:
            out = self._ser(record, self._ctx)
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"record does not fit {self.format} schema {self.schema.name!r}: {exc}") from None
        except Exception as exc:  # SerializationError and SchemaRegistryError carry the registry's reason
            raise SchemaError(f"{self.format} encoding for topic {self.topic!r} failed: {exc}") from None
        assert out is not None
        return out

    def decode(self, data: bytes) -> dict[str, Any]:
        schema_id(data)
        try:
            return self._in(self._de(data, self._ctx))
        except SchemaError:
            raise
        except Exception as exc:
            raise SchemaError(f"{self.format} decoding for topic {self.topic!r} failed: {exc}") from None


class ConfluentAvroCodec(_Framed):
    """Avro in the Confluent wire format; the schema is registered under the topic's subject.

    Decoding takes the writer's schema from the registry by the id in the value and resolves
    it to this codec's schema (Avro schema resolution), so a writer that added or dropped
    optional fields is still read.
    """

    format = "confluent-avro"

    def __init__(self, registry: Any, schema: Schema, topic: str, *, key: bool = False,
                 auto_register: bool = True) -> None:
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer

        from streamml.schema.loaders import to_avro

        super().__init__(registry, schema, topic, key=key)
        doc = to_avro(schema)
        doc.pop("x-version", None)
        self.schema_str = json.dumps(doc)
        self._ser = AvroSerializer(self.client, self.schema_str, lambda rec, ctx: self._out(rec),
                                   conf={"auto.register.schemas": auto_register})
        self._de = AvroDeserializer(self.client, self.schema_str)


class ConfluentJsonCodec(_Framed):
    """JSON in the Confluent wire format, validated against the schema's JSON Schema."""

    format = "confluent-json"

    def __init__(self, registry: Any, schema: Schema, topic: str, *, key: bool = False,
                 auto_register: bool = True) -> None:
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer

        from streamml.schema.loaders import to_json_schema

        super().__init__(registry, schema, topic, key=key)
        doc = to_json_schema(schema)
        for f in schema.fields:  # an optional field may be null (confluent-kafka writes None as null)
            prop = doc.get("properties", {}).get(f.name)
            if not f.required and isinstance(prop, dict) and isinstance(prop.get("type"), str):
                prop["type"] = [prop["type"], "null"]
        self.schema_str = json.dumps(doc)
        self._ser = JSONSerializer(self.schema_str, self.client, lambda rec, ctx: self._json_out(rec),
                                   conf={"auto.register.schemas": auto_register})
        self._de = JSONDeserializer(self.schema_str, schema_registry_client=self.client)

    def _json_out(self, record: dict[str, Any]) -> dict[str, Any]:
        # timestamps travel as ISO-8601 strings (JSON Schema's date-time), as in streamml's JSON format
        rec = {k: record[k] for k in self._names if k in record}
        for name in self._ts:
            value = rec.get(name)
            if value is not None and not isinstance(value, str):
                from datetime import datetime, timezone

                ms = parse_timestamp_ms(value)
                rec[name] = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")
        return rec

    def _in(self, rec: Any) -> dict[str, Any]:
        if not isinstance(rec, dict):
            raise SchemaError(f"a {self.format} {self.schema.name!r} value is not an object")
        return {**{k: None for k in self._names}, **rec}


_PB_TYPES = {"string": 9, "int": 3, "float": 1, "bool": 8, "timestamp": 3}  # FieldDescriptorProto.Type


def protobuf_message_class(schema: Schema, package: str = "streamml") -> Any:
    """A proto3 message class built at run time for ``schema`` (optional fields use proto3 ``optional``).

    Timestamps are int64 milliseconds since the epoch, enums are strings.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    name = "".join(ch if ch.isalnum() else "_" for ch in schema.name) or "Record"
    if name[0].isdigit():
        name = "R" + name
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}/{name}.proto", package=package, syntax="proto3")
    msg = fdp.message_type.add(name=name)
    for i, f in enumerate(schema.fields, 1):
        fd = msg.field.add(name=f.name, number=i, type=_PB_TYPES[f.type],
                           label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        if not f.required:
            fd.proto3_optional = True
            fd.oneof_index = len(msg.oneof_decl)
            msg.oneof_decl.add(name=f"_{f.name}")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))


class ConfluentProtobufCodec(_Framed):
    """Protobuf in the Confluent wire format (schema id, then the message-index list, then the message)."""

    format = "confluent-protobuf"

    def __init__(self, registry: Any, schema: Schema, topic: str, *, key: bool = False,
                 auto_register: bool = True) -> None:
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer

        super().__init__(registry, schema, topic, key=key)
        self.message_class = protobuf_message_class(schema)
        conf = {"auto.register.schemas": auto_register, "use.deprecated.format": False}
        ser = ProtobufSerializer(self.message_class, self.client, conf=conf)
        de = ProtobufDeserializer(self.message_class, {"use.deprecated.format": False})
        self._ser = lambda rec, ctx: ser(self._message(rec), ctx)
        self._de = lambda data, ctx: self._fields(de(data, ctx))

    def _message(self, record: dict[str, Any]) -> Any:
        rec = {k: v for k, v in self._out(record).items() if v is not None}
        return self.message_class(**rec)

    def _fields(self, msg: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in self.schema.fields:
            out[f.name] = getattr(msg, f.name) if f.required or msg.HasField(f.name) else None
        return out


def confluent_codec(fmt: str, registry: Any, schema: Schema, topic: str, **kw: Any) -> _Framed:
    """The Confluent-framed codec for ``confluent-avro``, ``confluent-json`` or ``confluent-protobuf``."""
    classes: dict[str, type[_Framed]] = {"confluent-avro": ConfluentAvroCodec, "confluent-json": ConfluentJsonCodec,
                                         "confluent-protobuf": ConfluentProtobufCodec}
    if fmt not in classes:
        raise ConfigError(f"unknown Confluent wire format {fmt!r}", hint="use one of " + ", ".join(CONFLUENT_FORMATS))
    return classes[fmt](registry, schema, topic, **kw)
