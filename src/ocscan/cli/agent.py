"""``ocscan agent``: scan on a schedule, forever, while leading."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import typer
from rich.console import Console

from ocscan.agent.logs import configure_json_logging
from ocscan.agent.runner import Agent
from ocscan.config import Config, ConfigError, load_config
from ocscan.deliver import Delivery
from ocscan.kube.client import ClusterUnreachableError, make_client

EXIT_BAD_CONFIG = 2
EXIT_CLUSTER_UNREACHABLE = 4


async def _serve(config: Config, kubeconfig: Path | None, context: str | None) -> None:
    client = make_client(kubeconfig, context)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        delivery = Delivery(client, config)
        agent = Agent(client, config, deliver=delivery.deliver)
        await agent.run(stop)
    finally:
        await client.close()


def agent(
    config_file: Path = typer.Option(..., "--config", help="Configuration file (YAML)."),
    kubeconfig: Path | None = typer.Option(
        None, help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)."
    ),
    context: str | None = typer.Option(None, help="kubeconfig context."),
) -> None:
    """Run scan cycles on the configured schedule; SIGTERM stops gracefully."""
    err = Console(stderr=True)
    try:
        config = load_config(config_file)
        Delivery.check(config.sinks)
    except ConfigError as error:
        err.print(f"[red]bad configuration:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    configure_json_logging(config.agent.log_level)
    try:
        asyncio.run(_serve(config, kubeconfig, context))
    except ClusterUnreachableError as error:
        err.print(f"[red]cluster unreachable:[/] {error}", highlight=False)
        raise typer.Exit(EXIT_CLUSTER_UNREACHABLE) from None


def register(app: typer.Typer) -> None:
    """Add ``agent`` to ``app``."""
    app.command()(agent)
