"""Record schemas declared in Python: typed fields, required or optional, enums and ranges.

A :class:`Schema` validates one record (:meth:`Schema.errors`), or a whole Arrow table at once
(:meth:`Schema.validate_table`), and describes itself as an Arrow schema, so a batch of records
decodes into columns with the right types.

>>> s = Schema("payments", [
...     Field("card_id", str),
...     Field("amount", float, min=0),
...     Field("currency", str, enum=["EUR", "USD"]),
...     Field("note", str, required=False),
... ])
>>> s.errors({"card_id": "c1", "amount": 12.5, "currency": "EUR"})
[]
>>> s.errors({"card_id": "c1", "amount": -1, "currency": "GBP"})
["field 'amount': -1 is below the minimum 0", "field 'currency': 'GBP' is not one of EUR, USD"]
>>> s.errors({"amount": "12"})[:2]
["missing required field 'card_id'", "field 'amount': expected float, got str"]
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamml.errors import SchemaError, ValidationError

__all__ = ["Field", "Schema", "TYPES", "parse_timestamp_ms"]

#: field type name -> Arrow type
TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
}
_PY_NAMES: dict[Any, str] = {str: "string", int: "int", float: "float", bool: "bool",
                             _dt.datetime: "timestamp"}
_ALIASES = {"str": "string", "integer": "int", "long": "int", "double": "float", "number": "float",
            "boolean": "bool", "datetime": "timestamp"}


def _type_name(t: Any) -> str:
    if isinstance(t, str):
        name = _ALIASES.get(t, t)
        if name in TYPES:
            return name
    elif t in _PY_NAMES:
        return _PY_NAMES[t]
    raise SchemaError(f"unknown field type {t!r}", hint="use one of " + ", ".join(TYPES) +
                      " (or the Python types str, int, float, bool, datetime)")


def parse_timestamp_ms(value: Any) -> int:
    """Milliseconds since the epoch from an int (ms), a float (s), an ISO-8601 string or a datetime.

    >>> parse_timestamp_ms("2024-01-01T00:00:00Z")
    1704067200000
    >>> parse_timestamp_ms(1704067200000)
    1704067200000
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value * 1000)
    if isinstance(value, _dt.datetime):
        dt = value
    elif isinstance(value, str):
        dt = _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise ValueError(f"{type(value).__name__} is not a timestamp")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_dt.timezone.utc)
    return int(dt.timestamp() * 1000)


@dataclass(frozen=True)
class Field:
    """One field of a record.

    ``type`` is a name (string, int, float, bool, timestamp) or a Python type (str, int, float,
    bool, datetime). ``enum`` restricts values to a set; ``min``/``max`` are inclusive bounds for
    numbers. Optional fields may be absent or null; ``default`` documents the value readers assume.
    Timestamps accept milliseconds since the epoch or ISO-8601 strings.
    """

    name: str
    type: Any = "string"
    required: bool = True
    enum: Sequence[Any] | None = None
    min: float | None = None
    max: float | None = None
    default: Any = None
    doc: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", _type_name(self.type))
        if self.enum is not None:
            object.__setattr__(self, "enum", tuple(self.enum))
        if not self.name or not isinstance(self.name, str):
            raise SchemaError(f"field names must be non-empty strings, got {self.name!r}")
        if (self.min is not None or self.max is not None) and self.type not in ("int", "float"):
            raise SchemaError(f"field {self.name!r}: min/max apply to int and float fields only")

    @property
    def arrow_type(self) -> pa.DataType:
        return TYPES[self.type]

    def error(self, value: Any) -> str | None:
        """Why ``value`` does not fit this field, or None when it does."""
        if value is None:
            return f"field {self.name!r} is null but required" if self.required else None
        t = self.type
        if t == "string":
            ok = isinstance(value, str)
        elif t == "int":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif t == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif t == "bool":
            ok = isinstance(value, bool)
        else:
            try:
                parse_timestamp_ms(value)
                ok = True
            except (ValueError, TypeError, OverflowError):
                ok = False
        if not ok:
            return f"field {self.name!r}: expected {t}, got {type(value).__name__}"
        if self.enum is not None and value not in self.enum:
            return f"field {self.name!r}: {value!r} is not one of " + ", ".join(map(str, self.enum))
        if self.min is not None and value < self.min:
            return f"field {self.name!r}: {value!r} is below the minimum {_num(self.min)}"
        if self.max is not None and value > self.max:
            return f"field {self.name!r}: {value!r} is above the maximum {_num(self.max)}"
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        for key in ("enum", "min", "max", "default"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "enum" else value
        if self.doc:
            out["doc"] = self.doc
        return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Schema:
    """A named, versioned record schema.

    ``additional`` says whether fields not declared here are allowed (they pass through
    untouched) or make the record invalid. ``json_schema`` is the JSON Schema document the
    schema was read from, if any: records are then validated by ``jsonschema`` against all of
    it (the fields are what streamml types columns by; see :mod:`streamml.schema.jsoncheck`).
    It takes no part in equality, :meth:`to_dict` or evolution checks.
    """

    name: str
    fields: Sequence[Field] = field(default_factory=tuple)
    version: int = 1
    additional: bool = True
    doc: str = ""
    json_schema: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise SchemaError(f"schema {self.name!r}: duplicate field(s) {', '.join(dupes)}")
        if not isinstance(self.version, int) or self.version < 1:
            raise SchemaError(f"schema {self.name!r}: version must be a whole number >= 1")

    # -- building ---------------------------------------------------------------------
    @classmethod
    def of(cls, name: str, version: int = 1, **types: Any) -> "Schema":
        """A schema of required fields from keyword types: ``Schema.of("s", x=float, y=str)``."""
        return cls(name, [Field(k, v) for k, v in types.items()], version=version)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Schema":
        """Inverse of :meth:`to_dict`."""
        try:
            fields_ = [Field(**f) for f in data["fields"]]
            return cls(data["name"], fields_, version=int(data.get("version", 1)),
                       additional=bool(data.get("additional", True)), doc=data.get("doc", ""))
        except (KeyError, TypeError) as exc:
            raise SchemaError(f"not a streamml schema description: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "additional": self.additional,
                "doc": self.doc, "fields": [f.to_dict() for f in self.fields]}

    def with_version(self, version: int) -> "Schema":
        return Schema(self.name, self.fields, version, self.additional, self.doc, self.json_schema)

    def json_check(self) -> Any:
        """The compiled :class:`~streamml.schema.jsoncheck.JsonSchemaCheck` of ``json_schema`` (or None)."""
        if self.json_schema is None:
            return None
        cached = self.__dict__.get("_json_check")
        if cached is None:
            from streamml.schema.jsoncheck import compile_json_schema

            cached = compile_json_schema(self.json_schema)
            object.__setattr__(self, "_json_check", cached)
        return cached

    # -- reading ----------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise SchemaError(f"schema {self.name!r} has no field {name!r}", hint="fields: " + ", ".join(self.names))

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of a decoded batch (optional fields nullable)."""
        return pa.schema([pa.field(f.name, f.arrow_type, nullable=not f.required) for f in self.fields])

    # -- validating one record --------------------------------------------------------
    def errors(self, record: Any) -> list[str]:
        """Every reason ``record`` is invalid; empty when it is valid (``jsonschema``'s, with a JSON Schema)."""
        check = self.json_check()
        if check is not None:
            return list(check.errors(record))
        if not isinstance(record, dict):
            return [f"expected a JSON object, got {type(record).__name__}"]
        out: list[str] = []
        for f in self.fields:
            if f.name not in record:
                if f.required:
                    out.append(f"missing required field {f.name!r}")
                continue
            err = f.error(record[f.name])
            if err:
                out.append(err)
        if not self.additional:
            extra = [k for k in record if k not in self.names]
            if extra:
                out.append("unexpected field(s) " + ", ".join(map(repr, extra)))
        return out

    def validate(self, record: Any) -> dict[str, Any]:
        """Return ``record`` when valid, else raise :class:`ValidationError` naming the first problem."""
        errs = self.errors(record)
        if errs:
            fname = next((f.name for f in self.fields if repr(f.name) in errs[0]), None)
            raise ValidationError("; ".join(errs), field=fname)
        valid: dict[str, Any] = record
        return valid

    # -- whole batches ----------------------------------------------------------------
    def validate_table(self, table: pa.Table,
                       records: Sequence[bytes | Mapping[str, Any]] | None = None) -> tuple[np.ndarray, dict[int, str]]:
        """Validate every row of a table at once.

        Returns a boolean mask of valid rows and, for each invalid row index, its reason.
        Column types must already be the schema's types (or null); a column of another type
        makes its non-null rows invalid. With a JSON Schema the verdict is ``jsonschema``'s;
        ``records`` (the rows as read: JSON bytes or objects) let it tell absent from null.
        """
        ok, bad = self._validate_columns(table)
        check = self.json_check()
        if check is not None:
            from streamml.schema.jsoncheck import refine_table

            ok, bad = refine_table(check, table, ok, bad, records)
        return ok, bad

    def _validate_columns(self, table: pa.Table) -> tuple[np.ndarray, dict[int, str]]:
        n = table.num_rows
        bad: dict[int, str] = {}
        ok = np.ones(n, dtype=bool)

        def flag(mask: Any, reason: Any) -> None:
            arr = np.asarray(mask.to_numpy(zero_copy_only=False) if hasattr(mask, "to_numpy") else mask)
            arr = np.nan_to_num(arr.astype(float), nan=0.0).astype(bool) if arr.dtype == object else arr
            for i in np.flatnonzero(arr):
                text = reason(int(i)) if callable(reason) else reason
                bad[int(i)] = f"{bad[int(i)]}; {text}" if int(i) in bad else text
            ok[arr] = False

        cols = set(table.column_names)
        for f in self.fields:
            if f.name not in cols:
                if f.required:
                    flag(np.ones(n, dtype=bool), f"missing required field {f.name!r}")
                continue
            col = table.column(f.name)
            if f.required:
                flag(pc.is_null(col), f"missing required field {f.name!r}")
            if pa.types.is_null(col.type):
                continue
            if not _compatible(col.type, f.type):
                flag(pc.is_valid(col), f"field {f.name!r}: expected {f.type}, got {col.type}")
                continue
            if f.enum is not None:
                allowed = pa.array(list(f.enum), type=col.type)
                m = pc.and_(pc.is_valid(col), pc.invert(pc.is_in(col, value_set=allowed)))
                values = col
                flag(m, lambda i, c=values, fn=f: f"field {fn.name!r}: {c[i].as_py()!r} is not one of "
                     + ", ".join(map(str, fn.enum or ())))
            if f.min is not None:
                m = pc.fill_null(pc.less(col, f.min), False)
                flag(m, lambda i, c=col, fn=f: f"field {fn.name!r}: {c[i].as_py()!r} is below the minimum "
                     f"{_num(fn.min or 0)}")
            if f.max is not None:
                m = pc.fill_null(pc.greater(col, f.max), False)
                flag(m, lambda i, c=col, fn=f: f"field {fn.name!r}: {c[i].as_py()!r} is above the maximum "
                     f"{_num(fn.max or 0)}")
        if not self.additional:
            known = set(self.names) | set((self.json_schema or {}).get("properties") or ())
            extra = [c for c in table.column_names if c not in known]
            for c in extra:
                flag(pc.is_valid(table.column(c)), f"unexpected field(s) {c!r}")
        return ok, bad

    def to_arrow(self, records: Iterable[Mapping[str, Any]]) -> pa.Table:
        """Decode valid records into a table with the schema's types (timestamps from ms or ISO)."""
        rows = list(records)
        arrays = []
        for f in self.fields:
            values = [r.get(f.name) for r in rows]
            if f.type == "timestamp":
                values = [None if v is None else parse_timestamp_ms(v) for v in values]
                arrays.append(pa.array(values, type=pa.int64()).cast(f.arrow_type))
            else:
                arrays.append(pa.array(values, type=f.arrow_type))
        return pa.Table.from_arrays(arrays, schema=self.arrow_schema())


def _compatible(arrow_type: pa.DataType, type_name: str) -> bool:
    t = pa.types
    if type_name == "string":
        return bool(t.is_string(arrow_type) or t.is_large_string(arrow_type))
    if type_name == "int":
        return bool(t.is_integer(arrow_type))
    if type_name == "float":
        return bool(t.is_integer(arrow_type) or t.is_floating(arrow_type))
    if type_name == "bool":
        return bool(t.is_boolean(arrow_type))
    return bool(t.is_timestamp(arrow_type) or t.is_integer(arrow_type))
