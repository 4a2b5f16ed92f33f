"""Schemas: declaration, validation (per record and per table), file formats, evolution, registry, codecs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from streamml.errors import SchemaError, ValidationError
from streamml.schema import (
    Field,
    Schema,
    SchemaRegistry,
    check_compatible,
    codec_for,
    decode_batch,
    ensure_compatible,
    from_avro,
    from_json_schema,
    load_schema,
    save_schema,
    to_avro,
    to_json_schema,
)

PAY = Schema("payments", [
    Field("card_id", str),
    Field("amount", float, min=0, max=10_000),
    Field("currency", str, enum=["EUR", "USD"]),
    Field("count", int, required=False, min=1),
    Field("ok", bool, required=False),
    Field("ts", "timestamp", required=False),
])


@pytest.mark.parametrize("record, reasons", [
    ({"card_id": "c", "amount": 1, "currency": "EUR"}, []),
    ({"card_id": "c", "amount": 2.5, "currency": "USD", "count": 3, "ok": True, "ts": "2024-01-01T00:00:00Z"}, []),
    ({"card_id": "c", "amount": 1.0, "currency": "EUR", "extra": [1, 2]}, []),
    ({"amount": 1.0, "currency": "EUR"}, ["missing required field 'card_id'"]),
    ({"card_id": None, "amount": 1.0, "currency": "EUR"}, ["field 'card_id' is null but required"]),
    ({"card_id": "c", "amount": "1", "currency": "EUR"}, ["field 'amount': expected float, got str"]),
    ({"card_id": "c", "amount": True, "currency": "EUR"}, ["field 'amount': expected float, got bool"]),
    ({"card_id": "c", "amount": 1.0, "currency": "EUR", "count": 1.5}, ["field 'count': expected int, got float"]),
    ({"card_id": "c", "amount": 1.0, "currency": "EUR", "count": 0}, ["field 'count': 0 is below the minimum 1"]),
    ({"card_id": "c", "amount": 1e6, "currency": "EUR"}, ["field 'amount': 1000000.0 is above the maximum 10000"]),
    ({"card_id": "c", "amount": 1.0, "currency": "GBP"}, ["field 'currency': 'GBP' is not one of EUR, USD"]),
    ({"card_id": "c", "amount": 1.0, "currency": "EUR", "ts": "yesterday"},
     ["field 'ts': expected timestamp, got str"]),
    ([1, 2], ["expected a JSON object, got list"]),
])
def test_record_validation_reasons(record: object, reasons: list[str]) -> None:
    assert PAY.errors(record) == reasons


def test_validate_raises_with_field() -> None:
    with pytest.raises(ValidationError) as info:
        PAY.validate({"card_id": "c", "amount": -1.0, "currency": "EUR"})
    assert info.value.field == "amount"
    assert PAY.validate({"card_id": "c", "amount": 0, "currency": "EUR"})["amount"] == 0


def test_additional_fields_can_be_forbidden() -> None:
    strict = Schema("s", [Field("x", int)], additional=False)
    assert strict.errors({"x": 1, "y": 2}) == ["unexpected field(s) 'y'"]


def test_bad_declarations_are_refused() -> None:
    with pytest.raises(SchemaError, match="unknown field type"):
        Field("x", "complex")
    with pytest.raises(SchemaError, match="duplicate"):
        Schema("s", [Field("x", int), Field("x", str)])
    with pytest.raises(SchemaError, match="min/max"):
        Field("x", str, min=1)


def test_validate_table_agrees_with_per_record_rules() -> None:
    rows = [
        {"card_id": "a", "amount": 1.0, "currency": "EUR", "count": 2},
        {"card_id": None, "amount": 1.0, "currency": "EUR", "count": None},
        {"card_id": "b", "amount": -3.0, "currency": "EUR", "count": None},
        {"card_id": "c", "amount": 5.0, "currency": "JPY", "count": None},
        {"card_id": "d", "amount": 20000.0, "currency": "USD", "count": 0},
        {"card_id": "e", "amount": None, "currency": "USD", "count": 9},
    ]
    table = pa.Table.from_pylist(rows, schema=pa.schema([("card_id", pa.string()), ("amount", pa.float64()),
                                                         ("currency", pa.string()), ("count", pa.int64())]))
    ok, reasons = PAY.validate_table(table)
    expected_ok = [not PAY.errors({k: v for k, v in r.items() if v is not None}) for r in rows]
    assert ok.tolist() == expected_ok == [True, False, False, False, False, False]
    assert reasons[2] == "field 'amount': -3.0 is below the minimum 0"
    assert reasons[3] == "field 'currency': 'JPY' is not one of EUR, USD"
    assert reasons[1] == "missing required field 'card_id'"


def test_validate_table_wrong_column_type_and_missing_column() -> None:
    table = pa.table({"card_id": ["a", "b"], "amount": ["1", None]})
    ok, reasons = PAY.validate_table(table)
    assert not ok.any()
    assert reasons[0] == "field 'amount': expected float, got string; missing required field 'currency'"
    assert reasons[1] == "missing required field 'amount'; missing required field 'currency'"


def test_arrow_schema_and_to_arrow_types() -> None:
    t = PAY.to_arrow([{"card_id": "a", "amount": 1, "currency": "EUR", "ts": "2024-01-01T00:00:01Z"}])
    assert t.schema.field("amount").type == pa.float64()
    assert t.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert t.column("ts").cast(pa.int64()).to_pylist() == [1704067201000]


def test_json_schema_round_trip_and_loading(tmp_path: Path) -> None:
    doc = to_json_schema(PAY)
    back = from_json_schema(doc)
    assert back == PAY
    path = save_schema(PAY, tmp_path / "pay.json")
    assert load_schema(path) == PAY
    assert json.loads(path.read_text())["required"] == ["card_id", "amount", "currency"]


def test_avro_round_trip_and_loading(tmp_path: Path) -> None:
    assert from_avro(to_avro(PAY)) == PAY
    path = save_schema(PAY, tmp_path / "pay.avsc")
    assert load_schema(path) == PAY
    avsc = {"type": "record", "name": "r", "fields": [
        {"name": "a", "type": "int"}, {"name": "b", "type": ["null", "string"], "default": None},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    s = from_avro(avsc)
    assert [(f.name, f.type, f.required) for f in s.fields] == [("a", "int", True), ("b", "string", False),
                                                                 ("t", "timestamp", True)]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('["a"]', "must hold a JSON object"),
    ('{"type": "record", "name": "r", "fields": [{"name": "m", "type": {"type": "map", "values": "int"}}]}',
     "type 'map' is not supported"),
    ('{"type": "array", "properties": {"x": {"type": "array"}}}', "must have type 'object' and 'properties'"),
    ('{"hello": 1}', "neither an Avro record schema nor a JSON Schema"),
])
def test_bad_schema_files_give_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(SchemaError, match=message):
        load_schema(path)
    with pytest.raises(SchemaError, match="does not exist"):
        load_schema(tmp_path / "missing.avsc")


def test_evolution_rules() -> None:
    v1 = Schema("p", [Field("x", int), Field("c", str, enum=["a", "b"]), Field("o", str, required=False)])
    ok = Schema("p", [Field("x", float), Field("c", str, enum=["a", "b", "z"]), Field("n", int, required=False)])
    assert check_compatible(v1, ok) == []
    bad = Schema("p", [Field("x", str), Field("c", str, enum=["a"]), Field("o", str), Field("r", int)])
    problems = check_compatible(v1, bad)
    assert problems == ["field 'x' changes type from int to string", "field 'c' drops enum value(s) b",
                        "field 'o' becomes required", "added field 'r' is required (old records do not have it)"]
    with pytest.raises(SchemaError, match="not compatible") as info:
        ensure_compatible(v1, Schema("p", [Field("c", str)]))
    assert "required field 'x' is removed" in str(info.value)


def test_registry_versions_and_refusal(tmp_path: Path) -> None:
    reg = SchemaRegistry(tmp_path)
    v1 = reg.register("pay", Schema("pay", [Field("x", float)]))
    assert v1.version == 1 and reg.register("pay", Schema("pay", [Field("x", float)])).version == 1
    v2 = reg.register("pay", Schema("pay", [Field("x", float), Field("y", str, required=False)]))
    assert v2.version == 2
    with pytest.raises(SchemaError, match="field 'y' becomes required"):
        reg.register("pay", Schema("pay", [Field("x", float), Field("y", str)]))
    assert [s.version for s in SchemaRegistry(tmp_path).versions("pay")] == [1, 2]
    assert reg.get("pay", 1).names == ["x"]
    with pytest.raises(SchemaError, match="no schema version 7"):
        reg.get("pay", 7)


def test_avro_codec_round_trip_is_compact() -> None:
    codec = codec_for("avro", PAY)
    rec = {"card_id": "c1", "amount": 12.5, "currency": "USD", "count": 3, "ok": None, "ts": "2024-01-01T00:00:00Z"}
    data = codec.encode(rec)
    assert len(data) < len(codec_for("json").encode(rec))
    assert codec.decode(data) == {**rec, "ts": 1704067200000}
    with pytest.raises(SchemaError):
        codec.encode({"card_id": "c1", "amount": 1.0, "currency": "GBP"})


def test_decode_batch_fast_and_slow_paths_agree() -> None:
    s = Schema("p", [Field("x", float), Field("t", "timestamp", required=False)])
    fast = decode_batch([b'{"x": 1}', b'{"x": 2.5}'], s)
    slow = decode_batch([b'{"x": 1}', b'{"x": 2.5, "t": 1704067200000}'], s)   # epoch ints take the slow path
    assert fast.schema == slow.schema == s.arrow_schema()
    assert fast.column("x").to_pylist() == slow.column("x").to_pylist() == [1.0, 2.5]
    with pytest.raises(SchemaError, match="record 1"):
        decode_batch([b'{"x": 1}', b'{"x": "no"}'], s)
    avro = codec_for("avro", s)
    t = decode_batch([avro.encode({"x": 3.0})], s, "avro")
    assert t.to_pylist() == [{"x": 3.0, "t": None}]
