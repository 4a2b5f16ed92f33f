"""Record schemas, wire formats, validation, evolution and a small registry.

>>> from streamml.schema import Field, Schema
>>> Schema.of("s", x=float).errors({"x": "1"})
["field 'x': expected float, got str"]
"""

from streamml.schema.codec import FORMATS, AvroCodec, Codec, JsonCodec, codec_for, decode_batch, schema_headers
from streamml.schema.core import TYPES, Field, Schema, parse_timestamp_ms
from streamml.schema.evolution import check_compatible, ensure_compatible
from streamml.schema.loaders import from_avro, from_json_schema, load_schema, save_schema, to_avro, to_json_schema
from streamml.schema.registry import SchemaRegistry

__all__ = [
    "Field", "Schema", "TYPES", "parse_timestamp_ms",
    "Codec", "JsonCodec", "AvroCodec", "codec_for", "decode_batch", "schema_headers", "FORMATS",
    "check_compatible", "ensure_compatible",
    "from_json_schema", "to_json_schema", "from_avro", "to_avro", "load_schema", "save_schema",
    "SchemaRegistry",
]
