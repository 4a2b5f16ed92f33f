"""Every command, given wrong values, ends in one ``error:`` line (plus a ``hint:``), the
documented exit code and no traceback (issue 17).

Each case runs ``python -m streamml`` as a subprocess, as a user would. No broker is needed:
the bad values are refused before anything connects, and the unreachable-broker case points
at a loopback port that is bound but not listening (refused at once). ``-b`` is given to
every command so that none of them starts a local Kafka.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from streamml.errors import EXIT_FAILURE, EXIT_USAGE


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole module (bound, never listening)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("bad-input")
    (d / "data.csv").write_text("a\n1\n")
    (d / "notype.avsc").write_text('{"type": "record", "name": "r", "fields": [{"name": "a"}]}')
    (d / "badprop.json").write_text('{"type": "object", "properties": {"a": "integer"}}')
    (d / "ns5.toml").write_text("namespace = 5\n")
    (d / "kafka-x.toml").write_text('kafka = "x"\n')
    (d / "protocol.toml").write_text('[kafka]\n"security.protocol" = "bogus"\n')
    (d / "dotted.toml").write_text('[kafka]\nsecurity.protocol = "SSL"\n')
    (d / "unknown.toml").write_text("bogus = 1\n")
    (d / "port.toml").write_text('local_port = "abc"\n')
    (d / "broken.toml").write_text("x = [\n")
    (d / "nodes.toml").write_text('# local cluster\nnamespace = "ok"\nlocal_nodes = 2\n')
    (d / "section-key.toml").write_text('namespace = "ok"\n\n[serve]\nguarantee = "at-least-once"\nbogus = 1\n')
    (d / "section-value.toml").write_text('[serve]\nbatch-size = "many"\n')
    (d / "section-name.toml").write_text('[sevre]\nguarantee = "at-least-once"\n')
    (d / "section.toml").write_text('[serve]\nguarantee = "at-least-once"\nstrategy = "bogus"\n')
    (d / "app.py").write_text("x = 1\n")
    for name in ("[/x]", "[bold]"):
        (d / name).mkdir(parents=True)
    (d / "home").mkdir()
    return d


def _run(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    env.update({"HOME": str(cwd / "home"), "XDG_CONFIG_HOME": str(cwd / "home"), "COLUMNS": "80",
                "STREAMML_HOME": str(cwd / "home" / "streamml")})
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "streamml", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def _one_error(res: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line; after it at most a ``hint:`` line; no traceback anywhere."""
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    after = lines[errors[0] + 1:]
    assert len(after) <= 1 and all(line.startswith("hint: ") for line in after), res.stderr
    return lines[errors[0]]


B = "127.0.0.1:{port}"

# (arguments, exit code, text the error line must contain); {port} is the closed port, {d} the files
CASES: list[tuple[list[str], int, str]] = [
    # schemas and config files
    (["ingest", "file", "{d}/data.csv", "--stream", "s", "--schema", "{d}/notype.avsc"], EXIT_USAGE,
     "Avro field 'a' has no \"type\""),
    (["ingest", "file", "{d}/data.csv", "--stream", "s", "--schema", "{d}/badprop.json"], EXIT_USAGE,
     "badprop.json is not a valid JSON Schema (https://json-schema.org/draft/2020-12/schema): at /properties/a: "
     "'integer' is not of type 'object', 'boolean'"),
    (["--config", "{d}/ns5.toml", "topics"], EXIT_USAGE, "setting namespace in {d}/ns5.toml:1 must be a string, got 5"),
    (["--config", "{d}/kafka-x.toml", "topics"], EXIT_USAGE, "setting kafka in {d}/kafka-x.toml:1 must be a table"),
    (["--config", "{d}/protocol.toml", "topics"], EXIT_USAGE,
     'Invalid value "bogus" for configuration property "security.protocol"'),
    (["--config", "{d}/dotted.toml", "topics"], EXIT_USAGE, "[kafka] option 'security'"),
    (["--config", "{d}/unknown.toml", "topics"], EXIT_USAGE, "unknown setting(s) bogus"),
    (["--config", "{d}/port.toml", "topics"], EXIT_USAGE,
     "setting local_port in {d}/port.toml:1 must be a whole number, got 'abc'"),
    (["--config", "{d}/nodes.toml", "topics"], EXIT_USAGE,
     "setting local_nodes in {d}/nodes.toml:3 must be 1 or 3, got 2"),
    # per-command sections of the config file
    (["--config", "{d}/section-key.toml", "topics"], EXIT_USAGE,
     "unknown option 'bogus' in section [serve] at {d}/section-key.toml:5"),
    (["--config", "{d}/section-value.toml", "topics"], EXIT_USAGE,
     "option batch-size = 'many' in section [serve] at {d}/section-value.toml:2 is not valid"),
    (["--config", "{d}/section-name.toml", "topics"], EXIT_USAGE, "unknown section [sevre] in {d}/section-name.toml:1"),
    (["--config", "{d}/section.toml", "serve", "--model", "m", "--input", "x"], EXIT_USAGE,
     "unknown strategy 'bogus'"),  # the section's value reaches the command
    (["--config", "{d}/section.toml", "serve", "--model", "m", "--input", "x", "--strategy", "single",
      "--wait", "1"],
     EXIT_FAILURE, "cannot reach Kafka at 127.0.0.1:{port}"),  # the flag wins over the section
    (["--config", "{d}/broken.toml", "topics"], EXIT_USAGE, "is not valid TOML"),
    (["--config", "{d}/missing.toml", "topics"], EXIT_USAGE, "cannot read config file"),
    (["-N", "bad ns", "topics"], EXIT_USAGE, "invalid namespace 'bad ns' (from --namespace)"),
    (["--log-level", "bogus", "topics"], EXIT_USAGE,
     "Invalid value for '--log-level' (env var: 'STREAMML_LOG_LEVEL'): "
     "'bogus' is not one of 'debug', 'info', 'warning', 'error'"),
    (["-X", "linger.ms", "topics"], EXIT_USAGE, "-X 'linger.ms' is not KEY=VALUE"),
    # user text is printed literally, never as markup
    (["ingest", "file", "{d}/[/x]/nofile.csv", "--stream", "s"], EXIT_USAGE, "[/x]/nofile.csv"),
    (["ingest", "file", "{d}/[bold]/nofile.csv", "--stream", "s"], EXIT_USAGE, "[bold]/nofile.csv"),
    # bootstrap servers
    (["topics"], EXIT_FAILURE, "cannot reach Kafka at 127.0.0.1:{port} (connection refused)"),
    (["-b", "", "topics"], EXIT_USAGE, "--bootstrap-servers is empty"),
    (["-b", "broker:x", "topics"], EXIT_USAGE, "bootstrap server 'broker:x' has an invalid port 'x'"),
    # click's usage errors in the same shape
    (["bogus"], EXIT_USAGE, "No such command 'bogus'"),
    (["serve", "--bogus"], EXIT_USAGE, "No such option: --bogus"),
    (["serve", "--input", "x"], EXIT_USAGE, "Missing option '--model'"),
    (["generate", "transactions", "--max-records", "x"], EXIT_USAGE,
     "Invalid value for '--max-records' / '-n': Input should be a valid integer"),
    (["generate", "transactions", "-n", "-1"], EXIT_USAGE, "Invalid value for '--max-records' / '-n'"),
    # serve and models: checked before anything connects
    (["serve", "--model", "fraud", "--input", "x", "--strategy", "bogus"], EXIT_USAGE, "unknown strategy 'bogus'"),
    (["serve", "--model", "fraud", "--input", "x", "--guarantee", "bogus"], EXIT_USAGE,
     "Invalid value for '--guarantee': 'bogus' is not one of 'exactly-once', 'at-least-once'"),
    (["serve", "--model", "fraud", "--input", "x", "--port", "99999"], EXIT_USAGE, "Invalid value for '--port'"),
    (["serve", "--model", "fraud", "--strategy", "consensus", "--also", "b", "--weights", "a,b", "--input", "x"],
     EXIT_USAGE, "--weights 'a,b' must be comma-separated numbers"),
    (["serve", "--model", "fraud", "--input", "x", "--batch-size", "0"], EXIT_USAGE, "--batch-size"),
    (["serve", "--model", "fraud", "--input", "x", "--instance", "bad/id"], EXIT_USAGE, "instance id 'bad/id'"),
    (["serve", "--model", "fraud"], EXIT_USAGE, "nothing to serve"),
    (["serve", "--model", "fraud", "--input", "x", "--wait", "1"], EXIT_FAILURE, "cannot reach Kafka at"),
    (["models", "show", "fraud@x"], EXIT_USAGE, "model reference 'fraud@x' has an invalid version 'x'"),
    (["models", "show", "bad name"], EXIT_USAGE, "invalid model name 'bad name'"),
    (["models", "promote", "fraud", "1", "--stage", "bogus"], EXIT_USAGE,
     "Invalid value for '--stage': 'bogus' is not one of 'candidate', 'shadow', 'canary', 'production', 'archived'"),
    (["models", "show", "fraud", "-f", "csv"], EXIT_USAGE,
     "Invalid value for '--format' / '-f': 'csv' is not one of 'table', 'json'"),
    (["models", "promote", "fraud", "0"], EXIT_USAGE, "Invalid value for 'version'"),
    (["models", "diff", "fraud@1", "fraud@"], EXIT_USAGE, "invalid version ''"),
    # the other commands
    (["topics", "-f", "xml"], EXIT_USAGE,
     "Invalid value for '--format' / '-f': 'xml' is not one of 'table', 'json', 'csv'"),
    (["head", "t", "--from", "bogus"], EXIT_USAGE, "--from 'bogus' is not a start position"),
    (["head", "t", "--from", "end"], EXIT_USAGE, "head --from end: there are no records after the end"),
    (["head", "t", "-n", "x"], EXIT_USAGE, "Invalid value for '--max-records' / '-n'"),
    (["tail", "t", "--from", "bogus"], EXIT_USAGE, "--from 'bogus' is not a start position"),
    (["tail", "t", "--from", "@soon"], EXIT_USAGE, "--from '@soon' is not a start position: 'soon' is not a time"),
    (["tail", "t", "--idle", "-1"], EXIT_USAGE, "Invalid value for '--idle'"),
    (["tail", "t", "--duration", "x"], EXIT_USAGE, "Invalid value for '--duration'"),
    (["sql", "SELECT 1", "-f", "xml"], EXIT_USAGE, "Invalid value for '--format' / '-f': 'xml' is not one of"),
    (["train", "fraud", "--trainer", "bogus"], EXIT_USAGE, "--trainer 'bogus' is not one of"),
    (["train", "fraud", "--holdout", "2"], EXIT_USAGE, "--holdout must be between 0 and 1"),
    (["run", "{d}/nope.py"], EXIT_USAGE, "does not exist"),
    (["run", "{d}/app.py", "--guarantee", "bogus"], EXIT_USAGE,
     "Invalid value for '--guarantee': 'bogus' is not one of 'exactly-once', 'at-least-once'"),
    (["monitor", "--model", "fraud", "--from", "bogus"], EXIT_USAGE, "--from 'bogus' is not a start position"),
    (["monitor", "--model", "fraud", "--from", "-5"], EXIT_USAGE,
     "--from '-5': a monitor group starts at the beginning or the end"),
    (["dashboard", "--port", "99999"], EXIT_USAGE, "Invalid value for '--port'"),
    (["generate", "transactions", "--max-records", "10", "--fraud-rate", "3"], EXIT_USAGE, "--fraud-rate"),
    (["generate", "sensors", "--max-records", "10", "--machines", "0"], EXIT_USAGE, "--machines"),
    (["generate", "sensors"], EXIT_USAGE, "give --max-records or --duration (or both)"),
    (["ingest", "file", "{d}/data.csv", "--stream", "s", "--file-format", "xml"], EXIT_USAGE,
     "Invalid value for '--file-format': 'xml' is not one of 'csv', 'jsonl', 'parquet'"),
    (["ingest", "file", "{d}/data.csv", "--stream", "s", "-f", "xml"], EXIT_USAGE,
     "Invalid value for '--format' / '-f': 'xml' is not one of 'table', 'json'"),
    (["ingest", "file", "{d}/data.csv", "--stream", "s", "--wire-format", "xml"], EXIT_USAGE,
     "Invalid value for '--wire-format': 'xml' is not one of 'json', 'avro'"),
    (["ingest", "file", "{d}/data.csv", "--stream", "bad name"], EXIT_USAGE, "invalid topic name part"),
    (["ingest", "http", "--no-auth", "--port", "99999"], EXIT_USAGE, "Invalid value for '--port'"),
    (["ingest", "http"], EXIT_USAGE, "no bearer token"),
    (["ingest", "mqtt", "--stream", "bad name"], EXIT_USAGE, "invalid topic name part"),
    (["verify", "-i", "a", "-o", "b", "--timeout", "-1"], EXIT_USAGE, "Invalid value for '--timeout'"),
    (["soak", "--minutes", "-1"], EXIT_USAGE, "Invalid value for '--minutes'"),
    (["demo", "--minutes", "-1"], EXIT_USAGE, "Invalid value for '--minutes'"),
    (["kafka", "up", "--nodes", "2"], EXIT_USAGE, "--nodes must be 1 or 3, got 2"),
    (["kafka", "logs", "--data-dir", "{d}/no-cluster"], EXIT_FAILURE, "no local cluster in"),
]

# Old spellings (kept for one release, streamml.cli.deprecated) are translated and then checked
# as the new ones are: (arguments, the deprecation warnings, exit code, text of the error line)
OLD_CASES: list[tuple[list[str], list[str], int, str]] = [
    (["-n", "bad ns", "topics"], ["'streamml -n' is deprecated, use '-N'"], EXIT_USAGE,
     "invalid namespace 'bad ns' (from --namespace)"),
    (["generate", "transactions", "--count", "x"],
     ["'streamml generate transactions --count' is deprecated, use '--max-records'"], EXIT_USAGE,
     "Invalid value for '--max-records' / '-n': Input should be a valid integer"),
    (["serve", "--model", "fraud", "--input", "x", "--mode", "bogus"],
     ["'streamml serve --mode' is deprecated, use '--guarantee'"], EXIT_USAGE,
     "Invalid value for '--guarantee': 'bogus' is not one of 'exactly-once', 'at-least-once'"),
    (["head", "t", "--start", "bogus"], ["'streamml head --start' is deprecated, use '--from'"], EXIT_USAGE,
     "--from 'bogus' is not a start position"),
    (["run", "{d}/app.py", "--guarantee", "exactly_once", "--idle-exit", "x"],
     ["'streamml run --guarantee exactly_once' is deprecated, use '--guarantee exactly-once'",
      "'streamml run --idle-exit' is deprecated, use '--idle'"], EXIT_USAGE, "Invalid value for '--idle'"),
]


def _argv(args: list[str], fill: dict[str, str], closed_port: int) -> list[str]:
    argv = [a.format(**fill) for a in args]
    if argv[0] not in ("-b", "kafka", "soak"):
        argv = ["-b", B.format(port=closed_port), *argv]
    return argv


@pytest.mark.parametrize(("args", "code", "message"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_error_line(args: list[str], code: int, message: str, files: Path,
                                     closed_port: int) -> None:
    fill = {"d": str(files), "port": str(closed_port)}
    argv = _argv(args, fill, closed_port)
    started = time.monotonic()
    res = _run(argv, files)
    line = _one_error(res)
    assert res.returncode == code, (argv, res.returncode, res.stderr)
    assert message.format(**fill) in line, (argv, line)
    assert "is deprecated" not in res.stderr, (argv, res.stderr)  # the cases use the new spellings
    assert time.monotonic() - started < 30, argv  # nothing waits on a broker


@pytest.mark.parametrize(("args", "warnings", "code", "message"), OLD_CASES,
                         ids=[" ".join(c[0])[:60] for c in OLD_CASES])
def test_an_old_spelling_is_translated_with_a_warning_and_checked(
        args: list[str], warnings: list[str], code: int, message: str, files: Path, closed_port: int) -> None:
    fill = {"d": str(files), "port": str(closed_port)}
    argv = _argv(args, fill, closed_port)
    res = _run(argv, files)
    line = _one_error(res)
    assert res.returncode == code, (argv, res.returncode, res.stderr)
    assert message.format(**fill) in line, (argv, line)
    warned = [w for w in res.stderr.splitlines() if w.startswith("warning:")]
    assert len(warned) == len(warnings), res.stderr
    for want, got in zip(warnings, warned):
        assert got == f"warning: {want} (the old spelling goes in the next release)", (argv, got)


def test_unreachable_broker_names_the_address_and_a_hint_at_once(files: Path, closed_port: int) -> None:
    res = _run(["-b", f"127.0.0.1:{closed_port}", "models", "list"], files)
    line = _one_error(res)
    assert res.returncode == EXIT_FAILURE and f"127.0.0.1:{closed_port}" in line
    assert "hint: check that the brokers run" in res.stderr


def test_an_empty_bootstrap_flag_does_not_start_a_local_kafka(files: Path) -> None:
    res = _run(["-b", "", "topics"], files)
    assert res.returncode == EXIT_USAGE and "local cluster" not in res.stderr.split("hint:")[0]
    assert not (files / "home" / "streamml" / "cluster").exists()


def test_help_text_is_not_markup(files: Path) -> None:
    res = _run(["serve", "--help"], files)
    assert res.returncode == 0, res.stderr
    assert "(shadow/canary) [the strategy]" in " ".join(res.stdout.split())


@pytest.mark.parametrize(("env", "message"), [
    ({"STREAMML_LOCAL_PORT": "abc"},
     "setting local_port in the environment variable STREAMML_LOCAL_PORT must be a whole number, got 'abc'"),
    ({"STREAMML_NAMESPACE": "a b"}, "invalid namespace 'a b' (from the environment variable STREAMML_NAMESPACE)"),
])
def test_a_bad_environment_variable_is_named(env: dict[str, str], message: str, files: Path,
                                              closed_port: int) -> None:
    res = _run(["-b", B.format(port=closed_port), "topics"], files, env_extra=env)
    assert res.returncode == EXIT_USAGE, res.stderr
    assert message in _one_error(res)


def test_a_command_section_default_is_shown_in_help_and_names_its_hints(files: Path) -> None:
    res = _run(["--config", str(files / "section.toml"), "serve", "--help"], files)
    assert res.returncode == 0, res.stderr
    assert "[default: at-least-once]" in " ".join(res.stdout.split())
    res = _run(["--config", str(files / "section-key.toml"), "topics"], files)
    assert "hint: options of 'streamml serve': also, batch-size," in res.stderr and "guarantee" in res.stderr
