"""The examples run as users run them: every ``examples/*.py`` script, and the notebook through nbclient.

Each run gets the test broker (``STREAMML_BOOTSTRAP_SERVERS``) and a namespace of its own
(``STREAMML_NAMESPACE``), in the environment of the script or of the notebook's kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def _env(bootstrap: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMML_")}
    env.update(STREAMML_BOOTSTRAP_SERVERS=bootstrap, STREAMML_NAMESPACE="ex" + uuid.uuid4().hex[:10],
               STREAMML_HOME=str(tmp_path / "home"), COLUMNS="160", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_example_script(script: Path, bootstrap: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(bootstrap, tmp_path), timeout=180)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"


def _kernel_name(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A kernel spec that runs this interpreter (the venv's python), written to a private dir."""
    import json

    spec_dir = tmp_path / "jupyter" / "kernels" / "streamml-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "streamml tests", "language": "python"}))
    return "streamml-test", {"JUPYTER_PATH": str(tmp_path / "jupyter")}


def test_fraud_walkthrough_notebook(bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    name, extra = _kernel_name(tmp_path)
    for k, v in extra.items():
        monkeypatch.setenv(k, v)  # the kernel spec manager looks here for our spec
    nb = nbformat.read(EXAMPLES / "fraud_walkthrough.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=150, kernel_name=name,
                                     resources={"metadata": {"path": str(tmp_path)}})
    env = {**_env(bootstrap, tmp_path), **extra}
    try:
        client.execute(env=env)
    except nbclient.exceptions.CellExecutionError as exc:
        pytest.fail(f"the notebook failed:\n{str(exc)[-4000:]}")
    outputs = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "identical to the preview" in outputs
    assert "new predictions" in outputs and "promoted=True" in outputs
    assert "fraud-ae v1 (onnx)" in outputs  # the PyTorch section trained and published its autoencoder
    # the ksqlDB section: the deployed windowed aggregation wrote the preview's rows, which were scored
    assert "window rows written by the deployed query, identical to the preview" in outputs
    assert "window rows scored into predictions.fraud-windows" in outputs
