"""Schema evolution: which changes keep old and new readers and writers working.

A new version is compatible with the previous one (backward *and* forward) when

- every added field is optional;
- no field is removed unless it was optional;
- no field changes type (``int`` -> ``float`` widening is allowed);
- no optional field becomes required;
- enums only grow; ranges only widen.

>>> from streamml.schema.core import Field, Schema
>>> v1 = Schema("p", [Field("x", float)])
>>> check_compatible(v1, Schema("p", [Field("x", float), Field("y", str, required=False)], version=2))
[]
>>> check_compatible(v1, Schema("p", [Field("x", str)], version=2))
["field 'x' changes type from float to string"]
"""

from __future__ import annotations

from streamml.errors import SchemaError
from streamml.schema.core import Schema

__all__ = ["check_compatible", "ensure_compatible"]

_WIDENINGS = {("int", "float")}


def check_compatible(old: Schema, new: Schema) -> list[str]:
    """Every reason ``new`` cannot follow ``old``; empty when the change is compatible."""
    problems: list[str] = []
    if old.name != new.name:
        problems.append(f"schema name changes from {old.name!r} to {new.name!r}")
    old_fields = {f.name: f for f in old.fields}
    new_fields = {f.name: f for f in new.fields}
    for name, f in new_fields.items():
        if name not in old_fields:
            if f.required:
                problems.append(f"added field {name!r} is required (old records do not have it)")
            continue
        o = old_fields[name]
        if o.type != f.type and (o.type, f.type) not in _WIDENINGS:
            problems.append(f"field {name!r} changes type from {o.type} to {f.type}")
        if f.required and not o.required:
            problems.append(f"field {name!r} becomes required")
        if o.enum is not None and (f.enum is None or not set(o.enum) <= set(f.enum)) and f.enum is not None:
            problems.append(f"field {name!r} drops enum value(s) "
                            + ", ".join(map(str, sorted(set(o.enum) - set(f.enum), key=str))))
        if o.enum is None and f.enum is not None:
            problems.append(f"field {name!r} becomes an enum")
        if f.min is not None and (o.min is None or f.min > o.min):
            problems.append(f"field {name!r} narrows its minimum to {f.min}")
        if f.max is not None and (o.max is None or f.max < o.max):
            problems.append(f"field {name!r} narrows its maximum to {f.max}")
    for name, o in old_fields.items():
        if name not in new_fields and o.required:
            problems.append(f"required field {name!r} is removed")
    if old.additional and not new.additional:
        problems.append("additional fields become forbidden")
    return problems


def ensure_compatible(old: Schema, new: Schema) -> None:
    """Raise :class:`SchemaError` listing every incompatibility between ``old`` and ``new``."""
    problems = check_compatible(old, new)
    if problems:
        raise SchemaError(
            f"schema {new.name!r} v{new.version} is not compatible with v{old.version}: " + "; ".join(problems),
            hint="add new fields as optional, keep types and required fields, or register it as a new stream")
