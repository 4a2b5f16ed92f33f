"""Without an optional integration installed, the core still imports and runs, and the feature
that needs it ends in one error line naming the extra to install.

Each case runs in a fresh interpreter in which the integration's module cannot be imported
(``sys.modules[name] = None`` makes every import of it fail, as if it were not installed).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


def run_without(modules: list[str], code: str) -> subprocess.CompletedProcess[str]:
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


CORE = """
import streamml, streamml.ingest, streamml.serve, streamml.monitor, streamml.train, streamml.query
import streamml.stream, streamml.registry, streamml.cli.main
from streamml.ingest import transactions, MqttBridge
print("core ok", next(transactions(seed=1)).record["event_id"])
"""


def test_the_core_imports_without_any_integration() -> None:
    r = run_without(["fastapi", "uvicorn", "starlette", "paho", "cryptography", "river", "pandas", "torch",
                     "keras"], CORE)
    assert r.returncode == 0, r.stderr
    assert "core ok tx1-000000000" in r.stdout


def test_cli_help_works_without_the_http_extra() -> None:
    r = run_without(["fastapi", "uvicorn"], "from streamml.cli.main import main; main(['--help'])")
    assert r.returncode == 0, r.stderr
    assert "serve" in r.stdout and "ingest" in r.stdout


def as_cli(body: str) -> str:
    """``body`` run the way the CLI reports a StreamMLError (its one error line and exit code)."""
    return ("from streamml.cli.common import print_error\nfrom streamml.config import Settings\n"
            "from streamml.errors import StreamMLError\ntry:\n" + textwrap.indent(body, "    ")
            + "\nexcept StreamMLError as e:\n    print_error(e.message, hint=e.hint); sys.exit(e.exit_code)\n")


@pytest.mark.parametrize(("blocked", "code", "needs", "extra"), [
    (["fastapi"], "from streamml.cli.main import main; main(['ingest', 'http', '--no-auth'])",
     "HTTP ingest needs fastapi", "http"),
    (["fastapi"], as_cli("from streamml.monitor.dashboard import create_app\n"
                         "create_app(Settings.load(config_file=None))"),
     "the dashboard needs fastapi", "http"),
    (["paho"], as_cli("from streamml.ingest import MqttBridge\nMqttBridge(Settings.load(config_file=None), 'sensors')"),
     "the MQTT bridge needs paho", "mqtt"),
    (["cryptography"], as_cli("import streamml.kafka.tls"),
     "TLS certificate generation needs cryptography", "secure"),
])
def test_a_missing_extra_is_one_error_naming_it(blocked: list[str], code: str, needs: str, extra: str) -> None:
    r = run_without(blocked, code)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert lines[0].startswith("error: ") and needs in lines[0], r.stderr
    assert f"pip install 'streamml[{extra}]'" in lines[1], r.stderr


def test_a_missing_extra_is_still_an_import_error() -> None:
    """Code that tolerates a missing module (``except ImportError``) keeps working."""
    r = run_without(["fastapi"], """
        try:
            import streamml.serve.http
        except ImportError as exc:
            print(type(exc).__name__, exc.name)
        """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "MissingExtraError fastapi"
