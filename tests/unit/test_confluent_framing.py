"""The Confluent wire format's framing and the Protobuf message built from a schema (no registry needed;
the round trips against a real registry are in tests/integration/test_confluent_wire.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamml.errors import ConfigError, SchemaError
from streamml.schema.confluent import confluent_codec, protobuf_message_class, schema_id
from streamml.schema.core import Field, Schema
from streamml.schema.server import APICURIO_JAVA17_VERSION, APICURIO_VERSION, RegistryServer, min_java


def test_schema_id_reads_the_big_endian_id_after_the_magic_byte() -> None:
    assert schema_id(b"\x00\x00\x01\x00\x02{}") == 65538


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x01", b"\x01\x00\x00\x00\x01x", b'{"x": 1}'])
def test_values_without_the_framing_are_refused(data: bytes) -> None:
    with pytest.raises(SchemaError, match="not in the Confluent wire format"):
        schema_id(data)


def test_protobuf_message_has_one_field_per_schema_field_and_optional_presence() -> None:
    schema = Schema("pay-1", [Field("x", float), Field("n", int), Field("note", str, required=False)])
    cls = protobuf_message_class(schema)
    assert cls.DESCRIPTOR.full_name == "streamml.pay_1"
    assert [f.name for f in cls.DESCRIPTOR.fields] == ["x", "n", "note"]
    msg = cls(x=1.5, n=2)
    assert not msg.HasField("note")
    assert cls.FromString(cls(x=1.5, n=2, note="").SerializeToString()).HasField("note")


def test_unknown_confluent_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown Confluent wire format"):
        confluent_codec("confluent-xml", "http://127.0.0.1:1", Schema.of("s", x=float), "t")


def test_registry_command_binds_loopback_and_keeps_management_off_9000() -> None:
    server = RegistryServer(Path("/tmp/none"), port=18099)
    cmd = server.command(Path("/opt/apicurio"), "/usr/bin/java")
    assert "-Dquarkus.http.host=127.0.0.1" in cmd and "-Dquarkus.http.port=18099" in cmd
    mgmt = [a for a in cmd if a.startswith("-Dquarkus.management.port=")]
    assert mgmt and mgmt[0] != "-Dquarkus.management.port=9000"
    assert server.url == "http://127.0.0.1:18099/apis/ccompat/v7"


def test_apicurio_3_needs_java_21_and_2_6_runs_on_17() -> None:
    assert min_java(APICURIO_VERSION) == 21
    assert min_java(APICURIO_JAVA17_VERSION) == 17


def test_command_runs_a_legacy_runner_jar_when_there_is_one(tmp_path: Path) -> None:
    (tmp_path / "apicurio-registry-app-2.6.13.Final-runner.jar").write_bytes(b"")
    cmd = RegistryServer(tmp_path, port=18099).command(tmp_path, "java")
    assert cmd[-2:] == ["-jar", str(tmp_path / "apicurio-registry-app-2.6.13.Final-runner.jar")]
    assert RegistryServer(tmp_path, port=18099).command(tmp_path / "none", "java")[-1] == (
        "io.quarkus.bootstrap.runner.QuarkusEntryPoint")
