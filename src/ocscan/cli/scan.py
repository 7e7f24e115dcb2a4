"""``ocscan scan``: one scan cycle against a cluster."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable
from enum import StrEnum
from pathlib import Path

import httpx2
import typer
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ocscan.agent.leader import LeaderElector, LeaseHeldError, LeaseLostError, exclusive_lease
from ocscan.agent.runner import default_identity
from ocscan.config import Config, ConfigError, TargetsConfig, load_config
from ocscan.cycle import Progress as CycleProgress
from ocscan.cycle import run_cycle
from ocscan.deliver import Delivery, gitlab_report_json, write_atomically
from ocscan.kube.client import ClusterUnreachableError, make_client
from ocscan.report.model import CycleReport
from ocscan.report.table import print_report
from ocscan.tasks import completes_first

EXIT_BAD_CONFIG = 2
EXIT_CLUSTER_UNREACHABLE = 4
EXIT_DELIVERY_FAILED = 5  # the cycle ran and its report is written, but a sink failed
EXIT_CYCLE_RUNNING = 6  # another cycle holds the agent namespace's lease
TABLE_WIDTH = 160  # when the table goes to a file or pipe, not a terminal


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    gitlab = "gitlab"


def _with_targets(config: Config, namespaces: list[str], excluded: list[str]) -> Config:
    if not namespaces and not excluded:
        return config
    targets = TargetsConfig(
        namespaces=namespaces or config.targets.namespaces,
        exclude_namespaces=[*config.targets.exclude_namespaces, *excluded],
        label_selector=config.targets.label_selector,
    )
    return config.model_copy(update={"targets": targets})


async def _run(
    config: Config,
    kubeconfig: Path | None,
    context: str | None,
    *,
    show_progress: bool,
    deliver: bool,
) -> tuple[CycleReport, list[str]]:
    """The cycle's report and the names of the sinks that failed."""
    client = make_client(kubeconfig, context)
    try:
        async with _one_cycle_at_a_time(client, config) as lease:
            report = await _unless_lost(_cycle(client, config, show_progress), lease)
            failed: list[str] = []
            if deliver:
                results = await Delivery(client, config).deliver(report)
                failed = [name for name, ok in results.items() if not ok]
        return report, failed
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def _one_cycle_at_a_time(
    client: AsyncClient, config: Config
) -> AsyncIterator[LeaderElector | None]:
    """Hold the agent namespace's lease, as its agents do: cycles there never overlap, so
    one cycle's sweep never removes another's scanner pods."""
    election = config.leader_election
    if not election.enabled:
        yield None
        return
    async with exclusive_lease(
        client,
        namespace=config.scanner.namespace,
        name=election.lease_name,
        identity=f"ocscan-scan-{default_identity()}",
        lease_duration_seconds=election.lease_duration_seconds,
        renew_seconds=election.renew_seconds,
    ) as elector:
        yield elector


async def _unless_lost(cycle: Awaitable[CycleReport], lease: LeaderElector | None) -> CycleReport:
    """The cycle's report; the cycle is cancelled (and cleaned up) if the lease is lost."""
    if lease is None:
        return await cycle
    running = asyncio.ensure_future(cycle)
    if not await completes_first(running, lease.wait_until_not_leader()):
        raise LeaseLostError(
            "lost the lease of the agent namespace during the cycle (renewals failed); "
            "stopped the cycle and removed its scanner pods"
        )
    return running.result()


async def _cycle(client: AsyncClient, config: Config, show_progress: bool) -> CycleReport:
    if not show_progress:
        return await run_cycle(client, config)
    columns = (
        TextColumn("scanning images"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[running]} scanner pods running, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("scan", total=None, running=0, failed=0)

        def update(progress: CycleProgress) -> None:
            bar.update(
                task,
                total=progress.total,
                completed=progress.done,
                running=progress.running,
                failed=progress.failed,
            )

        return await run_cycle(client, config, on_progress=update)


def scan(
    kubeconfig: Path | None = typer.Option(
        None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)."
    ),
    context: str | None = typer.Option(None, help="kubeconfig context."),
    namespace: list[str] = typer.Option(
        [], "--namespace", "-n", help="Scan only this namespace (repeatable)."
    ),
    exclude_namespace: list[str] = typer.Option(
        [], "--exclude-namespace", help="Never scan this namespace (repeatable)."
    ),
    config_file: Path | None = typer.Option(None, "--config", help="Configuration file (YAML)."),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="table, json or gitlab (container-scanning report)."
    ),
    output: Path | None = typer.Option(
        None, help="Write the report to this file instead of stdout."
    ),
    deliver: bool = typer.Option(
        False, help="Also deliver to the sinks of --config (files, VulnerabilityReports, GitLab)."
    ),
) -> None:
    """Scan every image that live workloads run, once per running digest."""
    err = Console(stderr=True)
    try:
        config = _with_targets(load_config(config_file), namespace, exclude_namespace)
        if deliver:
            Delivery.check(config.sinks)
    except ConfigError as error:
        err.print(f"[red]bad configuration:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    show_progress = output_format == OutputFormat.table and sys.stderr.isatty()
    try:
        report, failed_sinks = asyncio.run(
            _run(config, kubeconfig, context, show_progress=show_progress, deliver=deliver)
        )
    except (LeaseHeldError, LeaseLostError) as error:
        err.print(f"[red]not scanning:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CYCLE_RUNNING) from None
    except ClusterUnreachableError as error:
        err.print(f"[red]cluster unreachable:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(EXIT_CLUSTER_UNREACHABLE) from None
    except ApiError as error:
        # One line, unwrapped: the API's message names the verb and resource to grant.
        err.print(
            f"[red]the Kubernetes API refused ocscan:[/] {escape(error.status.message or '')}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_CLUSTER_UNREACHABLE) from None
    except httpx2.HTTPError as error:
        err.print(f"[red]cluster unreachable:[/] {escape(str(error))}", highlight=False)
        raise typer.Exit(EXIT_CLUSTER_UNREACHABLE) from None
    _write(report, config, output_format, output)
    if failed_sinks:
        err.print(f"[red]delivery failed:[/] {', '.join(failed_sinks)} (see the log above)")
        raise typer.Exit(EXIT_DELIVERY_FAILED)


def _write(
    report: CycleReport, config: Config, output_format: OutputFormat, output: Path | None
) -> None:
    if output_format == OutputFormat.table:
        if output is not None:
            with output.open("w") as handle:
                print_report(report, Console(file=handle, width=TABLE_WIDTH))
        else:
            wide = None if sys.stdout.isatty() else TABLE_WIDTH
            print_report(report, Console(width=wide))
        return
    if output_format == OutputFormat.json:
        document = report.model_dump_json(indent=2) + "\n"
    else:
        document = gitlab_report_json(report, config)
    if output is not None:
        write_atomically(output, document)
    else:
        sys.stdout.write(document)


def register(app: typer.Typer) -> None:
    """Add ``scan`` to ``app``."""
    app.command()(scan)
