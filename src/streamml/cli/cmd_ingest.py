"""``streamml ingest file|http|mqtt``: sources into validated topics, rejects to the dead-letter topic."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from streamml.cli.common import connected, console, err_console, settings
from streamml.cli.options import Format, duration_option, format_option, host_option, max_records_option, port_option
from streamml.errors import ConfigError
from streamml.ingest.writer import IngestCounts

ingest_app = typer.Typer(help="Ingest files, HTTP requests or MQTT messages into a stream.", no_args_is_help=True)


class FileFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"
    parquet = "parquet"


class WireFormat(str, Enum):
    json = "json"
    avro = "avro"


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")


def _schema(path: Optional[Path]) -> Any:
    if path is None:
        return None
    from streamml.schema.loaders import load_schema

    return load_schema(path)


def _check(ctx: typer.Context, stream: str | None, wire: str, schema: Any) -> None:
    """Checks that need no broker: the stream's topic name and the wire format (with its schema)."""
    from streamml.schema.codec import codec_for

    if stream is not None:
        settings(ctx).topic("raw", stream)
    codec_for(wire, schema)


def summary(title: str, counts: IngestCounts, extra: dict[str, Any] | None = None) -> None:
    """Print a source's counts and its most common rejection reasons."""
    table = Table(title=title, show_header=True)
    table.add_column("records in", justify="right")
    table.add_column("accepted", justify="right", style="green")
    table.add_column("dead-lettered", justify="right", style="yellow")
    if counts.failed:
        table.add_column("failed", justify="right", style="red")
    row = [f"{counts.records_in:,}", f"{counts.accepted:,}", f"{counts.dead_lettered:,}"]
    if counts.failed:
        row.append(f"{counts.failed:,}")
    table.add_row(*row)
    console.print(table)
    for key, value in (extra or {}).items():
        console.print(f"{key}: {value}", highlight=False)
    if counts.reasons:
        console.print("dead-letter reasons (most common):")
        for reason, n in counts.reasons.most_common(5):
            console.print(f"  {n:>8,}  {reason[:160]}", highlight=False, markup=False)


@ingest_app.command("file")
def file_cmd(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="A file, a folder, or a glob such as 'data/*.csv' (quote it)."),
    stream: str = typer.Option(..., "--stream", "-s", help="Stream name: records go to <ns>.raw.<stream>."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="Validate against a schema (.avsc or JSON Schema)."),
    file_format: Optional[FileFormat] = typer.Option(None, "--file-format", case_sensitive=False,
                                                     help="Format of the files (default: by file suffix)."),
    key: Optional[str] = typer.Option(None, "--key", help="Column giving the Kafka key."),
    time_col: Optional[str] = typer.Option(None, "--time", help="Column giving the event time (ms or ISO-8601)."),
    rate: Optional[float] = typer.Option(None, "--rate", help="At most this many records per second."),
    wire: WireFormat = typer.Option(WireFormat.json, "--wire-format", case_sensitive=False,
                                    help="Encoding of the records in Kafka (avro needs --schema)."),
    restart: bool = typer.Option(False, "--restart", help="Ignore the checkpoint of earlier runs of this source."),
    headers: bool = typer.Option(True, "--headers/--no-headers",
                                 help="Lineage headers on every record (off: event id as key, faster)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    out: Format = format_option(),
) -> None:
    """Ingest CSV, JSONL or Parquet files, exactly once: a re-run continues where the last one stopped."""
    from streamml.ingest.files import check_source, ingest_files

    as_json = out is Format.json
    fmt = file_format.value if file_format else None
    check_source(source, fmt, rate)        # a missing file or bad option fails before any broker is started
    sch = _schema(schema)
    _check(ctx, stream, wire.value, sch)
    s = connected(ctx)
    report = ingest_files(s, source, stream, schema=sch, format=fmt, key=key, time_column=time_col,
                          rate=rate, wire_format=wire.value, restart=restart, lineage_headers=headers,
                          progress=progress and not as_json and console.is_terminal)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    extra = {"topic": report.topic, "files": len(report.files), "seconds": f"{report.seconds:.1f}"}
    if report.resumed:
        extra["resumed"] = (f"yes; all runs: {report.total.records_in:,} in, {report.total.accepted:,} accepted, "
                            f"{report.total.dead_lettered:,} dead-lettered")
    summary(f"ingest {stream}", report.counts, extra)


def _parse_schemas(values: list[str]) -> dict[str, Any]:
    out = {}
    for item in values:
        stream, sep, path = item.partition("=")
        if not sep or not stream or not path:
            raise ConfigError(f"--schema {item!r} must look like STREAM=FILE")
        out[stream] = _schema(Path(path))
    return out


@ingest_app.command("http")
def http_cmd(
    ctx: typer.Context,
    host: str = host_option(),
    port: int = port_option(8080),
    token: Optional[str] = typer.Option(None, "--token", envvar="STREAMML_HTTP_TOKEN",
                                        help="Bearer token clients must send (or STREAMML_HTTP_TOKEN)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="Serve without authentication."),
    streams: list[str] = typer.Option([], "--stream", help="Only serve these streams (repeatable)."),
    schemas: list[str] = typer.Option([], "--schema", help="STREAM=FILE: validate a stream (repeatable)."),
    max_body: int = typer.Option(8 << 20, "--max-body-bytes", help="Largest request body accepted (413 above)."),
    wire: WireFormat = typer.Option(WireFormat.json, "--wire-format", case_sensitive=False,
                                    help="Encoding of the records in Kafka (avro needs --schema)."),
    ack_timeout: float = typer.Option(15.0, "--ack-timeout", min=0.001, help="Seconds to wait for Kafka before a 503."),
) -> None:
    """Serve POST /v1/streams/{stream}/events (JSON array or NDJSON); OpenAPI at /openapi.json."""
    from streamml.ingest.http import HttpOptions, serve_http

    if not token and not no_auth:
        raise ConfigError("no bearer token", hint="pass --token (or set STREAMML_HTTP_TOKEN), or --no-auth")
    if max_body < 1:
        raise ConfigError("--max-body-bytes must be positive")
    opts = HttpOptions(token=None if no_auth else token, max_body_bytes=max_body,
                       streams=tuple(streams) or None, schemas=_parse_schemas(schemas), wire_format=wire.value,
                       ack_timeout=ack_timeout)
    for name in streams:
        _check(ctx, name, "json", None)
    for name, sch in opts.schemas.items():
        _check(ctx, name, wire.value, sch)
    s = connected(ctx)
    err_console.print(f"serving http://{host}:{port}/v1/streams/{{stream}}/events  (OpenAPI: /openapi.json)",
                      markup=False, highlight=False, end="")
    err_console.print("" if opts.token else "  authentication off", style="yellow", markup=False)
    serve_http(s, opts, host=host, port=port)


@ingest_app.command("mqtt")
def mqtt_cmd(
    ctx: typer.Context,
    stream: str = typer.Option(..., "--stream", "-s", help="Stream name: records go to <ns>.raw.<stream>."),
    topics: list[str] = typer.Option(["#"], "--topic", "-t", help="MQTT topic filter, wildcards allowed (repeatable)."),
    mqtt_host: str = typer.Option("127.0.0.1", "--mqtt-host", help="The MQTT broker to connect to."),
    mqtt_port: int = typer.Option(1883, "--mqtt-port", min=1, max=65535, help="The MQTT broker's port."),
    username: Optional[str] = typer.Option(None, "--username", help="MQTT user name."),
    password: Optional[str] = typer.Option(None, "--password", envvar="STREAMML_MQTT_PASSWORD",
                                           help="MQTT password (or STREAMML_MQTT_PASSWORD)."),
    tls: bool = typer.Option(False, "--tls", help="Connect with TLS."),
    client_id: Optional[str] = typer.Option(None, "--client-id", help="MQTT client id (persistent session)."),
    schema: Optional[Path] = typer.Option(None, "--schema", help="Validate JSON payloads against a schema."),
    raw: bool = typer.Option(False, "--raw", help="Pass payloads through without JSON validation."),
    duration: Optional[float] = duration_option(),
    count: Optional[int] = max_records_option("Stop after this many messages."),
) -> None:
    """Bridge MQTT topics into Kafka at QoS 1; the MQTT topic becomes the key. PUBACK after Kafka's ack."""
    from streamml.ingest.mqtt import MqttOptions, bridge_mqtt

    opts = MqttOptions(host=mqtt_host, port=mqtt_port, topics=tuple(topics), username=username,
                       password=password, tls=tls, client_id=client_id, schema=_schema(schema), raw=raw)
    _check(ctx, stream, "json", None)
    s = connected(ctx)

    def ready(bridge: Any) -> None:
        err_console.print(f"bridging mqtt://{mqtt_host}:{mqtt_port} {', '.join(topics)} -> {bridge.writer.topic}"
                          " (Ctrl-C to stop)", markup=False, highlight=False)

    counts = bridge_mqtt(s, stream, opts, duration=duration, max_messages=count, on_ready=ready)
    summary(f"mqtt -> {stream}", counts)


