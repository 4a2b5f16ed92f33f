"""``streamml kafka up|down|status|logs``: a real local Apache Kafka in KRaft mode."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from streamml.cli.common import console, settings
from streamml.errors import ConfigError, ProvisioningError
from streamml.kafka.local import LocalCluster

kafka_app = typer.Typer(help="Run a local Apache Kafka cluster (KRaft, 1 or 3 nodes).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")


def _cluster(ctx: typer.Context, data_dir: Optional[Path], **kw: int | None) -> LocalCluster:
    s = settings(ctx)
    return LocalCluster.from_settings(s, data_dir=data_dir, **{k: v for k, v in kw.items() if v is not None})


@kafka_app.command()
def up(
    ctx: typer.Context,
    nodes: Optional[int] = typer.Option(None, "--nodes", help="1 or 3 nodes (each broker+controller)."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65533,
                                       help="Client port of node 1; node i uses port+i-1."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where data, logs and pids live."),
    secure: bool = typer.Option(False, "--secure", help="SASL_SSL: SCRAM-SHA-512 over TLS, ACLs enforced."),
) -> None:
    """Start the local cluster (fetching Kafka from Maven Central once), wait until it answers."""
    if nodes is not None and nodes not in (1, 3):
        raise ConfigError(f"--nodes must be 1 or 3, got {nodes}", hint="a 3-node cluster gives replication 3")
    cluster = _cluster(ctx, data_dir, nodes=nodes, port=port)
    if (nodes and nodes != cluster.nodes) or (port and port != cluster.port) or (secure and not cluster.secure):
        if cluster.state_file.exists():
            what = f"a {cluster.nodes}-node{' secured' if cluster.secure else ''} cluster on port {cluster.port}"
            raise ProvisioningError(
                f"{what} already exists in {cluster.data_dir}" + (" and runs" if cluster.running() else ""),
                hint="run 'streamml kafka down --purge' first (deletes its data), or pass another --data-dir")
        cluster = LocalCluster(cluster.data_dir, nodes=nodes or cluster.nodes, port=port or cluster.port,
                               kafka_version=cluster.kafka_version, cache_dir=cluster.cache_dir,
                               secure=secure)
    with console.status(f"starting {cluster.nodes}-node Kafka {cluster.kafka_version} (KRaft)..."):
        started = cluster.up()
    state = "started" if started else "already running"
    console.print(f"Kafka {state}: {cluster.nodes} node(s), data in {cluster.data_dir}", style="green",
                  markup=False, highlight=False)
    if cluster.secure:
        console.print(f"secured (SASL_SSL, SCRAM-SHA-512, ACLs): admin credentials in "
                      f"{cluster.data_dir / 'client.toml'}; use it with STREAMML_CONFIG or --config",
                      markup=False, highlight=False)
    typer.echo(cluster.bootstrap_servers)


@kafka_app.command()
def down(
    ctx: typer.Context,
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the cluster's data lives."),
    purge: bool = typer.Option(False, "--purge", help="Also delete the cluster's data and logs."),
    timeout: float = typer.Option(30.0, "--timeout", min=0, help="Seconds to wait after SIGTERM before SIGKILL."),
) -> None:
    """Stop the processes the local cluster started (graceful first, hard after --timeout)."""
    cluster = LocalCluster.load(Path(data_dir or settings(ctx).cluster_dir))
    if cluster is None:
        console.print("no local cluster here")
        return
    n = cluster.down(timeout, purge=purge)
    console.print(f"stopped {n} node(s)" + (" and deleted the data" if purge else ""))


@kafka_app.command()
def status(ctx: typer.Context, data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="Where the cluster's data lives.")) -> None:
    """Nodes, active controller, topics and under-replicated partitions."""
    s = settings(ctx)
    cluster = LocalCluster.load(Path(data_dir or s.cluster_dir))
    bootstrap = s.bootstrap_servers or (cluster.bootstrap_servers if cluster else None)
    if bootstrap is None:
        raise ProvisioningError(f"no local cluster in {Path(data_dir or s.cluster_dir)} and no bootstrap servers "
                                "configured", hint="start one with 'streamml kafka up', or pass -b HOST:PORT")
    from streamml.kafka.inspect import cluster_overview

    local_opts = cluster.client_options() if cluster and not s.bootstrap_servers else {}
    ov = cluster_overview(s.with_(bootstrap_servers=bootstrap, kafka={**local_opts, **s.kafka}))
    nodes = Table(title=f"cluster {ov['cluster_id']} at {bootstrap}")
    for col in ("node", "address", "role", "process"):
        nodes.add_column(col)
    pids = {n.node_id: n for n in cluster.node_infos} if cluster else {}
    for b in ov["brokers"]:
        info = pids.get(b["id"])
        proc = f"pid {info.pid}" if info and info.alive() else ("-" if not info else "[red]down[/red]")
        role = "broker+controller*" if b["id"] == ov["controller"] else "broker"
        nodes.add_row(str(b["id"]), f"{b['host']}:{b['port']}", role, proc)
    for node_id, info in pids.items():
        if node_id not in {b["id"] for b in ov["brokers"]}:
            nodes.add_row(str(node_id), f"127.0.0.1:{info.port}", "-", "[red]down[/red]")
    console.print(nodes)
    topics = Table(title="topics")
    for col in ("topic", "partitions", "replication", "under-replicated"):
        topics.add_column(col)
    for t in ov["topics"]:
        urp = t["under_replicated"]
        topics.add_row(t["name"], str(t["partitions"]), str(t["replication"]),
                       f"[red]{urp}[/red]" if urp else "0")
    console.print(topics)
    console.print("* active controller")


@kafka_app.command()
def logs(
    ctx: typer.Context,
    node: int = typer.Option(1, "--node", help="Which node's log."),
    lines: int = typer.Option(50, "--lines", "-n", min=1, help="How many lines."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Where the cluster's data lives."),
) -> None:
    """The last lines of a node's server log."""
    where = Path(data_dir or settings(ctx).cluster_dir)
    cluster = LocalCluster.load(where)
    if cluster is None:
        raise ProvisioningError(f"no local cluster in {where}", hint="start one with 'streamml kafka up'")
    if node not in range(1, cluster.nodes + 1):
        raise ConfigError(f"--node {node}: the cluster in {where} has node(s) 1..{cluster.nodes}")
    typer.echo(cluster.log_tail(node, lines))
    typer.echo(f"(log: {cluster.node(node).path / 'server.log'})", err=True)


@kafka_app.command()
def install(ctx: typer.Context) -> None:
    """Check Java and fetch Kafka's jars into the cache (done by 'up' when needed)."""
    from streamml.kafka.distribution import java_version, kafka_classpath

    s = settings(ctx)
    major = java_version()
    with console.status(f"fetching Kafka {s.kafka_version} from Maven Central (once)..."):
        libs = kafka_classpath(s.kafka_version, s.cache_dir)
    console.print(f"Java {major}; Kafka {s.kafka_version}: {libs}", markup=False, highlight=False)
