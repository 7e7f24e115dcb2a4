"""One scan cycle: discover -> plan -> execute -> consolidate.

Delivery to sinks (files, GitLab, VulnerabilityReports, metrics) reads the returned
:class:`~ocscan.report.model.CycleReport`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from lightkube import AsyncClient

from ocscan.config import Config
from ocscan.kube.discovery import Discovery, DiscoveryScope
from ocscan.kube.events import emit, scan_failed_event
from ocscan.report.consolidate import consolidate
from ocscan.report.model import SCANNED, ContainerReport, CycleReport, WorkloadReport
from ocscan.scan.executor import ScanExecutor
from ocscan.scan.failure import FailureKind, ScanFailure
from ocscan.scan.outcome import ScanOutcome
from ocscan.scan.plan import ScanPlan, ScanTarget, plan_scans, pull_secret_keys
from ocscan.scan.podwatch import PodTracker

log = logging.getLogger(__name__)

EVENT_CONCURRENCY = 8


@dataclass(slots=True)
class Progress:
    """Live counters for a progress display."""

    total: int = 0
    done: int = 0
    running: int = 0
    failed: int = 0


ProgressCallback = Callable[[Progress], None]


class CycleObserver(Protocol):
    """Receives what happens during a cycle, e.g. to update metrics."""

    def scan_finished(self, outcome: ScanOutcome) -> None: ...

    def secret_count(self, alive: int) -> None: ...


def scope_of(config: Config) -> DiscoveryScope:
    targets = config.targets
    return DiscoveryScope(
        namespaces=tuple(targets.namespaces),
        exclude_namespaces=tuple(targets.exclude_namespaces),
        label_selector=targets.label_selector,
    )


async def _plan(client: AsyncClient, config: Config) -> tuple[ScanPlan, set[str]]:
    discovery = Discovery(client, scope_of(config), page_size=config.cycle.page_size)
    snapshot = await discovery.snapshot()
    keys = pull_secret_keys(snapshot.pods, snapshot.service_accounts)
    fetched = await discovery.pull_secrets(keys)
    plan = plan_scans(
        snapshot.pods,
        snapshot.owners,
        snapshot.service_accounts,
        fetched.secrets,
        fetched.errors,
        node_platforms=snapshot.node_platforms,
    )
    return plan, snapshot.namespaces


async def run_cycle(
    client: AsyncClient,
    config: Config,
    *,
    on_progress: ProgressCallback | None = None,
    observer: CycleObserver | None = None,
) -> CycleReport:
    """Run one cycle and return its report; failures of single images are in the report."""
    started = datetime.now(UTC)
    tracker = PodTracker(client, config.scanner.namespace)
    async with tracker:
        executor = ScanExecutor(
            client,
            config.scanner,
            tracker,
            on_secret_count=observer.secret_count if observer else None,
        )
        swept = await executor.sweep()
        if swept:
            log.warning("removed %d scanner objects left by an earlier agent", swept)
        plan, namespaces = await _plan(client, config)
        progress = Progress(total=len(plan.targets))
        outcomes: dict[str, ScanOutcome] = {}

        async def scan(target: ScanTarget) -> None:
            try:
                outcome = await executor.scan(target)
            except Exception as error:  # one target must never end the others' scans
                log.exception("scanning %s failed unexpectedly", target.reference)
                message = f"internal error while scanning: {type(error).__name__}: {error}"
                failure = ScanFailure(kind=FailureKind.SCANNER_ERROR, message=message)
                outcome = ScanOutcome(failure=failure)
            progress.running = executor.running
            outcomes[target.key] = outcome
            if observer:
                observer.scan_finished(outcome)
            progress.done += 1
            progress.failed += outcome.failure is not None
            if on_progress:
                on_progress(progress)

        if on_progress:
            on_progress(progress)
        try:
            async with asyncio.timeout(config.cycle.deadline_seconds):
                async with asyncio.TaskGroup() as group:
                    for target in plan.targets:
                        group.create_task(scan(target))
        except TimeoutError:
            log.warning("cycle deadline of %ss reached", config.cycle.deadline_seconds)
        finally:
            await executor.drain()
    report = consolidate(
        plan,
        outcomes,
        started_at=started,
        finished_at=datetime.now(UTC),
        namespaces=namespaces,
        swept=swept,
    )
    await _announce_failures(client, report)
    return report


async def _announce_failures(client: AsyncClient, report: CycleReport) -> None:
    """A WARNING log line and a ``ScanFailed`` Event for every container not scanned."""
    gate = asyncio.Semaphore(EVENT_CONCURRENCY)

    async def announce(workload: WorkloadReport, container: ContainerReport) -> None:
        error = container.error
        assert error is not None
        log.warning(
            "scan failed for %s/%s/%s container %s (%s): %s: %s",
            workload.namespace,
            workload.kind,
            workload.name,
            container.name,
            container.image,
            error.kind,
            error.message,
        )
        async with gate:
            await emit(client, scan_failed_event(workload.ref, container.name, error.kind,
                                                 error.message))  # fmt: skip

    await asyncio.gather(
        *(
            announce(workload, container)
            for workload in report.workloads
            for container in workload.containers
            if container.status != SCANNED and container.error is not None
        )
    )
