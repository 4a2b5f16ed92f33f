"""Spark's Kafka connector jars: resolved once from Maven Central, cached per version, put on ``spark.jars``.

The Kafka jars of the local cluster come the same way (:mod:`streamml.kafka.distribution`):
``mvn dependency:copy-dependencies`` over the ``pom.xml`` shipped beside this module, into
``<cache_dir>/spark-kafka-<version>/jars``. Spark itself is a *provided* dependency of the
connector, so only the connector, ``kafka-clients``, the token provider and commons-pool2
are kept; a jar PySpark already ships (Scala, Hadoop, lz4, snappy, slf4j...) is dropped, so
the classpath never holds two versions of one library.

Why not ``spark.jars.packages``: that resolves through Ivy at every session start (network,
lock files in ``~/.ivy2``, a minute on a cold cache) and fails offline; a cached folder of
jars starts in no time, works offline and is the same on the driver and on ``spark-submit
--jars``.

The connector version follows PySpark's. When Maven Central has no connector of that exact
version yet (PyPI releases can run ahead of Central), the newest release of the same
major.minor, then of the same major, is used, and :func:`connector_jars` says which.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from streamml.errors import MissingToolError, ProvisioningError
from streamml.kafka.distribution import java_version

__all__ = ["connector_jars", "fetch_connector", "CONNECTOR"]

CONNECTOR = "spark-sql-kafka-0-10_2.13"
_log = logging.getLogger("streamml.spark")
_KEEP = ("spark-sql-kafka-0-10", "spark-token-provider-kafka-0-10", "kafka-clients", "commons-pool2")


def _artifact(jar: str) -> str:
    """``kafka-clients-3.9.2.jar`` -> ``kafka-clients``.

    >>> _artifact("kafka-clients-3.9.2.jar"), _artifact("spark-sql-kafka-0-10_2.13-4.2.0.jar")
    ('kafka-clients', 'spark-sql-kafka-0-10_2.13')
    """
    return re.sub(r"-\d+(?:\.\d+)+(?:[-.][A-Za-z0-9]+)*\.jar$", "", jar)


def _ok(folder: Path) -> bool:
    return folder.is_dir() and any(p.name.startswith(CONNECTOR) for p in folder.glob("*.jar"))


def _candidates(version: str) -> list[str]:
    """The exact version first, then the same minor's and major's older releases (newest first)."""
    parts = [int(x) for x in re.findall(r"\d+", version)[:3]] + [0, 0, 0]
    major, minor, patch = parts[:3]
    out = [version]
    out += [f"{major}.{minor}.{p}" for p in range(patch - 1, -1, -1)]
    for m in range(minor - 1, -1, -1):
        out += [f"{major}.{m}.{p}" for p in range(3, -1, -1)]
    return list(dict.fromkeys(out))


def connector_jars(cache_dir: Path, spark_version: str | None = None, *, fetch: bool = True) -> list[Path]:
    """The jars to put on ``spark.jars`` for Spark's Kafka source and sink, fetched when needed."""
    if spark_version is None:
        spark_version = _pyspark_version()
    base = cache_dir / f"spark-kafka-{spark_version}" / "jars"
    if not _ok(base):
        if not fetch:
            raise ProvisioningError(f"Spark's Kafka connector for Spark {spark_version} is not in the cache {base}",
                                    hint="run once with fetch=True (needs Maven and Maven Central)")
        fetch_connector(spark_version, cache_dir)
    return sorted(base.glob("*.jar"))


def _pyspark_version() -> str:
    from importlib.metadata import version

    return version("pyspark")


def _pyspark_jars() -> set[str]:
    try:
        import pyspark
    except ImportError:
        return set()
    folder = Path(pyspark.__file__).parent / "jars"
    return {_artifact(p.name) for p in folder.glob("*.jar")}


def fetch_connector(spark_version: str, cache_dir: Path) -> Path:
    """Resolve the connector for ``spark_version`` from Maven Central into the cache; returns the folder."""
    java_version()
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError("Maven (mvn) was not found; it fetches Spark's Kafka connector from Maven Central",
                               hint="install Maven (Debian: apt-get install maven)")
    target = cache_dir / f"spark-kafka-{spark_version}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    pom = resources.files("streamml.spark").joinpath("pom.xml")
    shipped = _pyspark_jars()
    tails: list[str] = []
    with resources.as_file(pom) as pom_path:
        for v in _candidates(spark_version):
            with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-spark-") as tmp:
                out = Path(tmp) / "jars"
                cmd = [mvn, "-q", "-B", "-f", str(pom_path), f"-Dspark.version={v}", "dependency:copy-dependencies",
                       f"-DoutputDirectory={out}", "-DincludeScope=runtime"]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
                if proc.returncode != 0 or not _ok(out):
                    text = proc.stdout + proc.stderr
                    tails.append(f"{v}: " + next((ln for ln in text.splitlines() if "[ERROR]" in ln), text)[-300:])
                    if "Could not find artifact" not in text and "was not found in" not in text:
                        break  # not a missing version: Maven or the network failed
                    continue
                for jar in out.glob("*.jar"):
                    name = _artifact(jar.name)
                    if name in shipped or not name.startswith(_KEEP):
                        jar.unlink()
                if v != spark_version:
                    _log.warning("Maven Central has no %s %s; using %s", CONNECTOR, spark_version, v)
                (out / "CONNECTOR_VERSION").write_text(v + "\n")
                target.mkdir(parents=True, exist_ok=True)
                final = target / "jars"
                if not _ok(final):  # another process may have won the race
                    if final.exists():
                        shutil.rmtree(final)
                    out.rename(final)
                return final
    raise ProvisioningError(f"Maven could not fetch {CONNECTOR} for Spark {spark_version}:\n" + "\n".join(tails),
                            hint="check that Maven Central is reachable")
