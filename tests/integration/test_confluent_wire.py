"""The Confluent Schema Registry wire format against a real registry (Apicurio Registry's
Confluent-compatible API) and a real broker: what streamml writes, confluent-kafka's own
deserializers read, and the reverse, for Avro, JSON Schema and Protobuf."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamml.config import Settings
from streamml.kafka.clients import consumer, producer
from streamml.kafka.produce import send_all
from streamml.schema.confluent import (
    ConfluentAvroCodec,
    ConfluentJsonCodec,
    ConfluentProtobufCodec,
    protobuf_message_class,
    schema_id,
)
from streamml.schema.core import Field, Schema

SCHEMA = Schema("payment", [Field("card_id", str), Field("amount", float), Field("count", int),
                            Field("ok", bool), Field("at", "timestamp"), Field("note", str, required=False)])
RECORDS = [{"card_id": f"c{i}", "amount": i * 1.25, "count": i, "ok": i % 2 == 0,
            "at": 1704067200000 + i, "note": None if i % 2 else f"n{i}"} for i in range(5)]

# an Avro schema written by hand, as a Confluent (Java or Python) producer would declare it
FOREIGN_AVRO = json.dumps({"type": "record", "name": "payment", "namespace": "com.example", "fields": [
    {"name": "card_id", "type": "string"}, {"name": "amount", "type": "double"},
    {"name": "count", "type": "long"}, {"name": "ok", "type": "boolean"},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "note", "type": ["null", "string"], "default": None},
    {"name": "extra", "type": ["null", "string"], "default": None}]})  # a field streamml's schema lacks


def _read(settings: Settings, topic: str, n: int, timeout: float = 60.0) -> list[bytes]:
    c = consumer(settings, f"g-{topic}")
    c.subscribe([topic])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append(msg.value())
    finally:
        c.close()
    assert len(out) == n, f"read {len(out)} of {n} records from {topic}"
    return out


def _produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    p = producer(settings)
    send_all(p, topic, [(None, v, None) for v in values])
    assert p.flush(30) == 0


def test_avro_written_by_streamml_is_read_by_confluent_deserializer(
        settings: Settings, schema_registry: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic("sr-avro-out")
    codec = ConfluentAvroCodec(schema_registry, SCHEMA, topic)
    _produce(settings, topic, [codec.encode(r) for r in RECORDS])

    client = SchemaRegistryClient({"url": schema_registry})  # a client of its own: nothing shared with streamml
    latest = client.get_latest_version(f"{topic}-value")
    assert latest.schema.schema_type == "AVRO"
    de = AvroDeserializer(client)  # no reader schema: the writer's, from the registry by the id in the value
    ctx = SerializationContext(topic, MessageField.VALUE)
    values = _read(settings, topic, len(RECORDS))
    assert {schema_id(v) for v in values} == {latest.schema_id}
    got = [de(v, ctx) for v in values]
    assert [{**g, "at": int(g["at"].timestamp() * 1000)} for g in got] == RECORDS


def test_avro_written_by_confluent_serializer_is_read_by_streamml(
        settings: Settings, schema_registry: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic("sr-avro-in")
    client = SchemaRegistryClient({"url": schema_registry})
    ser = AvroSerializer(client, FOREIGN_AVRO)
    ctx = SerializationContext(topic, MessageField.VALUE)
    sent = [{**r, "extra": "x"} for r in RECORDS]
    p = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for r in sent:
        p.produce(topic, value=ser(r, ctx))
    assert p.flush(30) == 0

    codec = ConfluentAvroCodec(schema_registry, SCHEMA, topic, auto_register=False)
    got = [codec.decode(v) for v in _read(settings, topic, len(sent))]
    assert got == RECORDS  # the writer's extra field is resolved away by streamml's reader schema


def test_json_schema_both_ways(schema_registry: str, unique: Callable[[str], str]) -> None:
    topic = unique("sr-json")
    ours = ConfluentJsonCodec(schema_registry, SCHEMA, topic)
    record = {"card_id": "c1", "amount": 2.5, "count": 2, "ok": True, "at": "2024-01-01T00:00:00Z", "note": None}
    data = ours.encode(record)
    client = SchemaRegistryClient({"url": schema_registry})
    assert client.get_latest_version(f"{topic}-value").schema.schema_type == "JSON"
    ctx = SerializationContext(topic, MessageField.VALUE)
    assert JSONDeserializer(None, schema_registry_client=client)(data, ctx) == record  # the writer's schema

    theirs = JSONSerializer(ours.schema_str, client)
    back = ours.decode(theirs({**record, "note": "hi"}, ctx))
    assert back == {**record, "note": "hi"}


def test_protobuf_both_ways(schema_registry: str, unique: Callable[[str], str]) -> None:
    topic = unique("sr-proto")
    ours = ConfluentProtobufCodec(schema_registry, SCHEMA, topic)
    record: dict[str, Any] = {**RECORDS[1]}
    data = ours.encode(record)
    client = SchemaRegistryClient({"url": schema_registry})
    latest = client.get_latest_version(f"{topic}-value")
    assert latest.schema.schema_type == "PROTOBUF" and schema_id(data) == latest.schema_id
    ctx = SerializationContext(topic, MessageField.VALUE)
    cls = protobuf_message_class(SCHEMA)
    msg = ProtobufDeserializer(cls, {"use.deprecated.format": False})(data, ctx)
    assert (msg.card_id, msg.amount, msg.count, msg.ok, msg.at) == ("c1", 1.25, 1, False, 1704067200001)
    assert not msg.HasField("note")

    theirs = ProtobufSerializer(cls, client, {"use.deprecated.format": False})
    assert ours.decode(theirs(cls(card_id="c9", amount=9.0, count=9, ok=True, at=5, note="n"), ctx)) == {
        "card_id": "c9", "amount": 9.0, "count": 9, "ok": True, "at": 5, "note": "n"}
