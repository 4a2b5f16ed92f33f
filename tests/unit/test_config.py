"""Settings precedence and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

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
])
def test_bad_settings_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        Settings.load(env={}, config_file=cfg)
    assert message in str(info.value)


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
