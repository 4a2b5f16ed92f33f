"""A real Confluent-compatible Schema Registry on loopback: Apicurio Registry, from Maven Central.

Apicurio publishes its server on Maven Central as ``io.apicurio:apicurio-registry-app:<v>:tar.gz:all``,
a Quarkus fast-jar (``lib/boot``, ``lib/main``, ``quarkus/``). streamml fetches it once with
Maven (the ``apicurio-pom.xml`` shipped beside this module) into ``<cache_dir>/apicurio-registry-<v>``
and runs it with in-memory H2 storage. Its Confluent Schema Registry API, the one that
confluent-kafka's ``SchemaRegistryClient`` speaks, is at ``http://127.0.0.1:<port>/apis/ccompat/v7``.

Apicurio Registry 3.x is built for Java 21: :func:`registry_java` looks for a Java 21+ in
``$STREAMML_REGISTRY_JAVA``, ``$JAVA_HOME``, ``PATH`` and ``/usr/lib/jvm``. Where only Java 17
is found, :func:`choose_server` takes Apicurio Registry 2.6 instead (the same Confluent API,
in-memory storage, a Quarkus legacy jar: ``*-runner.jar`` beside ``lib/``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import IO

from streamml.errors import MissingToolError, ProvisioningError

__all__ = ["APICURIO_VERSION", "APICURIO_JAVA17_VERSION", "CCOMPAT_PATH", "MIN_JAVA", "RegistryServer",
           "fetch_apicurio", "apicurio_home", "registry_java", "choose_server", "min_java"]

APICURIO_VERSION = "3.3.3"
APICURIO_JAVA17_VERSION = "2.6.13.Final"  # the newest line that runs on Java 17
CCOMPAT_PATH = "/apis/ccompat/v7"
MIN_JAVA = 21


def min_java(version: str) -> int:
    """The Java that an Apicurio Registry version needs: 21 for 3.x, 17 before."""
    return 21 if int(version.split(".")[0]) >= 3 else 17


def _java_major(exe: str) -> int | None:
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=60)
    except OSError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def registry_java(minimum: int = MIN_JAVA) -> str:
    """A ``java`` executable of version ``minimum`` or newer; raises MissingToolError when none is found."""
    candidates: list[str] = []
    for var in ("STREAMML_REGISTRY_JAVA",):
        if os.environ.get(var):
            candidates.append(os.environ[var])
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        candidates += [str(p / "bin" / "java") for p in sorted(jvm.iterdir(), reverse=True)]
    seen: list[str] = []
    for exe in candidates:
        if exe in seen or not Path(exe).exists():
            continue
        seen.append(exe)
        major = _java_major(exe)
        if major is not None and major >= minimum:
            return exe
    raise MissingToolError(
        f"Apicurio Registry needs Java {minimum}+; none was found"
        + (f" (tried {', '.join(seen)})" if seen else ""),
        hint=f"install a Java {minimum}+ runtime and set STREAMML_REGISTRY_JAVA or JAVA_HOME to it")


def choose_server(version: str | None = None) -> tuple[str, str]:
    """``(version, java)``: the given version and a Java for it, or by default Apicurio Registry
    3.x on Java 21+, else 2.6 on Java 17. ``$STREAMML_REGISTRY_VERSION`` names a version too."""
    version = version or os.environ.get("STREAMML_REGISTRY_VERSION") or None
    if version is not None:
        return version, registry_java(min_java(version))
    try:
        return APICURIO_VERSION, registry_java(min_java(APICURIO_VERSION))
    except MissingToolError:
        return APICURIO_JAVA17_VERSION, registry_java(min_java(APICURIO_JAVA17_VERSION))


def _runner(home: Path) -> Path | None:
    """The legacy-jar runner (Apicurio 2.x), or None for a fast-jar (3.x)."""
    found = sorted(home.glob("*-runner.jar"))
    return found[0] if found else None


def _home_ok(home: Path) -> bool:
    if _runner(home) is not None:
        return (home / "lib").is_dir()
    return (home / "quarkus" / "quarkus-application.dat").is_file() and any(
        (home / "lib" / "boot").glob("io.quarkus.quarkus-bootstrap-runner-*.jar"))


def apicurio_home(cache_dir: Path, version: str = APICURIO_VERSION, *, fetch: bool = True) -> Path:
    """The unpacked Apicurio Registry server in the cache, fetched from Maven Central when needed."""
    home = Path(cache_dir) / f"apicurio-registry-{version}"
    if _home_ok(home):
        return home
    if not fetch:
        raise ProvisioningError(f"Apicurio Registry {version} is not in the cache {home}")
    return fetch_apicurio(version, Path(cache_dir))


def fetch_apicurio(version: str, cache_dir: Path) -> Path:
    """Copy ``apicurio-registry-app:<version>:tar.gz:all`` from Maven Central and unpack it into the cache."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MissingToolError("Maven (mvn) was not found; it fetches Apicurio Registry from Maven Central",
                               hint="install Maven (Debian: apt-get install maven)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"apicurio-registry-{version}"
    pom = resources.files("streamml.schema").joinpath("apicurio-pom.xml")
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".fetch-") as tmp, resources.as_file(pom) as pom_path:
        out = Path(tmp) / "dl"
        cmd = [mvn, "-q", "-B", "-f", str(pom_path), "dependency:copy",
               f"-Dartifact=io.apicurio:apicurio-registry-app:{version}:tar.gz:all", f"-DoutputDirectory={out}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        archives = list(out.glob("*.tar.gz")) if out.is_dir() else []
        if proc.returncode != 0 or not archives:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise ProvisioningError(f"Maven could not fetch Apicurio Registry {version}:\n{tail}",
                                    hint="check that Maven Central is reachable")
        unpacked = Path(tmp) / "home"
        with tarfile.open(archives[0]) as tar:
            tar.extractall(unpacked, filter="data")
        if not _home_ok(unpacked):
            raise ProvisioningError(f"the Apicurio Registry {version} archive is neither a Quarkus fast-jar "
                                    "(quarkus/quarkus-application.dat, lib/boot) nor a legacy jar (*-runner.jar)")
        if not _home_ok(final):  # another process may have won the race
            if final.exists():
                shutil.rmtree(final)
            unpacked.rename(final)
    return final


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RegistryServer:
    """One Apicurio Registry process on loopback, in-memory storage (gone when it stops).

    >>> RegistryServer(Path("/tmp/x"), port=18081).url
    'http://127.0.0.1:18081/apis/ccompat/v7'
    """

    def __init__(self, workdir: Path, *, port: int | None = None, host: str = "127.0.0.1",
                 cache_dir: Path | None = None, version: str | None = None, heap: str = "512m") -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or _free_port(host)
        self.cache_dir = cache_dir
        self.version = version
        self.heap = heap
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The Confluent-compatible API root, for ``SchemaRegistryClient({"url": ...})``."""
        return f"http://{self.host}:{self.port}{CCOMPAT_PATH}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    def command(self, home: Path, java: str) -> list[str]:
        """The java command line; storage is each version's default, in memory (H2 in 3.x)."""
        runner = _runner(home)
        main = (["-jar", str(runner)] if runner is not None else
                ["-cp", str(home / "lib" / "boot" / "*"), "io.quarkus.bootstrap.runner.QuarkusEntryPoint"])
        return [java, f"-Xmx{self.heap}",
                f"-Dquarkus.http.host={self.host}", f"-Dquarkus.http.port={self.port}",
                # the management interface (health, metrics) would take 0.0.0.0:9000 otherwise
                f"-Dquarkus.management.host={self.host}", f"-Dquarkus.management.port={_free_port(self.host)}",
                *main]

    def start(self, timeout: float = 180.0) -> "RegistryServer":
        if self.proc is not None and self.proc.poll() is None:
            return self
        from streamml.config import Settings

        cache = self.cache_dir or Settings.load(config_file=None).cache_dir
        self.version, java = choose_server(self.version)
        home = apicurio_home(cache, self.version)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(home, java), cwd=self.workdir, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
                self.stop()
                raise ProvisioningError(f"Apicurio Registry exited with code {code}:\n{tail}")
            if self.ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise ProvisioningError(f"Apicurio Registry did not answer on {self.url} within {timeout:.0f}s",
                                hint=f"see {self.log_path}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "RegistryServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
