"""From a plan and the scan outcomes to one status per (workload, container). Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime

from ocscan.kube.workloads import WorkloadRef
from ocscan.report.model import (
    SCANNED,
    ContainerError,
    ContainerReport,
    CycleReport,
    CycleSummary,
    WorkloadReport,
)
from ocscan.scan.failure import FailureKind, ScanFailure
from ocscan.scan.outcome import ScanOutcome
from ocscan.scan.plan import ContainerUse, ScanPlan, ScanTarget
from ocscan.scan.report import ScanResult


def explain_failure(target: ScanTarget, outcome: ScanOutcome, use: ContainerUse) -> ScanFailure:
    """The failure as users need to read it: which secrets were tried for which registry.

    An ``auth`` refusal of a use whose pull secret is missing or malformed is reported as
    that secret's problem, since fixing the secret is what makes the scan work.
    """
    failure = outcome.failure
    assert failure is not None
    registry = target.reference.registry
    if failure.kind != FailureKind.AUTH:
        return failure
    if not target.credentials and use.problems:
        problem = use.problems[0]
        others = len(use.problems) - 1
        more = f" (and {others} more)" if others else ""
        message = (
            f"pull secret {problem.secret} {problem.reason}{more}; "
            f"the anonymous pull from {registry} failed: {failure.message}"
        )
        return ScanFailure(kind=FailureKind(problem.kind), message=message)
    if not target.credentials:
        consulted = ", ".join(target.secrets_consulted) or "none"
        message = (
            f"no pull secret has credentials for {registry} (secrets consulted: {consulted}); "
            f"{registry} answered: {failure.message}"
        )
    else:
        tried = "; ".join(outcome.attempts)
        message = f"{registry} refused the credentials of {tried}: {failure.message}"
    return ScanFailure(kind=FailureKind.AUTH, message=message)


def consolidate(
    plan: ScanPlan,
    outcomes: Mapping[str, ScanOutcome],
    *,
    started_at: datetime,
    finished_at: datetime,
    namespaces: set[str],
    swept: int = 0,
) -> CycleReport:
    """The cycle report. A target without an outcome (cancelled, deadline) counts as timeout."""
    workloads: dict[WorkloadRef, WorkloadReport] = {}
    seen: set[tuple[WorkloadRef, str, str, str]] = set()
    failed_namespaces: set[str] = set()
    scans = 0

    def add(workload: WorkloadRef, container: ContainerReport) -> None:
        key = (workload, container.name, container.digest or container.image,
               container.platform or "")  # fmt: skip
        if key in seen:  # replicas of one workload run the same container
            return
        seen.add(key)
        report = workloads.setdefault(
            workload,
            WorkloadReport(
                namespace=workload.namespace,
                kind=workload.kind,
                name=workload.name,
                api_version=workload.resolved_api_version,
                uid=workload.uid,
            ),
        )
        report.containers.append(container)
        if container.status != SCANNED:
            failed_namespaces.add(workload.namespace)

    for target in plan.targets:
        outcome = outcomes.get(target.key)
        if outcome is None:
            outcome = ScanOutcome(
                failure=ScanFailure(
                    kind=FailureKind.TIMEOUT,
                    message="the cycle ended before this image was scanned",
                )
            )
        scans += len(outcome.attempts)
        result = outcome.result
        for use in target.uses:
            failure = explain_failure(target, outcome, use) if outcome.failure else None
            add(
                use.workload,
                ContainerReport(
                    name=use.container,
                    type=use.container_type,
                    image=use.image,
                    digest=target.reference.digest or (result.image.digest if result else None),
                    platform=_platform(target, result),
                    os=result.image.os if result else None,
                    status=SCANNED if failure is None else failure.kind.value,
                    error=ContainerError(kind=failure.kind.value, message=failure.message)
                    if failure
                    else None,
                    vulnerabilities=list(result.findings) if result else [],
                ),
            )
    for unplanned in plan.unplanned:
        use = unplanned.use
        add(
            use.workload,
            ContainerReport(
                name=use.container,
                type=use.container_type,
                image=use.image,
                status=unplanned.kind,
                error=ContainerError(kind=unplanned.kind, message=unplanned.reason),
            ),
        )
    ordered = [workloads[key] for key in sorted(workloads)]
    for workload in ordered:
        workload.containers.sort(key=lambda c: (c.type, c.name, c.digest or "", c.platform or ""))
    containers = [c for w in ordered for c in w.containers]
    by_severity: Counter[str] = Counter(
        finding.severity.value for c in containers for finding in c.vulnerabilities
    )
    summary = CycleSummary(
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=round((finished_at - started_at).total_seconds(), 3),
        namespaces={ns: ns not in failed_namespaces for ns in sorted(namespaces)},
        workloads=len(ordered),
        containers=len(containers),
        images=len({str(target.reference) for target in plan.targets}),
        scan_targets=len(plan.targets),
        scans=scans,
        by_status=dict(sorted(Counter(c.status for c in containers).items())),
        by_severity=dict(by_severity),
        swept=swept,
    )
    return CycleReport(cycle=summary, workloads=ordered)


def _platform(target: ScanTarget, result: ScanResult | None) -> str | None:
    """The platform scanned, as the image's config says; else the one asked for.

    They differ for a single-platform image on a node of another platform (Trivy scans
    such an image whatever ``--platform`` says).
    """
    if result is not None and result.image.platform:
        return result.image.platform
    return str(target.platform) if target.platform else None
