"""Find or fetch the Apache Kafka jars that the local cluster runs on.

Order: ``$KAFKA_HOME/libs`` when the user has a distribution; else the per-version
cache ``<cache_dir>/kafka-<version>/libs``, filled once from Maven Central by the
``pom.xml`` shipped beside this module (``mvn dependency:copy-dependencies``).
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

__all__ = ["java_version", "kafka_classpath", "fetch_kafka"]


def java_version(java: str = "java") -> int:
    """The major version of ``java`` on PATH; raises MissingToolError when absent or < 17."""
    exe = shutil.which(java) or (
        str(Path(os.environ["JAVA_HOME"]) / "bin" / "java") if os.environ.get("JAVA_HOME") else None
    )
    if not exe or not Path(exe).exists():
        raise MissingToolError(
            "Java was not found", hint="install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
        )
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=60)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise MissingToolError(f"cannot tell the version of {exe}: {out.stderr.strip()[:200]}")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise MissingToolError(f"Java {major} found at {exe}; Kafka 4 needs Java 17 or newer",
                               hint="install openjdk-17 or set JAVA_HOME")
    return major


def _libs_ok(libs: Path) -> bool:
    return libs.is_dir() and any(p.name.startswith("kafka_2.13-") for p in libs.glob("*.jar"))


def kafka_classpath(version: str, cache_dir: Path, *, fetch: bool = True) -> Path:
    """The folder of jars to put on the classpath, fetching them when needed."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home).expanduser() / "libs"
        if not _libs_ok(libs):
            raise ProvisioningError(f"KAFKA_HOME={home} has no libs/kafka_2.13-*.jar",
                                    hint="point KAFKA_HOME at an unpacked Apache Kafka distribution")
        return libs
    libs = cache_dir / f"kafka-{version}" / "libs"
    if _libs_ok(libs):
        return libs
    if not fetch:
        raise ProvisioningError(f"Kafka {version} is not in the cache {libs.parent}")
    return fetch_kafka(version, cache_dir)


def fetch_kafka(version: str, cache_dir: Path) -> Path:
    """Resolve ``kafka_2.13:<version>`` and Log4j 2 from Maven Central into the cache."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError(
            "Maven (mvn) was not found; it fetches Kafka from Maven Central",
            hint="install Maven (Debian: apt-get install maven) or set KAFKA_HOME to a Kafka distribution",
        )
    target = cache_dir / f"kafka-{version}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    pom = resources.files("streamml.kafka").joinpath("pom.xml")
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as tmp, resources.as_file(pom) as pom_path:
        out = Path(tmp) / "libs"
        cmd = [mvn, "-q", "-B", "-f", str(pom_path), f"-Dkafka.version={version}",
               "dependency:copy-dependencies", f"-DoutputDirectory={out}", "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if proc.returncode != 0 or not _libs_ok(out):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise ProvisioningError(f"Maven could not fetch Kafka {version}:\n{tail}",
                                    hint="check that Maven Central is reachable, or set KAFKA_HOME")
        target.mkdir(parents=True, exist_ok=True)
        final = target / "libs"
        if not _libs_ok(final):  # another process may have won the race
            if final.exists():
                shutil.rmtree(final)
            out.rename(final)
    return target / "libs"
