"""Schemas from and to JSON Schema and Avro (``.avsc``) files.

A JSON Schema is kept whole and records are validated against all of it by ``jsonschema``
(:mod:`streamml.schema.jsoncheck`: every keyword, ``$ref`` to ``$defs``, formats); its top-level
scalar properties (string, integer, number, boolean, date-time strings) also become typed
fields. In Avro, a record of primitive fields, unions with null for optional fields, enums and
``timestamp-millis``; anything else is refused with a clear :class:`SchemaError`.

>>> s = from_json_schema({"title": "p", "type": "object", "required": ["x"],
...                       "properties": {"x": {"type": "number", "minimum": 0}, "y": {"type": "string"}}})
>>> [(f.name, f.type, f.required, f.min) for f in s.fields]
[('x', 'float', True, 0), ('y', 'string', False, None)]
>>> from_avro(to_avro(s)) == s.with_version(1)
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from streamml.errors import SchemaError
from streamml.schema.core import Field, Schema

__all__ = ["from_json_schema", "to_json_schema", "from_avro", "to_avro", "load_schema", "save_schema"]

_JS_TYPES = {"string": "string", "integer": "int", "number": "float", "boolean": "bool"}
_AVRO_TYPES = {"string": "string", "int": "int", "long": "int", "float": "float", "double": "float",
               "boolean": "bool"}


def from_json_schema(doc: Mapping[str, Any], name: str | None = None, source: str | None = None) -> Schema:
    """A schema from a JSON Schema object description, validated in full by ``jsonschema``.

    The document is checked against its dialect's meta-schema first (:class:`ConfigError`
    naming ``source`` and the JSON pointer of the problem). Top-level scalar properties become
    typed fields (the columns of a decoded batch); other properties (objects, arrays, ``$ref``,
    unions, ...) pass through untyped. Every record is judged by ``jsonschema`` against the
    whole document.
    """
    from streamml.schema.jsoncheck import compile_json_schema

    compile_json_schema(doc, source)
    if doc.get("type") != "object" or not isinstance(doc.get("properties"), dict):
        raise SchemaError("a JSON Schema for records must have type 'object' and 'properties'")
    required = set(doc.get("required", []))
    fields = [f for fname, prop in doc["properties"].items()
              if (f := _js_field(fname, prop, fname in required)) is not None]
    unknown = required - set(doc["properties"])
    if unknown:
        raise SchemaError(f"JSON Schema requires undeclared properties: {', '.join(sorted(unknown))}")
    version = _version(doc.get("version", doc.get("x-version", 1)))
    return Schema(name or doc.get("title") or "record", fields, version=version,
                  additional=doc.get("additionalProperties", True) is not False,
                  doc=doc.get("description", ""), json_schema=dict(doc))


def _js_field(fname: str, prop: Any, required: bool) -> Field | None:
    """The typed field for a scalar property, or None for one that only ``jsonschema`` checks."""
    if not isinstance(prop, dict):
        return None
    jtype = prop.get("type")
    nullable = False
    if isinstance(jtype, list):
        nullable = "null" in jtype
        rest = [t for t in jtype if t != "null"]
        if len(rest) != 1:
            return None
        jtype = rest[0]
    if jtype == "string" and prop.get("format") == "date-time":
        ftype = "timestamp"
    elif jtype in _JS_TYPES:
        ftype = _JS_TYPES[jtype]
    elif jtype is None and isinstance(prop.get("enum"), list) and all(isinstance(v, str) for v in prop["enum"]):
        ftype = "string"
    else:
        return None
    numeric = ftype in ("int", "float")
    return Field(fname, ftype, required=required and not nullable, enum=prop.get("enum"),
                 min=prop.get("minimum") if numeric else None, max=prop.get("maximum") if numeric else None,
                 default=prop.get("default"), doc=prop.get("description", ""))


def to_json_schema(schema: Schema) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) describing the same records (the original one, if read from one)."""
    if schema.json_schema is not None:
        out = dict(schema.json_schema)
        out["title"] = schema.name
        out["version" if "version" in out else "x-version"] = schema.version
        return out
    back = {v: k for k, v in _JS_TYPES.items()}
    props: dict[str, Any] = {}
    for f in schema.fields:
        p: dict[str, Any] = ({"type": "string", "format": "date-time"} if f.type == "timestamp"
                             else {"type": back[f.type]})
        if f.enum is not None:
            p["enum"] = list(f.enum)
        if f.min is not None:
            p["minimum"] = f.min
        if f.max is not None:
            p["maximum"] = f.max
        if f.default is not None:
            p["default"] = f.default
        if f.doc:
            p["description"] = f.doc
        props[f.name] = p
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": schema.name,
            "x-version": schema.version, "type": "object", "properties": props,
            "required": [f.name for f in schema.fields if f.required],
            "additionalProperties": schema.additional}


def _version(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise SchemaError(f"schema version must be a whole number, got {value!r}")
    return int(value)


def _avro_field(f: Any) -> Field:
    if not isinstance(f, dict) or not isinstance(f.get("name"), str):
        raise SchemaError(f"Avro field {f!r} needs a \"name\" (a string)",
                          hint='write each field as {"name": "amount", "type": "double"}')
    if "type" not in f:
        raise SchemaError(f"Avro field {f['name']!r} has no \"type\"",
                          hint=f'write it as {{"name": "{f["name"]}", "type": "string"}}')
    ftype = f["type"]
    required = True
    if isinstance(ftype, list):
        rest = [t for t in ftype if t != "null"]
        required = "null" not in ftype
        if len(rest) != 1:
            raise SchemaError(f"Avro field {f['name']!r}: unions other than [null, T] are not supported")
        ftype = rest[0]
    enum = None
    if isinstance(ftype, dict):
        if ftype.get("type") == "enum":
            if not isinstance(ftype.get("symbols"), list):
                raise SchemaError(f"Avro field {f['name']!r}: an enum needs \"symbols\" (a list)")
            enum, kind = ftype["symbols"], "string"
        elif ftype.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
            kind = "timestamp"
        elif ftype.get("type") in _AVRO_TYPES:
            kind = _AVRO_TYPES[ftype["type"]]
        else:
            raise SchemaError(f"Avro field {f['name']!r}: type {ftype.get('type')!r} is not supported")
    elif ftype in _AVRO_TYPES:
        kind = _AVRO_TYPES[ftype]
    else:
        raise SchemaError(f"Avro field {f['name']!r}: type {ftype!r} is not supported",
                          hint="use primitive types, enums, timestamp-millis and [null, T] unions")
    return Field(f["name"], kind, required=required, enum=enum, default=f.get("default"),
                 doc=f.get("doc", ""), min=f.get("x-min"), max=f.get("x-max"))


def from_avro(doc: Mapping[str, Any]) -> Schema:
    """A schema from an Avro record schema (as parsed JSON)."""
    if doc.get("type") != "record" or not isinstance(doc.get("fields"), list):
        raise SchemaError("an Avro schema for records must have type 'record' and 'fields'")
    if not isinstance(doc.get("name"), str):
        raise SchemaError("an Avro record schema needs a \"name\" (a string)")
    return Schema(doc["name"], [_avro_field(f) for f in doc["fields"]], version=_version(doc.get("x-version", 1)),
                  doc=doc.get("doc", ""))


def to_avro(schema: Schema) -> dict[str, Any]:
    """The Avro record schema for the same records (ranges kept as ``x-min``/``x-max``)."""
    back = {"string": "string", "int": "long", "float": "double", "bool": "boolean",
            "timestamp": {"type": "long", "logicalType": "timestamp-millis"}}
    fields = []
    for f in schema.fields:
        t: Any = back[f.type]
        if f.enum is not None:
            t = {"type": "enum", "name": f"{f.name}_enum", "symbols": [str(s) for s in f.enum]}
        entry: dict[str, Any] = {"name": f.name, "type": t if f.required else ["null", t]}
        if not f.required:
            entry["default"] = None
        if f.min is not None:
            entry["x-min"] = f.min
        if f.max is not None:
            entry["x-max"] = f.max
        if f.doc:
            entry["doc"] = f.doc
        fields.append(entry)
    return {"type": "record", "name": schema.name, "x-version": schema.version, "fields": fields}


def load_schema(path: str | Path) -> Schema:
    """Load a schema file: ``.avsc`` (Avro), ``.json`` (JSON Schema, or streamml's own description)."""
    p = Path(path)
    if not p.is_file():
        raise SchemaError(f"schema file {p} does not exist")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"cannot read schema file {p}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SchemaError(f"schema file {p} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise SchemaError(f"schema file {p} must hold a JSON object")
    try:
        return _from_doc(doc, p)
    except SchemaError as exc:  # say which file
        if str(p) in exc.message:
            raise
        raise SchemaError(f"schema file {p}: {exc.message}", hint=exc.hint) from None


def _from_doc(doc: dict[str, Any], p: Path) -> Schema:
    if p.suffix == ".avsc" or doc.get("type") == "record":
        return from_avro(doc)
    if "properties" in doc:
        return from_json_schema(doc, name=doc.get("title") or p.stem, source=str(p))
    if "fields" in doc and "name" in doc:
        return Schema.from_dict(doc)
    raise SchemaError(f"schema file {p} is neither an Avro record schema nor a JSON Schema object")


def save_schema(schema: Schema, path: str | Path) -> Path:
    """Write ``schema`` as Avro (``.avsc``) or JSON Schema (``.json``), by suffix."""
    p = Path(path)
    doc = to_avro(schema) if p.suffix == ".avsc" else to_json_schema(schema)
    p.write_text(json.dumps(doc, indent=2))
    return p
