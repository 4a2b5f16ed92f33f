"""A JSON Schema file validated in full on ingest: valid records land, each invalid one is dead-lettered with
jsonschema's reason (path and keyword), nothing lost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import drain

from streamml import headers as H
from streamml.config import Settings
from streamml.ingest import ingest_files
from streamml.schema import load_schema

DOC: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "title": "pay", "type": "object",
    "required": ["id", "amount", "card"], "additionalProperties": False,
    "$defs": {"currency": {"enum": ["EUR", "USD"]}},
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "amount": {"type": "number", "minimum": 0},
        "name": {"type": "string", "minLength": 2, "maxLength": 20},
        "card": {"type": "object", "required": ["number", "cur"],
                 "properties": {"number": {"type": "string", "pattern": "^[0-9]{16}$"},
                                "cur": {"$ref": "#/$defs/currency"}}},
        "email": {"type": "string", "format": "email"},
        "ts": {"type": "integer"},
    },
}


def _row(i: int) -> dict[str, Any]:
    return {"id": i, "amount": i * 0.5, "name": f"n{i}", "ts": 1_700_000_000_000 + i,
            "card": {"number": f"{4000_0000_0000_0000 + i}", "cur": "EUR" if i % 2 else "USD"},
            **({"email": f"u{i}@example.com"} if i % 3 == 0 else {})}


INVALID: list[tuple[dict[str, Any], str]] = [
    ({**_row(0), "card": {"number": "x12", "cur": "EUR"}}, "$.card.number: 'x12' does not match '^[0-9]{16}$' "
                                                          "(pattern)"),
    ({**_row(0), "card": {"number": "4000000000000000"}}, "$.card: 'cur' is a required property"),
    ({**_row(0), "card": {"number": "4000000000000000", "cur": "GBP"}},
     "$.card.cur: 'GBP' is not one of ['EUR', 'USD'] (enum)"),
    ({**_row(0), "name": "x"}, "$.name: 'x' is too short (minLength)"),
    ({**_row(0), "email": "not-an-address"}, "$.email: 'not-an-address' is not a 'email' (format)"),
    ({**_row(0), "extra": None}, "$: Additional properties are not allowed ('extra' was unexpected)"),
    ({**_row(0), "name": None}, "$.name: None is not of type 'string'"),
    ({**_row(0), "amount": -1}, "$.amount: -1 is less than the minimum of 0"),
]


def test_json_schema_file_rejects_each_invalid_record_with_its_reason(settings: Settings, tmp_path: Path) -> None:
    schema_file = tmp_path / "pay.json"
    schema_file.write_text(json.dumps(DOC))
    schema = load_schema(schema_file)
    lines: list[bytes] = []
    good: dict[int, bytes] = {}
    bad: dict[int, str] = {}
    for i in range(4000):
        lines.append(json.dumps(_row(i)).encode())
        good[len(lines)] = lines[-1]
        if i % 450 == 7:
            record, reason = INVALID[(i // 450) % len(INVALID)]
            lines.append(json.dumps(record).encode())
            bad[len(lines)] = reason
    assert set(bad.values()) == {r for _, r in INVALID}
    path = tmp_path / "pay.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    report = ingest_files(settings, path, "jpay", schema=schema, key="id", time_column="ts", chunk_bytes=64 << 10)
    c = report.counts
    assert (c.records_in, c.accepted, c.dead_lettered) == (len(lines), len(good), len(bad))
    assert c.balanced

    raw = drain(settings, settings.topic("raw", "jpay"), expect=len(good))
    assert sorted(m["value"] for m in raw) == sorted(good.values())          # every valid one, exactly once
    dlq = drain(settings, settings.topic("dlq"), expect=len(bad))
    assert len(dlq) == len(bad)
    for m in dlq:
        h = m["headers"]
        file, line_no = h[H.SOURCE].rsplit(":", 1)
        assert file == str(path.resolve()) and h["sm.stream"] == "jpay"
        assert h[H.REASON] == bad[int(line_no)], (line_no, h[H.REASON])
        assert m["value"] == lines[int(line_no) - 1]
    assert len(raw) + len(dlq) == len(lines)                                  # nothing lost
