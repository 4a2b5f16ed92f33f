"""Settings: one object, one precedence order.

Precedence, highest first:

1. explicit arguments (CLI flags, ``Settings.load(overrides=...)``);
2. environment variables ``STREAMML_<NAME>`` (e.g. ``STREAMML_BOOTSTRAP_SERVERS``);
   librdkafka options pass through as ``STREAMML_KAFKA__<option with dots as _>``,
   e.g. ``STREAMML_KAFKA__SASL_MECHANISM=SCRAM-SHA-512``;
3. a TOML config file: ``$STREAMML_CONFIG``, else ``./streamml.toml``, else
   ``<user config dir>/streamml/config.toml`` (the first one that exists);
4. built-in defaults.

When no bootstrap servers are configured, commands that need a broker use the local
one (``streamml kafka up``) and start it if needed: the embedded default.

>>> s = Settings.load(env={}, overrides={"namespace": "shop"}, config_file=None)
>>> s.namespace, s.bootstrap_servers
('shop', None)
>>> s.topic("raw", "payments")
'shop.raw.payments'
>>> Settings.load(env={"STREAMML_KAFKA__SASL_MECHANISM": "PLAIN"}, config_file=None).kafka
{'sasl.mechanism': 'PLAIN'}
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import platformdirs

from streamml.errors import ConfigError

__all__ = ["Settings", "TOPIC_KINDS", "topic_name"]

TOPIC_KINDS = ("raw", "features", "predictions", "labels", "models", "metrics", "control", "dlq", "changelog")
_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]+$")
DEFAULT_KAFKA_VERSION = "4.3.1"


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


@dataclass(frozen=True)
class Settings:
    """Everything streamml needs to know about where it runs.

    ``bootstrap_servers`` of ``None`` means: the local cluster, started on demand.
    ``kafka`` holds librdkafka options (security and tuning) passed to every client.
    """

    bootstrap_servers: str | None = None
    namespace: str = "streamml"
    kafka: dict[str, str] = field(default_factory=dict)
    home: Path = field(default_factory=_default_home)
    cache_dir: Path = field(default_factory=_default_cache)
    kafka_version: str = DEFAULT_KAFKA_VERSION
    local_port: int = 9092
    local_nodes: int = 1
    schema_registry_url: str | None = None  # a Confluent-compatible Schema Registry (ksqlDB's AVRO format)

    # -- construction ---------------------------------------------------------------
    @classmethod
    def load(
        cls,
        *,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config_file: Path | str | None | bool = True,
    ) -> "Settings":
        """Merge defaults < config file < environment < overrides.

        ``config_file=True`` searches the usual places; a path forces one file;
        ``None`` skips files.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}  # where each value came from, for error messages
        kafka: dict[str, str] = {}
        path = _find_config(env) if config_file is True else (Path(config_file) if config_file else None)
        if path is not None:
            file_values = _read_toml(path)
            kafka.update(_kafka_table(file_values.pop("kafka", {}), path))
            values.update(file_values)
            origin.update(dict.fromkeys(file_values, str(path)))
        for f in fields(cls):
            key = f"STREAMML_{f.name.upper()}"
            if f.name != "kafka" and env.get(key):
                values[f.name] = env[key]
                origin[f.name] = f"the environment variable {key}"
        for key, value in env.items():
            if key.startswith("STREAMML_KAFKA__"):
                kafka[key[len("STREAMML_KAFKA__"):].lower().replace("_", ".")] = value
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key == "kafka":
                kafka.update({k: str(v) for k, v in value.items()})
            else:
                values[key] = value
                origin[key] = "the command line"
        values["kafka"] = kafka
        return cls._coerce(values, source=str(path) if path else "settings", origin=origin)

    @classmethod
    def _coerce(cls, values: dict[str, Any], source: str, origin: Mapping[str, str] | None = None) -> "Settings":
        where = {name: (origin or {}).get(name, source) for name in values}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) {', '.join(unknown)} in {source}",
                hint="known settings: " + ", ".join(sorted(known)),
            )
        out: dict[str, Any] = {}
        for name, value in values.items():
            if name in ("home", "cache_dir"):
                out[name] = Path(str(value)).expanduser()
            elif name in ("local_port", "local_nodes"):
                try:
                    out[name] = int(value)
                except (TypeError, ValueError):
                    raise ConfigError(f"setting {name} in {where[name]} must be a whole number, "
                                      f"got {value!r}") from None
            elif name in ("bootstrap_servers", "namespace", "kafka_version") and not isinstance(value, str):
                raise ConfigError(f"setting {name} in {where[name]} must be a string, got {value!r}",
                                  hint=f'quote it: {name} = "{value}"')
            elif name == "bootstrap_servers":
                out[name] = value.strip() or None
            else:
                out[name] = value
        settings = cls(**out)
        if settings.local_nodes not in (1, 3):
            raise ConfigError(f"setting local_nodes in {where.get('local_nodes', source)} must be 1 or 3, "
                              f"got {settings.local_nodes}")
        if not _NAME_RE.match(settings.namespace):
            raise ConfigError(f"invalid namespace {settings.namespace!r} (from {where.get('namespace', source)})",
                              hint="use letters, digits, '_' and '-' only")
        return settings

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some settings changed."""
        return replace(self, **changes)

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


def _kafka_table(table: Any, path: Path) -> dict[str, str]:
    """The ``[kafka]`` table of a config file: librdkafka option -> value (as text)."""
    if not isinstance(table, dict):
        raise ConfigError(f"setting kafka in {path} must be a table of librdkafka options, got {table!r}",
                          hint='write it as a table: [kafka] then "security.protocol" = "SASL_SSL"')
    out: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, (dict, list)):
            raise ConfigError(f"[kafka] option {key!r} in {path} must be a single value, got {value!r}",
                              hint='quote the whole option name: "sasl.mechanism" = "SCRAM-SHA-512"')
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _find_config(env: Mapping[str, str]) -> Path | None:
    if env.get("STREAMML_CONFIG"):
        path = Path(env["STREAMML_CONFIG"]).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file {path} (from STREAMML_CONFIG) does not exist")
        return path
    for path in (Path("streamml.toml"), Path(platformdirs.user_config_dir("streamml")) / "config.toml"):
        if path.is_file():
            return path
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return dict(data.get("streamml", data))
