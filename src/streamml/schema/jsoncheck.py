"""Full JSON Schema validation of records with the ``jsonschema`` library.

A JSON Schema file is compiled once (:func:`compile_json_schema`, cached per schema): its
dialect is the one its ``$schema`` declares (draft 2020-12 when it declares none), the schema
itself is checked against that dialect's meta-schema, ``$ref`` must point inside the file
(``#/$defs/...``; remote references are refused, nothing is fetched), and formats are checked
with a :class:`jsonschema.FormatChecker` (plus ``date-time``, RFC 3339).

Reasons name the failing location as a JSON path and the keyword, one line per problem:

>>> check = compile_json_schema({"type": "object", "required": ["card"], "properties": {
...     "card": {"type": "object", "required": ["number"],
...              "properties": {"number": {"type": "string", "pattern": "^[0-9]{16}$"}}}}})
>>> check.errors({"card": {"number": "x12"}})
["$.card.number: 'x12' does not match '^[0-9]{16}$' (pattern)"]
>>> check.errors({"card": {}})
["$.card: 'number' is a required property"]
>>> check.errors({"card": {"number": "1234567812345678"}})
[]

Whole batches (:func:`refine_table`) keep streamml's columnar checks as a pre-filter and ask
``jsonschema`` about every record those checks cannot vouch for, so the verdict is always
``jsonschema``'s: for a flat schema (scalar properties with type, enum, minimum, maximum,
minLength, maxLength, pattern; required; additionalProperties true or false) a record that
passes the columnar checks and holds no null is valid by construction, every other record
is validated by ``jsonschema`` itself.
"""

from __future__ import annotations

import datetime as _dt
import re
from functools import lru_cache
from typing import Any, Iterator, Mapping, Sequence

import jsonschema
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import referencing
import referencing.exceptions
from jsonschema import validators
from referencing.jsonschema import specification_with

from streamml.errors import ConfigError

__all__ = ["JsonSchemaCheck", "compile_json_schema", "refine_table", "FORMAT_CHECKER"]

DEFAULT_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: the formats checked: jsonschema's FormatChecker (what its installed extras allow) and date-time
FORMAT_CHECKER = jsonschema.FormatChecker()
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")



def _date_time(value: object) -> bool:
    """RFC 3339 date-time (what jsonschema checks only with an optional extra installed)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    _dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00").replace(" ", "T"))
    return True


if "date-time" not in FORMAT_CHECKER.checkers:
    FORMAT_CHECKER.checks("date-time", raises=ValueError)(_date_time)

# keywords the columnar checks implement exactly (annotations change no verdict)
_ANNOTATIONS = {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly"}
_TOP_COVERED = _ANNOTATIONS | {"$schema", "$id", "type", "properties", "required", "additionalProperties",
                               "x-version", "version"}
_PROP_COVERED = _ANNOTATIONS | {"type", "enum", "minimum", "maximum", "minLength", "maxLength", "pattern"}
_SCALARS = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}
_EXACT_FLOAT = 2.0 ** 53
# keywords whose jsonschema message already names them ("is a required property", "is not of type")
_NAMED_IN_MESSAGE = {"type", "required", "minimum", "maximum", "additionalProperties", "unevaluatedProperties"}


class _RemoteRef(Exception):
    """A ``$ref`` outside the schema file: streamml does not fetch schemas."""


def _refuse(uri: str) -> referencing.Resource[Any]:
    raise _RemoteRef(uri)


def _pointer(path: Sequence[Any]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path) if path else "/ (the root)"


def _walk_refs(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[str, tuple[Any, ...]]]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("$ref", "$dynamicRef") and isinstance(v, str):
                yield v, path + (k,)
            elif k not in ("enum", "const", "examples", "default"):
                yield from _walk_refs(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_refs(v, path + (i,))


def _registry(doc: Mapping[str, Any], dialect: str) -> tuple[referencing.Registry[Any], str]:
    """The schema as the only resource of a registry that refuses to fetch anything else."""
    spec = specification_with(dialect, default=referencing.jsonschema.DRAFT202012)
    resource = spec.create_resource(doc)
    base = resource.id() or ""
    registry: referencing.Registry[Any] = referencing.Registry(retrieve=_refuse)  # type: ignore[call-arg]
    return registry.with_resource(base, resource).crawl(), base


class JsonSchemaCheck:
    """A compiled JSON Schema: a validator, its reasons, and what the columnar checks cover.

    Raises :class:`ConfigError` (naming ``source`` and the JSON pointer of the problem) when
    the schema is not valid under its dialect's meta-schema or holds a ``$ref`` that is remote
    or does not resolve.
    """

    def __init__(self, doc: Mapping[str, Any], source: str | None = None) -> None:
        where = f"schema file {source}" if source else "JSON Schema"
        self.doc = dict(doc)
        dialect = self.doc.get("$schema", DEFAULT_DIALECT)
        cls = validators.validator_for(self.doc, default=validators.Draft202012Validator)
        if "$schema" in self.doc and validators.validator_for(self.doc, default=None) is None:
            raise ConfigError(f"{where}: unknown JSON Schema dialect $schema {dialect!r}",
                              hint=f"use {DEFAULT_DIALECT} or another draft jsonschema knows (4, 6, 7, 2019-09)")
        self.dialect = str(dialect)
        try:
            cls.check_schema(self.doc)
        except jsonschema.exceptions.SchemaError as exc:
            raise ConfigError(f"{where} is not a valid JSON Schema ({self.dialect}): at {_pointer(list(exc.path))}: "
                              f"{_one_line(exc.message)}",
                              hint=f"fix the value at that JSON pointer; its rules are in the meta-schema {dialect}"
                              ) from None
        registry, base = _registry(self.doc, self.dialect)
        resolver = registry.resolver(base_uri=base)
        for ref, path in _walk_refs(self.doc):
            try:
                resolver.lookup(ref)
            except referencing.exceptions.Unresolvable as exc:
                if not _is_remote(exc):
                    raise ConfigError(f"{where}: $ref {ref!r} at {_pointer(path)} does not resolve",
                                      hint="refer to a definition of this file, e.g. \"#/$defs/NAME\"") from None
                raise ConfigError(f"{where}: $ref {ref!r} at {_pointer(path)} points outside the file; remote "
                                  "references are refused (streamml fetches no schemas over the network)",
                                  hint="copy the referenced schema into \"$defs\" and refer to it as "
                                  "\"#/$defs/NAME\"") from None
        self.validator = cls(self.doc, registry=registry, format_checker=FORMAT_CHECKER)
        self.covered, self.string_checks, residual = _plan(self.doc)
        #: what the columnar checks leave over (the properties they do not cover), or None
        self.residual: Any = None
        if residual is not None:
            self.residual = cls(residual, registry=_registry(residual, self.dialect)[0], format_checker=FORMAT_CHECKER)

    def is_valid(self, instance: Any) -> bool:
        return bool(self.validator.is_valid(instance))

    def errors(self, instance: Any) -> list[str]:
        """Every top-level failure as ``"$.path: message"`` (the keyword named), sorted by path."""
        found = sorted(self.validator.iter_errors(instance), key=lambda e: e.json_path)
        return [_reason(e) for e in found]


def _is_remote(exc: BaseException | None) -> bool:
    """Whether resolving failed because the reference needed a fetch (which :func:`_refuse` refused)."""
    while exc is not None:
        if isinstance(exc, _RemoteRef):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _reason(err: jsonschema.ValidationError) -> str:
    message = _one_line(err.message)
    keyword = str(err.validator)
    if keyword not in _NAMED_IN_MESSAGE:
        message += f" ({keyword})"
    return f"{err.json_path}: {message}"


_StringCheck = tuple[str, int | None, int | None, "re.Pattern[str] | None"]


def _plan(doc: Mapping[str, Any]) -> tuple[bool, list[_StringCheck], dict[str, Any] | None]:
    """What the columnar checks decide exactly: all of the schema (``covered``), or its scalar
    properties, leaving a residual schema of the others for ``jsonschema``; plus the string
    checks the columns must add. ``(False, [], None)``: every record goes to ``jsonschema``."""
    checks: list[_StringCheck] = []
    props = doc.get("properties")
    required = set(doc.get("required", ()))
    if (set(doc) - _TOP_COVERED - {"$defs", "definitions"} or doc.get("type") != "object"
            or not isinstance(props, dict) or not isinstance(doc.get("additionalProperties", True), bool)
            or any(not ref.startswith(("#/$defs/", "#/definitions/")) or key == "$dynamicRef"
                   for ref, (*_, key) in _walk_refs(doc))):
        return False, [], None
    rest: dict[str, Any] = {}
    for name, prop in props.items():
        check = _prop_plan(name, prop, name in required)
        if check is None:
            rest[name] = prop
        elif check[1:] != (None, None, None):
            checks.append(check)
    if not rest:
        return True, checks, None
    residual = {k: doc[k] for k in ("$schema", "$id", "$defs", "definitions") if k in doc}
    residual["properties"] = rest
    residual["required"] = sorted(required & set(rest))
    return False, checks, residual


def _prop_plan(name: str, prop: Any, required: bool) -> _StringCheck | None:
    """The string checks of a property the columns decide exactly, or None when they cannot."""
    if not isinstance(prop, dict) or set(prop) - _PROP_COVERED:
        return None
    types = prop.get("type")
    types = [types] if isinstance(types, str) else types
    if not isinstance(types, list) or len([t for t in types if t != "null"]) != 1:
        return None
    (kind,) = [t for t in types if t != "null"]
    if kind not in _SCALARS or (len(types) > 1 and required):
        return None                                    # a required nullable property: its field is optional
    allowed = _SCALARS[kind]
    if any(not isinstance(v, allowed) or (isinstance(v, bool) and kind != "boolean") for v in prop.get("enum", ())):
        return None
    has_bounds = "minimum" in prop or "maximum" in prop
    has_strings = any(k in prop for k in ("minLength", "maxLength", "pattern"))
    if (has_bounds and kind not in ("integer", "number")) or (has_strings and kind != "string"):
        return None
    pattern = prop.get("pattern")
    return name, prop.get("minLength"), prop.get("maxLength"), re.compile(pattern) if pattern is not None else None


@lru_cache(maxsize=128)
def _compiled(canonical: bytes, source: str | None) -> JsonSchemaCheck:
    return JsonSchemaCheck(orjson.loads(canonical), source)


def compile_json_schema(doc: Mapping[str, Any], source: str | None = None) -> JsonSchemaCheck:
    """The compiled check for ``doc`` (one per distinct schema document, cached).

    >>> compile_json_schema({"type": "object", "properties": {"x": {"type": "nope"}}}, "s.json")
    Traceback (most recent call last):
    ...
    streamml.errors.ConfigError: schema file s.json is not a valid JSON Schema \
(https://json-schema.org/draft/2020-12/schema): at /properties/x/type: 'nope' is not valid under any of the given \
schemas (hint: fix the value at that JSON pointer; its rules are in the meta-schema \
https://json-schema.org/draft/2020-12/schema)
    """
    try:
        canonical = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise ConfigError(f"{'schema file ' + source if source else 'JSON Schema'} is not JSON: {exc}") from None
    return _compiled(canonical, source)


# -- whole tables -------------------------------------------------------------------------
def refine_table(check: JsonSchemaCheck, table: pa.Table, ok: np.ndarray, bad: dict[int, str],
                 records: Sequence[bytes | Mapping[str, Any]] | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """Make the columnar verdict (``ok``, ``bad``) of ``table`` exactly ``jsonschema``'s.

    ``records`` are the rows as they were read (JSON bytes or objects), so that a missing
    property and a null one differ; without them each row is built from the table (nulls
    dropped: an empty cell is an absent property; timestamps as ISO 8601 strings).

    >>> check = compile_json_schema({"type": "object", "required": ["x"], "properties": {
    ...     "x": {"type": "integer", "minimum": 0}, "tag": {"type": "string", "maxLength": 3}}})
    >>> table = pa.table({"x": [1, -1, 2, 3], "tag": ["ab", "ab", None, "abcd"]})
    >>> records = [b'{"x": 1, "tag": "ab"}', b'{"x": -1, "tag": "ab"}', b'{"x": 2, "tag": null}',
    ...            b'{"x": 3, "tag": "abcd"}']
    >>> ok, bad = refine_table(check, table, np.array([True, False, True, True]),
    ...                        {1: "field 'x': -1 is below the minimum 0"}, records)
    >>> ok.tolist()
    [True, False, False, False]
    >>> bad[1], bad[2], bad[3]
    ('$.x: -1 is less than the minimum of 0', "$.tag: None is not of type 'string'", "$.tag: 'abcd' is too long \
(maxLength)")
    """
    n = table.num_rows
    need = ~ok
    if check.covered or check.residual is not None:
        nulls = np.zeros(n, dtype=bool)
        for name in table.column_names:
            col = table.column(name)
            if col.null_count:
                nulls |= pc.is_null(col).to_numpy(zero_copy_only=False)
            if pa.types.is_floating(col.type) and n:
                values = col.to_numpy(zero_copy_only=False).astype(float)   # nulls read as NaN here
                inexact = ~np.isfinite(values) | (np.abs(np.nan_to_num(values)) >= _EXACT_FLOAT)
                need |= inexact & pc.is_valid(col).to_numpy(zero_copy_only=False)
        if records is not None and nulls.any():
            # a null cell is an absent property or a JSON null; only a record holding the literal
            # null (it has no escaped form) can be the latter, and those go to jsonschema
            idx = np.flatnonzero(nulls)
            need[idx] |= np.fromiter((b"null" in (r if type(r) is bytes else _raw(r)) for r in map(records.__getitem__,
                                                                                               idx.tolist())),
                                     dtype=bool, count=len(idx))
        for name, lo, hi, pattern in check.string_checks:
            if name not in table.column_names:
                continue
            col = table.column(name)
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                need |= pc.is_valid(col).to_numpy(zero_copy_only=False)   # not text here: let jsonschema say
                continue
            if lo is not None or hi is not None:
                length = pc.utf8_length(col).to_numpy(zero_copy_only=False).astype(float)
                if lo is not None:
                    need |= np.nan_to_num(length, nan=lo) < lo
                if hi is not None:
                    need |= np.nan_to_num(length, nan=hi) > hi
            if pattern is not None:
                search = pattern.search
                need |= np.array([v is not None and search(v) is None for v in col.to_pylist()], dtype=bool)
    else:
        need = np.ones(n, dtype=bool)
    if check.residual is not None:                    # the columns vouch for the rest of each record
        idx = np.flatnonzero(~need)
        need[idx] = np.fromiter((isinstance(inst, _Malformed) or not check.residual.is_valid(inst)
                                 for _, inst in _instances(table, records, idx)), dtype=bool, count=len(idx))
    out_ok = ok.copy()
    out_bad = {i: r for i, r in bad.items() if not need[i]}
    for i, instance in _instances(table, records, np.flatnonzero(need)):
        if isinstance(instance, _Malformed):
            out_ok[i], out_bad[i] = False, f"malformed JSON: {instance.error}"
        elif check.is_valid(instance):
            out_ok[i] = True
        else:
            out_ok[i], out_bad[i] = False, "; ".join(check.errors(instance))
    return out_ok, out_bad


class _Malformed:
    """A record Arrow read but orjson refuses (``NaN``, say): its reason."""

    def __init__(self, error: str) -> None:
        self.error = error


def _instances(table: pa.Table, records: Sequence[bytes | Mapping[str, Any]] | None,
               picked: np.ndarray) -> Iterator[tuple[int, Any]]:
    """The rows at ``picked`` as JSON values: parsed from ``records``, else built from the table."""
    if records is None:
        rows = table.take(picked).to_pylist() if len(picked) else []
        for i, row in zip(picked.tolist(), rows):
            yield i, {k: _jsonable(v) for k, v in row.items() if v is not None}
        return
    for i in picked.tolist():
        rec = records[i]
        if isinstance(rec, (bytes, bytearray, memoryview, str)):
            try:
                yield i, orjson.loads(rec)
            except orjson.JSONDecodeError as exc:
                yield i, _Malformed(str(exc))
        else:
            yield i, rec


def _raw(record: bytes | Mapping[str, Any]) -> bytes:
    if isinstance(record, bytes):
        return record
    if isinstance(record, (bytearray, memoryview)):
        return bytes(record)
    if isinstance(record, str):
        return record.encode()
    return b"null" if None in record.values() else b""


def _jsonable(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    return value
