"""``streamml run app.py --workers N``: run the stream pipelines an app module defines.

The module defines pipelines at module level (``features = stream("payments")...to("x")``)
or an ``app`` attribute holding one pipeline or a list of them. With ``--workers N`` the
command supervises N worker processes (restarting any that die); each worker runs every
selected pipeline, and the consumer group spreads the partitions over the workers. A worker
keeps its index across restarts, which fences its predecessor's transactions.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

import typer

from streamml.cli.common import connected, console, err_console
from streamml.config import Settings
from streamml.errors import ConfigError, PipelineError

__all__ = ["register", "load_pipelines"]


def register(app: typer.Typer) -> None:
    app.command("run")(run_cmd)


def load_pipelines(path: Path, names: list[str] | None = None) -> list[Any]:
    """The pipelines (with a sink) that the module at ``path`` defines."""
    from streamml.stream.pipeline import Pipeline

    if not path.is_file():
        raise ConfigError(f"app file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"streamml_app_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if isinstance(app, Pipeline):
        found = [app]
    elif isinstance(app, (list, tuple)):
        found = [p for p in app if isinstance(p, Pipeline)]
    else:
        found = [v for v in vars(module).values() if isinstance(v, Pipeline) and v.sink_name is not None]
    seen: dict[str, Any] = {}
    for p in found:
        seen.setdefault(p.name, p)
    pipelines = list(seen.values())
    if names:
        missing = set(names) - set(seen)
        if missing:
            raise ConfigError(f"no pipeline named {', '.join(sorted(missing))} in {path}",
                              hint="pipelines: " + ", ".join(seen))
        pipelines = [seen[n] for n in names]
    if not pipelines:
        raise PipelineError(f"{path} defines no pipeline with a sink",
                            hint="define e.g. features = stream('payments')....to('features') at module level")
    return pipelines


def _env_for(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    if settings.bootstrap_servers:
        env["STREAMML_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    env["STREAMML_NAMESPACE"] = settings.namespace
    env["STREAMML_HOME"] = str(settings.home)
    for k, v in settings.kafka.items():
        env["STREAMML_KAFKA__" + k.replace(".", "_").upper()] = v
    return env


def _watchdog(workers: list[Any], index: int, limit_s: float) -> None:
    """Stop this process when one batch runs longer than ``limit_s``: a client call stuck past its
    own timeout (a lost coordinator) would otherwise hold the worker's partitions while its
    heartbeats keep it in the group. The stacks of all threads go to the log first; the
    supervisor restarts the worker, whose new producer fences the stuck transaction."""
    import faulthandler

    def watch() -> None:
        while True:
            time.sleep(1.0)
            now = time.monotonic()
            for w in workers:
                since = w.busy_since
                if since is not None and now - since > limit_s:
                    err_console.print(f"error: worker {index} spent {now - since:.0f}s in one batch of "
                                      f"{w.pipeline.name} (limit {limit_s:.0f}s, --stuck-after); stopping "
                                      "so that it is restarted. Stacks:")
                    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
                    os._exit(1)

    threading.Thread(target=watch, name="watchdog", daemon=True).start()


def _run_worker(settings: Settings, pipelines: list[Any], index: int, guarantee: str, max_batch: int,
                idle_exit: Optional[float], stuck_after: float = 0.0) -> None:
    from streamml.stream.runner import RunOptions, Worker

    opts = RunOptions(guarantee=guarantee, worker=index, max_batch=max_batch)  # type: ignore[arg-type]
    workers = [Worker(p, settings, opts) for p in pipelines]
    if stuck_after > 0:
        _watchdog(workers, index, stuck_after)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: [w.stop() for w in workers])
    errors: list[BaseException] = []

    def one(w: Any) -> None:
        try:
            w.run(idle_exit=idle_exit)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            for other in workers:
                other.stop()

    threads = [threading.Thread(target=one, args=(w,), name=f"stream-{w.pipeline.name}") for w in workers]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
    if errors:
        raise errors[0]


def _supervise(settings: Settings, app_file: Path, args: list[str], workers: int) -> None:
    env = _env_for(settings)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    started: dict[int, float] = {}
    quick_failures: dict[int, int] = {}
    stopping = threading.Event()

    def spawn(i: int) -> None:
        started[i] = time.monotonic()
        procs[i] = subprocess.Popen([sys.executable, "-m", "streamml", "run", str(app_file),
                                     "--worker-index", str(i), *args], env=env)

    def stop(*_: Any) -> None:
        stopping.set()
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for i in range(workers):
        spawn(i)
    console.print(f"running {workers} worker(s) of {app_file}")
    restarts = 0
    while procs:
        time.sleep(0.2)
        for i, p in list(procs.items()):
            rc = p.poll()
            if rc is None:
                continue
            if rc == 0 or stopping.is_set() or rc == 2:
                del procs[i]
                if not stopping.is_set():
                    err_console.print(f"worker {i} exited with {rc}; not restarted")
                continue
            quick_failures[i] = quick_failures.get(i, 0) + 1 if time.monotonic() - started[i] < 10 else 1
            if quick_failures[i] >= 3:
                err_console.print(f"[red]worker {i} keeps failing at start (exit {rc}); stopping[/red]")
                stop()
                for p2 in procs.values():
                    p2.wait(30)
                raise typer.Exit(1)
            else:
                restarts += 1
                err_console.print(f"[yellow]worker {i} exited with {rc}; restarting[/yellow]")
                time.sleep(min(5.0, 0.5 * restarts))
                spawn(i)


def run_cmd(
    ctx: typer.Context,
    app_file: Path = typer.Argument(..., help="Python module that defines pipelines."),
    workers: int = typer.Option(1, "--workers", "-w", help="Worker processes to run."),
    pipeline: Optional[list[str]] = typer.Option(None, "--pipeline", "-p", help="Run only these pipelines."),
    guarantee: str = typer.Option("exactly_once", "--guarantee", help="exactly_once or at_least_once."),
    max_batch: int = typer.Option(10_000, "--max-batch", help="Records per micro-batch at most."),
    idle_exit: Optional[float] = typer.Option(None, "--idle-exit", help="Stop after this many idle seconds."),
    stuck_after: float = typer.Option(180.0, "--stuck-after",
                                      help="Restart a worker whose batch takes longer (seconds; 0: never)."),
    worker_index: Optional[int] = typer.Option(None, "--worker-index", hidden=True),
    describe: bool = typer.Option(False, "--describe", help="Print the topologies and exit."),
) -> None:
    """Run the stream pipelines defined in APP_FILE (exactly-once by default)."""
    if guarantee not in ("exactly_once", "at_least_once"):
        raise ConfigError(f"unknown guarantee {guarantee!r}", hint="exactly_once or at_least_once")
    pipelines = load_pipelines(app_file, pipeline)
    if describe:
        for p in pipelines:
            console.print(p.describe(), highlight=False)
            console.print(f"  fingerprint {p.fingerprint()}")
        return
    settings = connected(ctx)
    if worker_index is not None or workers == 1:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        _run_worker(settings, pipelines, worker_index or 0, guarantee, max_batch, idle_exit, stuck_after)
        return
    args = ["--guarantee", guarantee, "--max-batch", str(max_batch), "--stuck-after", str(stuck_after)]
    for name in pipeline or []:
        args += ["--pipeline", name]
    if idle_exit is not None:
        args += ["--idle-exit", str(idle_exit)]
    _supervise(settings, app_file, args, workers)
