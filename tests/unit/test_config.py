"""Settings precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streamml.config import Settings, topic_name
from streamml.errors import ConfigError


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "streamml.toml"
    cfg.write_text('namespace = "fromfile"\nbootstrap_servers = "file:9092"\nlocal_port = 1234\n'
                   '[kafka]\n"security.protocol" = "SSL"\n')
    env = {"STREAMML_BOOTSTRAP_SERVERS": "env:9092", "STREAMML_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512"}
    s = Settings.load(env=env, config_file=cfg, overrides={"namespace": "fromflag"})
    assert s.namespace == "fromflag"            # flag beats file
    assert s.bootstrap_servers == "env:9092"    # env beats file
    assert s.local_port == 1234                 # file beats default
    assert s.kafka == {"security.protocol": "SSL", "sasl.mechanism": "SCRAM-SHA-512"}
    assert s.client_config()["bootstrap.servers"] == "env:9092"


def test_config_file_found_through_env(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text('[streamml]\nnamespace = "shop"\n')
    assert Settings.load(env={"STREAMML_CONFIG": str(cfg)}).namespace == "shop"


@pytest.mark.parametrize("text, message", [
    ('namespace = "a b"', "invalid namespace"),
    ("local_port = 'abc'", "must be a whole number"),
    ("bogus = 1", "unknown setting(s) bogus"),
    ("local_nodes = 2", "bad.toml:1 must be 1 or 3, got 2"),
    ("namespace = ", "not valid TOML"),
    ("home = 5", "setting home in {cfg}:1 must be a path (a string), got 5"),
    ("local_port = 99999", "setting local_port in {cfg}:1 is out of range, got 99999"),
    ("bootstrap_servers = 9092", "setting bootstrap_servers in {cfg}:1 must be a string, got 9092"),
])
def test_bad_settings_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        Settings.load(env={}, config_file=cfg)
    assert message.format(cfg=cfg) in str(info.value)
    assert info.value.hint


def test_missing_config_file_from_env_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(env={"STREAMML_CONFIG": str(tmp_path / "nope.toml")})


def test_no_bootstrap_servers_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="no bootstrap servers"):
        Settings.load(env={}, config_file=None).client_config()


def test_topic_names() -> None:
    assert topic_name("ns", "models") == "ns.models"
    assert Settings(namespace="ml").topic("predictions", "fraud") == "ml.predictions.fraud"
    with pytest.raises(ConfigError):
        topic_name("ns", "raw", "bad name")


# -- sources named in errors (issue 17: key, value and flag / env var / file:line) ------------

def test_file_errors_name_the_line_of_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "streamml.toml"
    cfg.write_text('# where we run\nnamespace = "ok"\n\nlocal_nodes = 2\n[kafka]\n"linger.ms" = 5\n')
    with pytest.raises(ConfigError) as info:
        Settings.load(env={}, config_file=cfg)
    assert info.value.message == f"setting local_nodes in {cfg}:4 must be 1 or 3, got 2"
    assert info.value.hint


def test_file_errors_in_a_streamml_table_name_the_line(tmp_path: Path) -> None:
    cfg = tmp_path / "x.toml"
    cfg.write_text('[serve]\nguarantee = "at-least-once"\n\n[streamml]\nnamespace = 5\n')
    with pytest.raises(ConfigError, match=rf"setting namespace in {tmp_path}/x.toml:5 must be a string, got 5"):
        Settings.load(env={}, config_file=cfg)


def test_unknown_setting_names_its_line_and_points_at_sections(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('namespace = "a"\nguarantee = "at-least-once"\n')
    with pytest.raises(ConfigError) as info:
        Settings.load(env={}, config_file=cfg)
    assert info.value.message == f"unknown setting(s) guarantee in {cfg}:2"
    assert "[serve]" in (info.value.hint or "")


@pytest.mark.parametrize("env, message", [
    ({"STREAMML_LOCAL_PORT": "abc"},
     "setting local_port in the environment variable STREAMML_LOCAL_PORT must be a whole number, got 'abc'"),
    ({"STREAMML_NAMESPACE": "a b"}, "invalid namespace 'a b' (from the environment variable STREAMML_NAMESPACE)"),
    ({"STREAMML_LOCAL_NODES": "2"},
     "setting local_nodes in the environment variable STREAMML_LOCAL_NODES must be 1 or 3, got '2'"),
    ({"STREAMML_KAFKA": "x"}, "setting kafka in the environment variable STREAMML_KAFKA is not a JSON object"),
])
def test_env_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(env=env, config_file=None)
    assert info.value.message.startswith(message), info.value.message


def test_flag_errors_name_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"invalid namespace 'a b' \(from --namespace\)"):
        Settings.load(env={}, config_file=None, overrides={"namespace": "a b"}, sources={"namespace": "--namespace"})


def test_env_values_are_converted_and_empty_ones_ignored(tmp_path: Path) -> None:
    s = Settings.load(env={"STREAMML_LOCAL_PORT": "9093", "STREAMML_NAMESPACE": "", "STREAMML_HOME": "~/h"},
                      config_file=None)
    assert (s.local_port, s.namespace, s.home) == (9093, "streamml", Path("~/h").expanduser())


def test_direct_construction_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMML_NAMESPACE", "fromenv")
    assert Settings(bootstrap_servers="b:1").namespace == "streamml"
    assert Settings.load(config_file=None).namespace == "fromenv"


def test_with_keeps_the_config_file_and_validates(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text("[serve]\nbatch-size = 7\n")
    s = Settings.load(env={}, config_file=cfg).with_(namespace="b")
    assert s.namespace == "b" and s.config_file is not None and s.config_file.sections == {"serve": {"batch-size": 7}}
    with pytest.raises(ValidationError):
        s.with_(local_nodes=2)


# -- per-command sections ----------------------------------------------------------------------

def _resolved(cfg: Path, path: list[str], args: list[str]) -> dict[str, object]:
    """A command's option values as click resolves them under the root's default_map (no invoke)."""
    from typer._click import core
    from typer.main import get_command

    from streamml.cli.main import app
    from streamml.cli.sections import command_defaults

    root = get_command(app)
    file = Settings.load(env={}, config_file=cfg).config_file
    assert file is not None
    ctx = core.Context(root, info_name="streamml", default_map=command_defaults(root, file))
    cmd = root
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
        ctx = (cmd.make_context(name, args, parent=ctx) if name == path[-1]
               else core.Context(cmd, parent=ctx, info_name=name))
    return dict(ctx.params)


def _value(choice: object) -> object:
    return getattr(choice, "value", choice)


def test_a_command_section_supplies_option_defaults_and_flags_win(tmp_path: Path) -> None:
    cfg = tmp_path / "streamml.toml"
    cfg.write_text('namespace = "shop"\n\n[serve]\nguarantee = "at-least-once"\nbatch_size = 77\n'
                   'keep = "id"\n\n[ingest.file]\nrate = 50.0\n')
    got = _resolved(cfg, ["serve"], ["--model", "m"])
    assert (_value(got["guarantee"]), got["batch_size"], got["keep"]) == ("at-least-once", 77, ["id"])
    got = _resolved(cfg, ["serve"], ["--model", "m", "--guarantee", "exactly-once", "--batch-size", "5"])
    assert (_value(got["guarantee"]), got["batch_size"]) == ("exactly-once", 5)
    assert _resolved(cfg, ["ingest", "file"], ["x.csv", "--stream", "s"])["rate"] == 50.0
    assert _value(_resolved(cfg, ["run"], ["app.py"])["guarantee"]) == "exactly-once"  # no [run] section


def test_an_old_option_name_in_a_section_still_works(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "streamml.toml"
    cfg.write_text('[serve]\nmode = "at-least-once"\n')
    assert _value(_resolved(cfg, ["serve"], ["--model", "m"])["guarantee"]) == "at-least-once"
    assert f"warning: mode in [serve] at {cfg}:2 is deprecated, use guarantee" in capsys.readouterr().err


@pytest.mark.parametrize("text, message, hint", [
    ("[serve]\nbogus = 1\n", "unknown option 'bogus' in section [serve] at {cfg}:2", "guarantee, host"),
    ('[serve]\nguarantee = "bogus"\n',
     "option guarantee = 'bogus' in section [serve] at {cfg}:2 is not valid: 'bogus' is not one of", "--help"),
    ("[ingest]\n[ingest.file]\nrate = 5\n[ingest.http]\nratee = 1\n",
     "unknown option 'ratee' in section [ingest.http] at {cfg}:5", "max-body"),
    ("[sevre]\nx = 1\n", "unknown section [sevre] in {cfg}:1", "serve"),
])
def test_a_bad_command_section_is_one_error(tmp_path: Path, text: str, message: str, hint: str) -> None:
    cfg = tmp_path / "streamml.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        _resolved(cfg, ["serve"], ["--model", "m"])
    assert info.value.message.startswith(message.format(cfg=cfg)), info.value.message
    assert hint in (info.value.hint or "")
