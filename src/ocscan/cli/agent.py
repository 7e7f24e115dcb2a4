"""``ocscan agent``: scan on a schedule, forever, while leading.

Everything the agent writes to standard error is a JSON log line, including why it could not
start. Exit status: 0 after SIGTERM or SIGINT (graceful stop), 2 for a bad configuration,
4 when the kubeconfig cannot be loaded, 1 for anything unexpected.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import typer

from ocscan.agent.http import ListenError
from ocscan.agent.logs import configure_json_logging
from ocscan.agent.runner import Agent
from ocscan.config import Config, ConfigError, load_config
from ocscan.deliver import Delivery
from ocscan.kube.client import ClusterUnreachableError, make_client

EXIT_FAILED = 1
EXIT_BAD_CONFIG = 2
EXIT_CLUSTER_UNREACHABLE = 4

log = logging.getLogger("ocscan.agent")


async def _serve(config: Config, kubeconfig: Path | None, context: str | None) -> None:
    client = make_client(kubeconfig, context)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        log.info("received %s: stopping", signum.name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
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
    configure_json_logging()
    try:
        config = load_config(config_file)
        Delivery.check(config.sinks)
    except ConfigError as error:
        log.error("bad configuration: %s", error)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    configure_json_logging(config.agent.log_level)
    try:
        asyncio.run(_serve(config, kubeconfig, context))
    except ListenError as error:
        log.error("bad configuration: %s", error)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    except ClusterUnreachableError as error:
        log.error("cluster unreachable: %s", error)
        raise typer.Exit(EXIT_CLUSTER_UNREACHABLE) from None
    except Exception:
        log.exception("the agent failed")
        raise typer.Exit(EXIT_FAILED) from None


def register(app: typer.Typer) -> None:
    """Add ``agent`` to ``app``."""
    app.command()(agent)
