"""``streamml schema-registry install|run``: a real Confluent-compatible Schema Registry on loopback.

The server is Apicurio Registry, fetched once from Maven Central into the cache; its
Confluent Schema Registry API is at ``http://HOST:PORT/apis/ccompat/v7``. Storage is in
memory: the schemas are gone when the server stops.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from streamml.cli.common import console, settings

registry_app = typer.Typer(help="Run a local Confluent-compatible Schema Registry (Apicurio Registry).",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="schema-registry")


@registry_app.command()
def install(ctx: typer.Context) -> None:
    """Find a Java and fetch Apicurio Registry into the cache (done by 'run' when needed).

    Apicurio Registry 3.x on Java 21+, else 2.6 on Java 17."""
    from streamml.schema.server import apicurio_home, choose_server

    s = settings(ctx)
    version, java = choose_server()
    with console.status(f"fetching Apicurio Registry {version} from Maven Central (once)..."):
        home = apicurio_home(s.cache_dir, version)
    console.print(f"Java: {java}; Apicurio Registry {version}: {home}", markup=False, highlight=False)


@registry_app.command()
def run(
    ctx: typer.Context,
    port: int = typer.Option(8081, "--port", help="HTTP port (0: a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder for the server's log."),
) -> None:
    """Run the registry in the foreground until Ctrl-C; prints the URL for confluent-kafka's client."""
    from streamml.schema.server import RegistryServer

    s = settings(ctx)
    workdir = data_dir or Path(tempfile.mkdtemp(prefix="streamml-registry-"))
    server = RegistryServer(workdir, port=port or None, host=host, cache_dir=s.cache_dir)
    with console.status("starting Apicurio Registry..."):
        server.start()
    typer.echo(server.url)
    typer.echo(f"(log: {server.log_path})", err=True)

    def _stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        if server.proc is not None:
            code = server.proc.wait()
            console.print(f"the registry exited with code {code} (log: {server.log_path})", style="red",
                          markup=False, highlight=False)
            raise typer.Exit(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
