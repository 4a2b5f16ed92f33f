"""Flink's Kafka SQL connector jar: resolved once from Maven Central, cached per version, put on ``pipeline.jars``.

The same mechanism as the Kafka jars of the local cluster and Spark's connector
(:mod:`streamml.spark.connector`): ``mvn dependency:copy-dependencies`` over the ``pom.xml``
shipped beside this module, into ``<cache_dir>/flink-kafka-<connector version>/jars``.
``flink-sql-connector-kafka`` is a shaded jar (it carries ``kafka-clients``); Flink itself is a
*provided* dependency, so only the connector jar is kept.

The Kafka connector is released apart from Flink and named ``<connector>-<flink major.minor>``
(``5.0.0-2.2`` is built for Flink 2.2). :data:`CONNECTORS` maps a Flink major.minor to the
connector release used with it; a Flink newer than the table gets the newest release of the
same major (for Flink 2.3, ``5.0.0-2.2``: Maven Central has no ``-2.3`` build yet), and the
environment variable ``STREAMML_FLINK_KAFKA_CONNECTOR`` overrides the choice.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from streamml.errors import MissingToolError, ProvisioningError
from streamml.kafka.distribution import java_version

__all__ = ["connector_jars", "connector_version", "fetch_connector", "CONNECTOR", "CONNECTORS"]

CONNECTOR = "flink-sql-connector-kafka"
#: Flink major.minor -> the Kafka connector release built for it (Maven Central, org.apache.flink).
CONNECTORS = {"1.19": "3.3.0-1.19", "1.20": "3.4.0-1.20", "2.0": "4.0.1-2.0", "2.1": "5.0.0-2.1",
              "2.2": "5.0.0-2.2"}
ENV_OVERRIDE = "STREAMML_FLINK_KAFKA_CONNECTOR"


def connector_version(flink_version: str) -> str:
    """The connector release for ``flink_version`` (see the module docstring).

    >>> connector_version("2.2.0"), connector_version("2.3.0"), connector_version("1.20.1")
    ('5.0.0-2.2', '5.0.0-2.2', '3.4.0-1.20')
    """
    override = os.environ.get(ENV_OVERRIDE)
    if override:
        return override
    major, minor = (int(x) for x in re.findall(r"\d+", flink_version)[:2])
    exact = CONNECTORS.get(f"{major}.{minor}")
    if exact:
        return exact
    same_major = sorted((tuple(int(x) for x in k.split(".")), v) for k, v in CONNECTORS.items()
                        if int(k.split(".")[0]) == major and int(k.split(".")[1]) < minor)
    if not same_major:
        raise ProvisioningError(f"no Flink Kafka connector is known for Flink {flink_version}",
                                hint=f"set {ENV_OVERRIDE} to a release of org.apache.flink:{CONNECTOR}")
    return same_major[-1][1]


def _ok(folder: Path) -> bool:
    return folder.is_dir() and any(p.name.startswith(CONNECTOR) for p in folder.glob("*.jar"))


def _pyflink_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("apache-flink")
    except PackageNotFoundError:
        from streamml.flink.env import require_pyflink

        require_pyflink()
        raise


def connector_jars(cache_dir: Path, flink_version: str | None = None, *, fetch: bool = True) -> list[Path]:
    """The jars to put on ``pipeline.jars`` (``flink run --jarfile`` on a cluster), fetched when needed."""
    version = connector_version(flink_version or _pyflink_version())
    base = cache_dir / f"flink-kafka-{version}" / "jars"
    if not _ok(base):
        if not fetch:
            raise ProvisioningError(f"Flink's Kafka connector {version} is not in the cache {base}",
                                    hint="run once with fetch=True (needs Maven and Maven Central)")
        fetch_connector(version, cache_dir)
    return sorted(base.glob(f"{CONNECTOR}*.jar"))


def fetch_connector(version: str, cache_dir: Path) -> Path:
    """Resolve connector release ``version`` from Maven Central into the cache; returns the folder."""
    java_version()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError("Maven (mvn) was not found; it fetches Flink's Kafka connector from Maven Central",
                               hint="install Maven (Debian: apt-get install maven)")
    target = cache_dir / f"flink-kafka-{version}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    pom = resources.files("streamml.flink").joinpath("pom.xml")
    with resources.as_file(pom) as pom_path, tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-flink-") as tmp:
        out = Path(tmp) / "jars"
        cmd = [mvn, "-q", "-B", "-f", str(pom_path), f"-Dconnector.version={version}", "dependency:copy-dependencies",
               f"-DoutputDirectory={out}", "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0 or not _ok(out):
            text = proc.stdout + proc.stderr
            tail = next((ln for ln in text.splitlines() if "[ERROR]" in ln), text)[-400:]
            raise ProvisioningError(f"Maven could not fetch org.apache.flink:{CONNECTOR}:{version}: {tail}",
                                    hint=f"check that Maven Central is reachable, or set {ENV_OVERRIDE}")
        for jar in out.glob("*.jar"):
            if not jar.name.startswith(CONNECTOR):
                jar.unlink()
        (out / "CONNECTOR_VERSION").write_text(version + "\n")
        target.mkdir(parents=True, exist_ok=True)
        final = target / "jars"
        if not _ok(final):  # another process may have won the race
            if final.exists():
                shutil.rmtree(final)
            out.rename(final)
        return final
