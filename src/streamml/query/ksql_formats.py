"""ksqlDB's value formats (``JSON``, ``AVRO``, ``DELIMITED``) for declared sources and query outputs.

``WITH (value_format='DELIMITED', value_delimiter='|')`` reads values as the declared value
columns in order (ksqlDB's default delimiter is ``,``; ``TAB`` and ``SPACE`` name those);
``value_format='AVRO'`` reads and writes Avro in the Confluent Schema Registry wire format,
the schema registered under ``<topic>-value``; a stream declared without value columns takes
them from that subject's latest schema. A query's output has its source's format unless its
``WITH (value_format=...)`` names another, as in ksqlDB. The formats themselves are the stream
engine's (:mod:`streamml.stream.formats`).

>>> check_props({"VALUE_FORMAT": "delimited", "VALUE_DELIMITER": "TAB"})
('DELIMITED', '\\t')
>>> check_props({"VALUE_FORMAT": "PROTOBUF"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.QueryError: value_format PROTOBUF is not supported (hint: use value_format='JSON', 'AVRO' or ...)
>>> cols = avro_columns({"type": "record", "name": "p", "fields": [{"name": "card", "type": "string"},
...     {"name": "amount", "type": ["null", "double"]}, {"name": "n", "type": "int"}]})
>>> [(c.name, c.type) for c in cols]
[('CARD', 'VARCHAR'), ('AMOUNT', 'DOUBLE'), ('N', 'INT')]
"""

from __future__ import annotations

import json
from typing import Any

from streamml.errors import QueryError
from streamml.query.ksql import Column
from streamml.query.ksql_table import Source, dtype
from streamml.stream.formats import ConfluentAvroFormat, DelimitedFormat, ValueFormat

__all__ = ["FORMATS", "check_props", "source_format", "sink_format", "avro_columns", "registered_columns",
           "need_registry"]

FORMATS = ("JSON", "AVRO", "DELIMITED")
_DELIMITERS = {"TAB": "\t", "SPACE": " "}
_AVRO_TYPES = {"string": "VARCHAR", "long": "BIGINT", "int": "INT", "double": "DOUBLE", "float": "DOUBLE",
               "boolean": "BOOLEAN"}
REGISTRY_HINT = ("set the schema_registry_url setting (STREAMML_SCHEMA_REGISTRY_URL, or schema_registry_url in "
                 "streamml.toml) to a Confluent-compatible registry; `streamml schema-registry run` starts one")


def check_props(props: dict[str, str]) -> tuple[str, str]:
    """(format, delimiter) of upper-cased WITH properties; refuses unknown formats and misplaced delimiters."""
    fmt = props.get("VALUE_FORMAT", "JSON").upper()
    if fmt not in FORMATS:
        raise QueryError(f"value_format {fmt} is not supported",
                         hint="use value_format='JSON', 'AVRO' or 'DELIMITED'")
    raw = props.get("VALUE_DELIMITER")
    if raw is not None and fmt != "DELIMITED":
        raise QueryError(f"value_delimiter applies to value_format DELIMITED, not {fmt}",
                         hint="drop value_delimiter, or use value_format='DELIMITED'")
    delim = _DELIMITERS.get((raw or ",").upper(), raw or ",")
    if len(delim) != 1:
        raise QueryError(f"value_delimiter must be one character (or TAB, SPACE), got {raw!r}",
                         hint="e.g. value_delimiter='|'")
    return fmt, delim


def need_registry(registry: str | None, what: str) -> str:
    if not registry:
        raise QueryError(f"{what} uses value_format AVRO, which needs a schema registry, and none is configured",
                         hint=REGISTRY_HINT)
    return registry


def source_format(src: Source, registry: str | None) -> ValueFormat | None:
    """The engine format that reads ``src``'s values (``None``: JSON)."""
    if src.value_format == "DELIMITED":
        return DelimitedFormat(tuple((c.name, dtype(c.type, c.name)) for c in src.columns if not c.key),
                               src.delimiter)
    if src.value_format == "AVRO":
        return ConfluentAvroFormat(need_registry(registry, src.name), src.topic)
    return None


def sink_format(fmt: str, delimiter: str, topic: str, columns: list[tuple[str, Any]],
                registry: str | None, name: str) -> ValueFormat | None:
    """The engine format that writes a query's values; ``columns`` are (name, Polars type or None)."""
    if fmt == "DELIMITED":
        return DelimitedFormat(tuple(columns), delimiter)
    if fmt == "AVRO":
        return ConfluentAvroFormat(need_registry(registry, name), topic)
    return None


def avro_columns(schema: dict[str, Any]) -> list[Column]:
    """ksqlDB columns of an Avro record schema (field names upper-cased; nullable unions unwrapped)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise QueryError("the registered value schema is not an Avro record",
                         hint="declare the columns: CREATE STREAM s (col TYPE, ...) WITH (...)")
    out = []
    for f in schema.get("fields", []):
        t = f.get("type")
        if isinstance(t, list):
            rest = [x for x in t if x != "null"]
            t = rest[0] if len(rest) == 1 else None
        if isinstance(t, dict) and t.get("type") == "long" and t.get("logicalType") == "timestamp-millis":
            t = "long"
        ktype = _AVRO_TYPES.get(t) if isinstance(t, str) else None
        if ktype is None:
            raise QueryError(f"Avro field {f.get('name')} of type {json.dumps(f.get('type'))} has no column type here",
                             hint="declare the columns you need: CREATE STREAM s (col TYPE, ...) WITH (...)")
        out.append(Column(str(f["name"]).upper(), ktype))
    return out


def registered_columns(registry: str | None, topic: str, what: str) -> list[Column]:
    """The value columns of the latest schema registered under ``<topic>-value``."""
    from streamml.schema.confluent import registry_client

    client = registry_client(need_registry(registry, what))
    subject = f"{topic}-value"
    try:
        latest = client.get_latest_version(subject)
    except Exception as exc:
        raise QueryError(f"no value schema registered under subject {subject} for {what}: "
                         f"{str(exc).splitlines()[0] if str(exc) else exc!r}",
                         hint="register it by producing with an AvroSerializer, or declare the columns") from None
    if latest.schema.schema_type not in (None, "AVRO"):
        raise QueryError(f"subject {subject} holds a {latest.schema.schema_type} schema, not Avro",
                         hint="use value_format='AVRO' with an Avro subject, or declare the columns")
    return avro_columns(json.loads(latest.schema.schema_str))
