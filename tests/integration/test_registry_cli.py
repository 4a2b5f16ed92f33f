"""``streamml train`` and ``streamml models ...`` as a user runs them: real processes, real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import orjson
import pytest
from test_train_jobs import load_topics  # noqa: E402  (same folder, on sys.path)

from streamml.config import Settings
from streamml.registry import Registry


def sm(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamml", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    e.update(STREAMML_BOOTSTRAP_SERVERS=settings.bootstrap_servers or "", STREAMML_NAMESPACE=settings.namespace,
             STREAMML_HOME=str(settings.home), COLUMNS="220")
    return e


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the CLI in this process (the command tree is the same as the installed script's)."""
    from streamml.cli import common
    from streamml.cli.main import main

    for k, v in env.items():
        if k.startswith("STREAMML_"):
            monkeypatch.setenv(k, v)
    monkeypatch.setattr(common.console, "width", 220)
    monkeypatch.setattr(common.err_console, "width", 220)

    def run(*args: str) -> Run:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Run(code, out.out, out.err)

    return run


def test_train_then_list_show_promote_rollback_diff(settings: Settings, env: dict[str, str], cli) -> None:  # type: ignore[no-untyped-def]
    load_topics(settings, 1200)
    r = sm("train", "fraud", "--features", "pay", "-l", "pay", "-c", "amount,velocity,distance,hour", env=env)
    assert r.returncode == 0, r.stderr
    assert "fraud@1" in r.stdout and "promoted to production" in r.stdout
    r = cli("train", "fraud", "--features", "pay", "-l", "pay", "--trainer", "isolation_forest", "--margin", "0.5")
    assert r.returncode == 0, r.stderr
    assert "fraud@2" in r.stdout and "kept as candidate" in r.stdout
    r = cli("models", "list")
    assert r.returncode == 0 and "production" in r.stdout and "candidate" in r.stdout and "kept out" in r.stdout
    r = cli("models", "show", "fraud@2")
    assert r.returncode == 0 and "not promoted" in r.stdout and "trained on" in r.stdout
    shown = orjson.loads(cli("models", "show", "fraud", "-f", "json").stdout)
    assert shown["version"] == 1 and shown["stage"] == "production"
    assert cli("models", "promote", "fraud", "2").returncode == 0
    assert Registry(settings).latest("fraud").version == 2
    r = cli("models", "rollback", "fraud")
    assert r.returncode == 0 and "fraud@1 is production again" in r.stdout
    r = cli("models", "diff", "fraud@1", "fraud@2")
    assert r.returncode == 0 and "sha256" in r.stdout and "trainer" in r.stdout
    r = sm("models", "rollback", "fraud", env=env)
    assert r.returncode == 1 and "no earlier production version" in r.stderr and "Traceback" not in r.stderr
    r = cli("models", "show", "nope@3")
    assert r.returncode == 1 and "not in" in r.stderr
