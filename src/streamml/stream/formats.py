"""Value formats of a pipeline's source and sink other than the default JSON objects.

The engine decodes a whole batch through one path (:meth:`~streamml.stream.engine.Engine.process`):
a format's :meth:`ValueFormat.decode` returns the rows it could read and, per value it could
not, the reason; the engine sends those to the dead-letter topic exactly as it does for
invalid JSON. :meth:`ValueFormat.encode` turns the output frame back into one value per row.

- :class:`DelimitedFormat`: ksqlDB's ``DELIMITED``: the values of the declared columns in
  order, separated by a delimiter (``,`` by default), no header, quoted as CSV when needed;
  an empty field is null.
- :class:`ConfluentAvroFormat`: ksqlDB's ``AVRO``: Avro in the Confluent Schema Registry
  wire format through confluent-kafka's serializers (:mod:`streamml.schema.confluent`); a
  value is read with its writer's schema; the sink's schema is made from the output columns
  and registered under ``<topic>-value``.

>>> import polars as pl
>>> f = DelimitedFormat((("ID", pl.Int64), ("NAME", pl.String), ("X", pl.Float64)))
>>> df, bad = f.decode([b'1,a,2.5', b'2,"b,c",', b'oops,x,1', b'3,d'])
>>> df.to_dicts()
[{'ID': 1, 'NAME': 'a', 'X': 2.5}, {'ID': 2, 'NAME': 'b,c', 'X': None}]
>>> bad
{2: 'column ID: not a BIGINT: oops', 3: 'expected 3 delimited values, got 2'}
>>> f.encode(df)
[b'1,a,2.5', b'2,"b,c",']
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Sequence

import polars as pl

from streamml.errors import PipelineError, SchemaError

__all__ = ["ValueFormat", "DelimitedFormat", "ConfluentAvroFormat", "KSQL_TYPE_NAMES"]

#: ksqlDB's name of a Polars column type (in dead-letter reasons and errors).
KSQL_TYPE_NAMES: dict[Any, str] = {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Int32: "INT",
                                   pl.Float64: "DOUBLE", pl.Boolean: "BOOLEAN"}
_TRUE, _FALSE = {"true", "t", "yes", "y", "1"}, {"false", "f", "no", "n", "0"}


class ValueFormat:
    """How a pipeline's record values are read and written (the default, ``None``, is JSON)."""

    name = "json"

    def decode(self, values: Sequence[bytes]) -> tuple[pl.DataFrame, dict[int, str]]:
        """The rows of the values it can read (in order), and ``{index: reason}`` of the others."""
        raise NotImplementedError

    def encode(self, df: pl.DataFrame) -> list[bytes]:
        """One value per row of ``df`` (its public columns, in order)."""
        raise NotImplementedError


def _parse(text: str, dtype: Any) -> Any:
    if text == "":
        return None
    if dtype is None:  # a column of unknown type (an output read back): the narrowest that fits
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text
    if dtype == pl.String:
        return text
    if dtype in (pl.Int64, pl.Int32):
        v = int(text.strip())
        if dtype == pl.Int32 and not -(1 << 31) <= v < (1 << 31):
            raise ValueError(text)
        return v
    if dtype == pl.Float64:
        return float(text)
    if dtype == pl.Boolean:
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError(text)
    raise ValueError(f"unsupported type {dtype}")


@dataclass(frozen=True)
class DelimitedFormat(ValueFormat):
    """``DELIMITED`` values: ``columns`` are (name, Polars type) in declared order (type ``None``:
    the narrowest of integer, float and string that fits each value)."""

    columns: tuple[tuple[str, Any], ...]
    delimiter: str = ","
    name = "delimited"

    def __post_init__(self) -> None:
        if len(self.delimiter) != 1:
            raise PipelineError(f"a delimiter is one character, got {self.delimiter!r}",
                                hint="e.g. VALUE_DELIMITER='|' (or 'TAB', 'SPACE')")

    def decode(self, values: Sequence[bytes]) -> tuple[pl.DataFrame, dict[int, str]]:
        cols: list[list[Any]] = [[] for _ in self.columns]
        bad: dict[int, str] = {}
        n = len(self.columns)
        for i, v in enumerate(values):
            try:
                text = v.decode("utf-8")
                fields = next(csv.reader([text], delimiter=self.delimiter, strict=True)) if text else [""]
            except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
                bad[i] = f"not a delimited row: {exc}"
                continue
            if len(fields) != n:
                bad[i] = f"expected {n} delimited values, got {len(fields)}"
                continue
            row = []
            for (name, dtype), f in zip(self.columns, fields):
                try:
                    row.append(_parse(f, dtype))
                except ValueError:
                    bad[i] = f"column {name}: not a {KSQL_TYPE_NAMES.get(dtype, dtype)}: {f[:40]}"
                    break
            if i in bad:
                continue
            for c, x in zip(cols, row):
                c.append(x)
        df = pl.DataFrame([pl.Series(name, c, dtype=dtype, strict=False)
                           for (name, dtype), c in zip(self.columns, cols)])
        return df, bad

    def encode(self, df: pl.DataFrame) -> list[bytes]:
        out: list[bytes] = []
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=self.delimiter, lineterminator="")
        for row in df.iter_rows():
            buf.seek(0)
            buf.truncate()
            w.writerow(["" if x is None else ("true" if x is True else "false" if x is False else x) for x in row])
            out.append(buf.getvalue().encode())
        return out


_AVRO_OF: dict[Any, str] = {pl.String: "string", pl.Int64: "long", pl.Int32: "int", pl.Float64: "double",
                            pl.Boolean: "boolean", pl.Null: "string", pl.Float32: "float", pl.Int16: "int",
                            pl.Int8: "int"}


def avro_schema_of(schema: pl.Schema | dict[str, Any]) -> dict[str, Any]:
    """ksqlDB's Avro value schema for columns: every field optional (``["null", type]``).

    >>> avro_schema_of({"N": pl.Int64, "S": pl.String})["fields"][0]
    {'name': 'N', 'type': ['null', 'long'], 'default': None}
    """
    fields = []
    for name, dt in schema.items():
        base = _AVRO_OF.get(dt)
        if base is None and isinstance(dt, pl.List) and _AVRO_OF.get(dt.inner) is not None:
            base = {"type": "array", "items": ["null", _AVRO_OF[dt.inner]]}  # type: ignore[assignment]
        if base is None:
            raise PipelineError(f"column {name} of type {dt} has no Avro type here",
                                hint="cast it to VARCHAR, BIGINT, INT, DOUBLE or BOOLEAN, or write JSON")
        fields.append({"name": name, "type": ["null", base], "default": None})
    return {"type": "record", "name": "KsqlDataSourceSchema", "namespace": "io.confluent.ksql.avro_schemas",
            "fields": fields}


@dataclass(frozen=True)
class ConfluentAvroFormat(ValueFormat):
    """Avro in the Confluent wire format on ``topic``; ``registry`` is the registry's URL."""

    registry: str
    topic: str
    name = "avro"
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def _client(self) -> Any:
        if "client" not in self._cache:
            from streamml.schema.confluent import registry_client

            self._cache["client"] = registry_client(self.registry)
        return self._cache["client"]

    def decode(self, values: Sequence[bytes]) -> tuple[pl.DataFrame, dict[int, str]]:
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        from streamml.schema.confluent import schema_id

        if "de" not in self._cache:
            self._cache["de"] = AvroDeserializer(self._client())  # the writer's schema, by the id in each value
        de, ctx = self._cache["de"], SerializationContext(self.topic, MessageField.VALUE)
        rows: list[dict[str, Any]] = []
        bad: dict[int, str] = {}
        for i, v in enumerate(values):
            try:
                schema_id(v)
                rec = de(v, ctx)
            except SchemaError as exc:
                bad[i] = str(exc)
                continue
            except Exception as exc:  # SerializationError, SchemaRegistryError: the registry's reason
                bad[i] = f"not Avro of a registered schema: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                continue
            if not isinstance(rec, dict):
                bad[i] = "an Avro value that is not a record"
                continue
            rows.append(rec)
        df = pl.DataFrame(rows, infer_schema_length=None, strict=False) if rows else pl.DataFrame()
        return df, bad

    def encode(self, df: pl.DataFrame) -> list[bytes]:
        import json

        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        doc = avro_schema_of(df.schema)
        text = json.dumps(doc)
        if self._cache.get("schema") != text:  # a schema per distinct output layout (normally one)
            self._cache["schema"] = text
            self._cache["ser"] = AvroSerializer(self._client(), text, conf={"auto.register.schemas": True})
        ser, ctx = self._cache["ser"], SerializationContext(self.topic, MessageField.VALUE)
        out: list[bytes] = []
        for row in df.iter_rows(named=True):
            try:
                out.append(ser(row, ctx))
            except Exception as exc:
                raise PipelineError(f"Avro encoding for topic {self.topic} failed: {exc}",
                                    hint="check the schema registry and the subject's compatibility setting") from None
        return out
