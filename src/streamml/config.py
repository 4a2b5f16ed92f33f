"""Settings: one object, one precedence order.

Precedence, highest first:

1. explicit arguments (CLI flags, ``Settings.load(overrides=...)``);
2. environment variables ``STREAMML_<NAME>`` (e.g. ``STREAMML_BOOTSTRAP_SERVERS``);
   librdkafka options pass through as ``STREAMML_KAFKA__<option with dots as _>``,
   e.g. ``STREAMML_KAFKA__SASL_MECHANISM=SCRAM-SHA-512``;
3. a TOML config file: ``$STREAMML_CONFIG``, else ``./streamml.toml``, else
   ``<user config dir>/streamml/config.toml`` (the first one that exists);
4. built-in defaults.

Settings are one typed pydantic-settings model, validated once after the sources are merged;
a bad value is one :class:`~streamml.errors.ConfigError` naming the setting, the value and its
source (``--namespace``, ``the environment variable STREAMML_NAMESPACE``, ``streamml.toml:3``).
The config file may also hold per-command sections (``[serve]``, ``[ingest.file]`` ...), kept in
:attr:`Settings.config_file` for the command line, which applies them as option defaults.

When no bootstrap servers are configured, commands that need a broker use the local
one (``streamml kafka up``) and start it if needed: the embedded default.

>>> s = Settings.load(env={}, overrides={"namespace": "shop"}, config_file=None)
>>> s.namespace, s.bootstrap_servers
('shop', None)
>>> s.topic("raw", "payments")
'shop.raw.payments'
>>> Settings.load(env={"STREAMML_KAFKA__SASL_MECHANISM": "PLAIN"}, config_file=None).kafka
{'sasl.mechanism': 'PLAIN'}
>>> Settings.load(env={"STREAMML_LOCAL_PORT": "x"}, config_file=None)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
streamml.errors.ConfigError: setting local_port in the environment variable STREAMML_LOCAL_PORT must be ... got 'x' ...
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional

import platformdirs
from pydantic import Field, PrivateAttr, StrictStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from streamml.config_file import ConfigFile
from streamml.errors import ConfigError

__all__ = ["Settings", "TOPIC_KINDS", "topic_name"]

TOPIC_KINDS = ("raw", "features", "predictions", "labels", "models", "metrics", "control", "dlq", "changelog")
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
DEFAULT_KAFKA_VERSION = "4.3.1"
_ENV_PREFIX = "STREAMML_"
_KAFKA_ENV = _ENV_PREFIX + "KAFKA__"


def topic_name(namespace: str, kind: str, name: str | None = None) -> str:
    """Build ``<namespace>.<kind>.<name>`` (or ``<namespace>.<kind>`` for singletons).

    >>> topic_name("ml", "features", "payments")
    'ml.features.payments'
    >>> topic_name("ml", "dlq")
    'ml.dlq'
    >>> topic_name("ml", "bogus", "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamml.errors.ConfigError: unknown topic kind 'bogus' (hint: use one of raw, features, ..., dlq, changelog)
    """
    if kind not in TOPIC_KINDS:
        raise ConfigError(f"unknown topic kind {kind!r}", hint="use one of " + ", ".join(TOPIC_KINDS))
    for part in (namespace, name) if name is not None else (namespace,):
        if not _NAME_RE.match(part):
            raise ConfigError(
                f"invalid topic name part {part!r}", hint="use letters, digits, '_' and '-' only"
            )
    return f"{namespace}.{kind}.{name}" if name is not None else f"{namespace}.{kind}"


def _default_home() -> Path:
    return Path(platformdirs.user_data_dir("streamml"))


def _default_cache() -> Path:
    return Path(platformdirs.user_cache_dir("streamml"))


class Settings(BaseSettings):
    """Everything streamml needs to know about where it runs.

    ``bootstrap_servers`` of ``None`` means: the local cluster, started on demand.
    ``kafka`` holds librdkafka options (security and tuning) passed to every client.
    Constructing ``Settings(...)`` directly uses only the given values and the defaults (no
    environment, no file); :meth:`load` merges all the sources.

    >>> Settings(namespace="ml", home="~/x").home == Path("~/x").expanduser()
    True
    >>> Settings(kafka={"linger.ms": 5, "enable.idempotence": True}).kafka
    {'linger.ms': '5', 'enable.idempotence': 'true'}
    >>> Settings(local_nodes=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for Settings...
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", env_prefix=_ENV_PREFIX,
                                      env_nested_delimiter="__", env_ignore_empty=True, case_sensitive=False)

    bootstrap_servers: Optional[StrictStr] = None
    namespace: StrictStr = "streamml"
    kafka: dict[str, str] = Field(default_factory=dict)
    home: Path = Field(default_factory=_default_home)
    cache_dir: Path = Field(default_factory=_default_cache)
    kafka_version: StrictStr = DEFAULT_KAFKA_VERSION
    local_port: int = Field(default=9092, ge=1, le=65535)
    local_nodes: int = 1
    schema_registry_url: str | None = None  # a Confluent-compatible Schema Registry (ksqlDB's AVRO format)

    _file: Optional[ConfigFile] = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Settings(...) is exactly what it is given; load() reads env and file, knowing each source
        return (init_settings,)

    @field_validator("bootstrap_servers")
    @classmethod
    def _blank_is_local(cls, value: str | None) -> str | None:
        return (value.strip() or None) if value is not None else None

    @field_validator("kafka", mode="before")
    @classmethod
    def _options_as_text(cls, value: Any) -> Any:
        # librdkafka takes every option as text: linger.ms = 5 -> "5", enable.idempotence = true -> "true"
        if isinstance(value, Mapping):
            return {k: str(v).lower() if isinstance(v, bool) else (v if isinstance(v, (dict, list)) else str(v))
                    for k, v in value.items()}
        return value

    @field_validator("namespace")
    @classmethod
    def _namespace_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("invalid namespace")
        return value

    @field_validator("home", "cache_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("local_nodes")
    @classmethod
    def _one_or_three(cls, value: int) -> int:
        if value not in (1, 3):
            raise ValueError("must be 1 or 3")
        return value

    # -- construction ---------------------------------------------------------------
    @classmethod
    def load(
        cls,
        *,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config_file: Path | str | None | bool = True,
        sources: Mapping[str, str] | None = None,
    ) -> "Settings":
        """Merge defaults < config file < environment < overrides, then validate once.

        ``config_file=True`` searches the usual places; a path forces one file; ``None`` skips
        files. ``sources`` names where each override came from (``{"namespace": "--namespace"}``)
        for error messages.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}  # where each value came from, for error messages
        kafka: dict[str, str] = {}
        path = _find_config(env) if config_file is True else (Path(config_file) if config_file else None)
        file = ConfigFile.read(path) if path is not None else None
        if file is not None:
            file_values = dict(file.settings)
            kafka.update(_kafka_table(file_values.pop("kafka", {}), file))
            unknown = sorted(set(file_values) - set(cls.model_fields))
            if unknown:
                raise ConfigError(f"unknown setting(s) {', '.join(unknown)} in {file.where(unknown[0])}",
                                  hint="known settings: " + ", ".join(sorted(cls.model_fields))
                                  + "; a command's options go in its own section, e.g. [serve]")
            values.update(file_values)
            origin.update({key: file.where(key) for key in file_values})
        env_values = _read_env(cls, env)
        for key, value in env_values.pop("kafka", {}).items():
            kafka[key] = value
        values.update(env_values)
        origin.update({key: f"the environment variable {_ENV_PREFIX}{key.upper()}" for key in env_values})
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key == "kafka":
                kafka.update({k: str(v) for k, v in value.items()})
            else:
                values[key] = value
                origin[key] = (sources or {}).get(key, "the arguments")
        values["kafka"] = kafka
        try:
            settings = cls(**values)
        except ValidationError as exc:
            raise _config_error(exc, values, origin) from None
        settings._file = file
        return settings

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some settings changed (validated like any other settings).

        >>> Settings(namespace="a").with_(namespace="b", local_port="9093").local_port
        9093
        """
        copy = type(self)(**{**{name: getattr(self, name) for name in type(self).model_fields}, **changes})
        copy._file = self._file  # noqa: SLF001 (a private attribute of this same class)
        return copy

    @property
    def config_file(self) -> ConfigFile | None:
        """The config file these settings were loaded from, with its command sections."""
        return self._file

    # -- derived --------------------------------------------------------------------
    def topic(self, kind: str, name: str | None = None) -> str:
        """The topic name for ``kind`` and ``name`` in this namespace."""
        return topic_name(self.namespace, kind, name)

    @property
    def cluster_dir(self) -> Path:
        """Where the local cluster keeps its data, logs and pid files."""
        return self.home / "cluster"

    @property
    def state_dir(self) -> Path:
        """Where stream workers keep their local state stores."""
        return self.home / "state"

    def client_config(self) -> dict[str, str]:
        """librdkafka settings common to every client (bootstrap plus pass-through)."""
        if self.bootstrap_servers is None:
            raise ConfigError(
                "no bootstrap servers configured",
                hint="call streamml.connect() or set STREAMML_BOOTSTRAP_SERVERS",
            )
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka}


def _kafka_table(table: Any, file: ConfigFile) -> dict[str, str]:
    """The ``[kafka]`` table of a config file: librdkafka option -> value (as text)."""
    if not isinstance(table, dict):
        raise ConfigError(f"setting kafka in {file.where('kafka')} must be a table of librdkafka options, "
                          f"got {table!r}",
                          hint='write it as a table: [kafka] then "security.protocol" = "SASL_SSL"')
    out: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, (dict, list)):
            raise ConfigError(f"[kafka] option {key!r} in {file.where('kafka', key)} must be a single value, "
                              f"got {value!r}",
                              hint='quote the whole option name: "sasl.mechanism" = "SCRAM-SHA-512"')
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (``load(env=...)``), not os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._given.items() if value != ""}


def _read_env(cls: type[Settings], env: Mapping[str, str]) -> dict[str, Any]:
    """``STREAMML_<NAME>`` values, and ``kafka`` from ``STREAMML_KAFKA__<OPTION_WITH_UNDERSCORES>``."""
    try:
        values = dict(_EnvSource(cls, env)())
    except SettingsError:
        raise ConfigError(f"setting kafka in the environment variable {_ENV_PREFIX}KAFKA is not a JSON object, "
                          f"got {env.get(_ENV_PREFIX + 'KAFKA')!r}",
                          hint=f"set one option per variable: {_KAFKA_ENV}SASL_MECHANISM=PLAIN") from None
    kafka = values.get("kafka")
    if isinstance(kafka, dict):
        values["kafka"] = {key.replace("_", "."): str(value) for key, value in kafka.items()}
    elif kafka is not None:
        values.pop("kafka")
    return values


_HINTS = {
    "bootstrap_servers": 'give HOST:PORT[,HOST:PORT...] as a string, e.g. "broker1:9092,broker2:9092"',
    "namespace": "use letters, digits, '_' and '-' only",
    "kafka": 'a table of librdkafka options: [kafka] then "security.protocol" = "SASL_SSL"',
    "home": "a directory path, as a string",
    "cache_dir": "a directory path, as a string",
    "kafka_version": 'a Kafka release, e.g. "4.3.1"',
    "local_nodes": "the local cluster runs 1 or 3 brokers",
    "local_port": "a TCP port, 1-65535",
}


_REASONS = {  # pydantic error type -> what the setting must be
    "path_type": "must be a path (a string)",
    "dict_type": "must be a table",
    "greater_than_equal": "is out of range",
    "less_than_equal": "is out of range",
}


def _config_error(exc: ValidationError, values: Mapping[str, Any], origin: Mapping[str, str]) -> ConfigError:
    """The first problem of a ValidationError, as one line naming the setting, its value and its source."""
    err = exc.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else "settings"
    value = values.get(key, err.get("input"))
    where = origin.get(key, "the settings")
    kind = err["type"]
    hint = _HINTS.get(key)
    if key == "namespace" and kind == "value_error":
        return ConfigError(f"invalid namespace {value!r} (from {where})", hint=hint)
    if kind == "string_type":
        reason = "must be a string"
        hint = f'quote it: {key} = "{value}"'
    elif kind.startswith("int_"):
        reason = "must be a whole number"
    elif kind in _REASONS:
        reason = _REASONS[kind]
    elif kind == "value_error":
        reason = str(err.get("ctx", {}).get("error", err["msg"]))
    else:
        reason = "is not valid (" + err["msg"][0].lower() + err["msg"][1:] + ")"
    if kind == "extra_forbidden":
        return ConfigError(f"unknown setting(s) {key} in {where}", hint="known settings: " + ", ".join(
            sorted(Settings.model_fields)))
    return ConfigError(f"setting {key} in {where} {reason}, got {value!r}", hint=hint)


def _find_config(env: Mapping[str, str]) -> Path | None:
    if env.get("STREAMML_CONFIG"):
        path = Path(env["STREAMML_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} (from STREAMML_CONFIG) does not exist",
                              hint="point STREAMML_CONFIG at a streamml.toml, or unset it")
        return path
    for path in (Path("streamml.toml"), Path(platformdirs.user_config_dir("streamml")) / "config.toml"):
        if path.is_file():
            return path
    return None
