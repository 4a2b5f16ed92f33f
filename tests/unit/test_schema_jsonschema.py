"""JSON Schema files validated in full by jsonschema: keywords, $ref, formats, bad schemas, batch verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streamml.errors import ConfigError
from streamml.ingest import decode
from streamml.ingest.decode import RecordSpec, decode_csv, decode_jsonl
from streamml.schema import Schema, from_json_schema, load_schema

D2020 = "https://json-schema.org/draft/2020-12/schema"

PAY: dict[str, Any] = {
    "$schema": D2020, "title": "pay", "type": "object", "required": ["id", "amount", "card"],
    "additionalProperties": False,
    "$defs": {"currency": {"type": "string", "enum": ["EUR", "USD"]}},
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "amount": {"type": "number", "minimum": 0},
        "name": {"type": "string", "minLength": 2, "maxLength": 5},
        "card": {"type": "object", "required": ["number"], "additionalProperties": False,
                 "properties": {"number": {"type": "string", "pattern": "^[0-9]{16}$"},
                                "cur": {"$ref": "#/$defs/currency"}}},
        "contact": {"oneOf": [{"type": "string", "format": "email"}, {"type": "string", "format": "ipv4"}]},
        "tags": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        "day": {"type": "string", "format": "date"},
        "uid": {"type": "string", "format": "uuid"},
        "at": {"type": "string", "format": "date-time"},
    },
}
CARD = {"number": "1234567812345678", "cur": "EUR"}


def _ok(**kw: Any) -> dict[str, Any]:
    return {"id": 1, "amount": 2.5, "card": dict(CARD), **kw}


@pytest.fixture(scope="module")
def pay() -> Schema:
    return from_json_schema(PAY)


def test_valid_records_have_no_errors(pay: Schema) -> None:
    assert pay.errors(_ok()) == []
    assert pay.errors(_ok(name="ab", contact="a@b.io", tags=["x", 1], day="2024-02-29",
                          uid="12345678-1234-5678-1234-567812345678", at="2024-01-01T00:00:00Z")) == []
    assert pay.errors(_ok(contact="10.0.0.1")) == []


@pytest.mark.parametrize("record, reason", [
    (_ok(card={"number": "x12"}), "$.card.number: 'x12' does not match '^[0-9]{16}$' (pattern)"),
    (_ok(name="a"), "$.name: 'a' is too short (minLength)"),
    (_ok(name="abcdef"), "$.name: 'abcdef' is too long (maxLength)"),
    (_ok(card={"cur": "EUR"}), "$.card: 'number' is a required property"),
    (_ok(card={**CARD, "cur": "GBP"}), "$.card.cur: 'GBP' is not one of ['EUR', 'USD'] (enum)"),
    (_ok(card={**CARD, "cvv": "1"}), "$.card: Additional properties are not allowed ('cvv' was unexpected)"),
    (_ok(extra=1), "$: Additional properties are not allowed ('extra' was unexpected)"),
    (_ok(contact="nobody"), "$.contact: 'nobody' is not valid under any of the given schemas (oneOf)"),
    (_ok(tags=["x", 1.5]), "$.tags[1]: 1.5 is not valid under any of the given schemas (anyOf)"),
    (_ok(day="2024-02-30"), "$.day: '2024-02-30' is not a 'date' (format)"),
    (_ok(uid="not-a-uuid"), "$.uid: 'not-a-uuid' is not a 'uuid' (format)"),
    (_ok(at="2024-01-01"), "$.at: '2024-01-01' is not a 'date-time' (format)"),
    (_ok(at="2024-13-01T00:00:00Z"), "$.at: '2024-13-01T00:00:00Z' is not a 'date-time' (format)"),
    (_ok(id=-1), "$.id: -1 is less than the minimum of 0"),
    ({"id": 1, "amount": 1}, "$: 'card' is a required property"),
    (_ok(name=None), "$.name: None is not of type 'string'"),
])
def test_each_keyword_gives_its_one_line_reason(pay: Schema, record: dict[str, Any], reason: str) -> None:
    assert pay.errors(record) == [reason]
    assert not jsonschema.Draft202012Validator(PAY, format_checker=jsonschema.FormatChecker()).is_valid(
        record) or "format" in reason  # the library agrees (date-time needs an extra it may lack)


def test_several_problems_are_all_named_in_path_order(pay: Schema) -> None:
    errs = pay.errors({"id": "1", "amount": -1, "card": {"number": "1"}})
    assert errs == ["$.amount: -1 is less than the minimum of 0", "$.card.number: '1' does not match "
                    "'^[0-9]{16}$' (pattern)", "$.id: '1' is not of type 'integer'"]
    assert all("\n" not in e for e in errs)


def test_declared_dialect_is_used(tmp_path: Path) -> None:
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object",
              "properties": {"x": {"type": "number", "minimum": 0, "exclusiveMinimum": True}}}
    s = from_json_schema(draft4)
    assert s.errors({"x": 1}) == []
    assert s.errors({"x": 0}) == ["$.x: 0 is less than or equal to the minimum of 0"]
    path = tmp_path / "d4.json"
    path.write_text(json.dumps({**draft4, "$schema": D2020}))      # boolean exclusiveMinimum is not 2020-12
    with pytest.raises(ConfigError, match=r"at /properties/x/exclusiveMinimum: True is not of type 'number'"):
        load_schema(path)


def test_invalid_schema_file_is_one_config_error_with_file_pointer_and_hint(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "string", "minLength": -1}}}))
    with pytest.raises(ConfigError) as info:
        load_schema(path)
    msg = str(info.value)
    assert msg.startswith(f"schema file {path} is not a valid JSON Schema ({D2020}): at /properties/a/minLength: ")
    assert info.value.hint and "JSON pointer" in info.value.hint and "\n" not in msg
    path.write_text('{"type": "object", "properties": {"a": "integer"}}')
    with pytest.raises(ConfigError, match="at /properties/a: 'integer' is not of type 'object', 'boolean'"):
        load_schema(path)
    path.write_text('{"$schema": "https://example.com/my-dialect", "type": "object", "properties": {}}')
    with pytest.raises(ConfigError, match="unknown JSON Schema dialect"):
        load_schema(path)


def test_remote_and_dangling_refs_are_refused_without_fetching(tmp_path: Path) -> None:
    path = tmp_path / "remote.json"
    path.write_text(json.dumps({"type": "object", "properties": {
        "a": {"$ref": "https://example.com/schemas/a.json"}}}))
    with pytest.raises(ConfigError, match=r"\$ref 'https://example.com/schemas/a.json' at /properties/a/\$ref "
                                          r"points outside the file; remote references are refused") as info:
        load_schema(path)
    assert str(path) in str(info.value) and "$defs" in (info.value.hint or "")
    path.write_text(json.dumps({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}))
    with pytest.raises(ConfigError, match=r"\$ref '#/\$defs/missing' at /properties/a/\$ref does not resolve"):
        load_schema(path)


def test_refs_and_the_compiled_validator_are_shared(tmp_path: Path) -> None:
    path = tmp_path / "pay.json"
    path.write_text(json.dumps(PAY))
    a, b = load_schema(path), load_schema(path)
    assert a.json_check() is b.json_check() and a.json_check() is a.json_check()
    assert a.with_version(3).json_check() is a.json_check()
    assert [f.name for f in a.fields] == ["id", "amount", "name", "day", "uid", "at"]  # scalars typed, the rest untyped


# -- batches: the verdict is exactly jsonschema's ---------------------------------------
FLAT: dict[str, Any] = {"type": "object", "required": ["id", "cur"], "additionalProperties": False, "properties": {
    "id": {"type": "integer", "minimum": 0, "maximum": 10 ** 6},
    "amount": {"type": ["number", "null"], "maximum": 100},
    "cur": {"type": "string", "enum": ["EUR", "USD"]},
    "card": {"type": "string", "pattern": "^[0-9]{4}$", "minLength": 4},
    "ok": {"type": "boolean"}}}
TRICKY = [
    {"id": 1, "cur": "EUR"}, {"id": 2, "cur": "EUR", "amount": None}, {"id": 3, "cur": "EUR", "card": None},
    {"id": 4, "cur": "EUR", "card": "1234"}, {"id": 5, "cur": "EUR", "card": "12a4"}, {"id": 6, "cur": "GBP"},
    {"id": 7, "cur": "USD", "amount": 100.5}, {"id": 8, "cur": "USD", "amount": 100}, {"id": -1, "cur": "USD"},
    {"id": 9, "cur": "USD", "more": None}, {"id": 10, "cur": "USD", "more": 1},
    {"id": 12, "cur": "EUR", "ok": None}, {"id": 13, "cur": "EUR", "ok": True},
    {"id": 14, "cur": "EUR", "note": "null"}, {"id": 15, "cur": "EUR", "card": "123"},
    {"id": 16, "cur": "EUR", "amount": 9007199254740993}, {"id": 17, "cur": "EUR", "card": "١٢٣٤"},
]


@pytest.mark.parametrize("doc", [FLAT, {**FLAT, "additionalProperties": True}, PAY,
                                 {**FLAT, "properties": {**FLAT["properties"], "amount": {
                                     "type": "number", "maximum": 9007199254740992}}},
                                 {**FLAT, "required": ["id", "cur", "amount"]}],
                         ids=["flat", "flat-open", "nested", "big-max", "required-nullable"])
def test_batch_verdict_equals_jsonschema_on_fast_and_slow_paths(doc: dict[str, Any]) -> None:
    schema = from_json_schema(doc)
    spec = RecordSpec(schema=schema)
    judge = jsonschema.validators.validator_for(doc)(doc, format_checker=jsonschema.FormatChecker())
    nested = [_ok(), _ok(card={"number": "1"}), _ok(name="a"), _ok(id=20, contact="x"), _ok(day="2024-02-30"),
              _ok(card={"number": "1234567812345678", "cur": "GBP"}), _ok(tags=[1, 2.5]), _ok(name=None)]
    slow = [_ok(amount=None), {"id": 11}, {"id": None, "cur": "EUR"}]    # Arrow refuses absent/null required columns
    for batch in (TRICKY, nested, slow, TRICKY + nested + slow):
        lines = [json.dumps(r).encode() for r in batch]
        chunk = b"\n".join(lines) + b"\n"
        expected = [judge.is_valid(r) for r in batch]
        fast = decode._jsonl_fast(chunk, lines, 1, spec)
        if (batch is TRICKY and doc is not PAY) or (batch is nested and doc is PAY):
            assert fast is not None                    # Arrow reads this batch: the columnar path decides
        for out in filter(None, (fast, decode._jsonl_slow(lines, 1, spec), decode_jsonl(chunk, 1, spec))):
            assert out.ok.tolist() == expected
            for i, good in enumerate(expected):
                if not good:
                    assert out.reasons[i] == "; ".join(schema.errors(batch[i]))
                    assert out.reasons[i].startswith("$")


def test_fast_path_is_taken_and_cannot_hide_a_failure() -> None:
    schema = from_json_schema(FLAT)
    check = schema.json_check()
    assert check is not None and check.covered and not from_json_schema(PAY).json_check().covered
    lines = [json.dumps({"id": i, "cur": "EUR", "card": "1234"}).encode() for i in range(2000)]
    lines[1500] = b'{"id": 1500, "cur": "EUR", "card": "12345"}'    # only the pattern is broken
    out = decode_jsonl(b"\n".join(lines), 1, RecordSpec(schema=schema))
    assert int(out.ok.sum()) == 1999 and out.reasons == {1500: "$.card: '12345' does not match '^[0-9]{4}$' "
                                                                 "(pattern)"}


def test_csv_rows_are_judged_with_empty_cells_absent() -> None:
    schema = from_json_schema(FLAT)
    chunk = b"1,EUR,1234\n2,EUR,\n3,EUR,12x4\n4,GBP,1234\n"
    out = decode_csv(chunk, 1, ["id", "cur", "card"], RecordSpec(schema=schema))
    assert out.ok.tolist() == [True, True, False, False]
    assert out.reasons == {2: "$.card: '12x4' does not match '^[0-9]{4}$' (pattern)",
                           3: "$.cur: 'GBP' is not one of ['EUR', 'USD'] (enum)"}


def test_registered_schema_keeps_its_json_schema_and_avro_refuses_untyped_properties(tmp_path: Path) -> None:
    from streamml.schema import SchemaRegistry, codec_for

    reg = SchemaRegistry(tmp_path)
    schema = from_json_schema(PAY)
    for _ in range(2):                                  # new, then equal to the latest version
        got = reg.register("pay", schema)
        assert got.version == 1 and got.json_check() is schema.json_check()
        assert got.errors(_ok(card={"number": "x"})) == ["$.card.number: 'x' does not match '^[0-9]{16}$' (pattern)"]
    with pytest.raises(ConfigError, match="avro wire format cannot carry JSON Schema properties card, contact, tags"):
        codec_for("avro", schema)
    codec_for("avro", from_json_schema(FLAT))
