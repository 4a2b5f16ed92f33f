"""The Java Kafka client's options for a :class:`~streamml.config.Settings` (Spark's and Flink's connectors).

The engines' Kafka connectors run the Java client, whose option names differ from librdkafka's
in places. :func:`java_client_options` maps the settings' pass-through options that have a Java
meaning (security protocol, SASL PLAIN/SCRAM credentials, a PEM CA file) and leaves the
librdkafka tuning options out; anything else goes in ``extra`` as a Java client option.
"""

from __future__ import annotations

from typing import Mapping

from streamml.config import Settings
from streamml.errors import ConfigError

__all__ = ["java_client_options"]

_PASS = ("security.protocol", "ssl.endpoint.identification.algorithm", "ssl.keystore.location",
         "ssl.keystore.password", "ssl.truststore.location", "ssl.truststore.password")
_JAAS = {"PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
         "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
         "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule"}


def java_client_options(settings: Settings, extra: Mapping[str, str] | None = None, *,
                        engine: str = "the engine") -> dict[str, str]:
    """Java client options (no prefix) from ``settings``, then ``extra``.

    >>> java_client_options(Settings(bootstrap_servers="b:9092", kafka={"linger.ms": "5"}))
    {'bootstrap.servers': 'b:9092'}
    """
    conf = settings.client_config()
    out = {"bootstrap.servers": str(conf["bootstrap.servers"])}
    for k in _PASS:
        if k in conf:
            out[k] = str(conf[k])
    mech = str(conf.get("sasl.mechanism") or conf.get("sasl.mechanisms") or "")
    if mech:
        out["sasl.mechanism"] = mech
    if "sasl.username" in conf:
        module = _JAAS.get(mech.upper())
        if module is None:
            raise ConfigError(f"cannot pass SASL mechanism {mech!r} credentials to {engine}'s Kafka client",
                              hint=f"give {engine} a sasl.jaas.config in its extra options")
        user, pw = (str(conf[k]).replace('"', '\\"') for k in ("sasl.username", "sasl.password"))
        out["sasl.jaas.config"] = f'{module} required username="{user}" password="{pw}";'
    if "ssl.ca.location" in conf:
        out["ssl.truststore.type"] = "PEM"
        out["ssl.truststore.location"] = str(conf["ssl.ca.location"])
    for k, v in (extra or {}).items():
        out[k] = str(v)
    return out
