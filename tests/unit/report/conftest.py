"""Cycle reports built directly from the models, for the report-format tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ocscan.report.model import (
    SCANNED,
    ContainerError,
    ContainerReport,
    CycleReport,
    CycleSummary,
    WorkloadReport,
)
from ocscan.scan.report import Cvss, Finding, OperatingSystem, Severity

STARTED = datetime(2026, 11, 27, 2, 0, 0, 123456, tzinfo=UTC)
WORKLOAD_UID = "6f1c1d5e-5b0e-4a51-9d53-1f0e0f6c2a10"
ALPINE = OperatingSystem(family="alpine", name="3.19.1")
DIGEST = "sha256:" + "8246839b" * 8
NVD = Cvss(
    v3_vector="CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
    v3_score=9.8,
    v2_vector="AV:N/AC:L/Au:N/C:P/I:P/A:P",
    v2_score=7.5,
)


class Build:
    """Factories for findings, containers, workloads and cycle reports."""

    @staticmethod
    def finding(
        vulnerability_id: str = "CVE-2024-0727",
        package: str = "openssl",
        *,
        installed: str = "3.1.4-r5",
        fixed: str | None = "3.1.4-r6",
        severity: Severity = Severity.HIGH,
        **extra: Any,
    ) -> Finding:
        fields: dict[str, Any] = {
            "title": f"{package}: flaw tracked as {vulnerability_id}",
            "description": f"A flaw in {package} lets an attacker do harm.",
            "primary_url": f"https://avd.aquasec.com/nvd/{vulnerability_id.lower()}",
            "references": (f"https://security.example.org/{vulnerability_id}",),
        }
        fields.update(extra)
        return Finding(
            vulnerability_id=vulnerability_id,
            package_name=package,
            installed_version=installed,
            fixed_version=fixed,
            severity=severity,
            **fields,
        )

    @staticmethod
    def container(
        name: str = "app",
        findings: list[Finding] | None = None,
        *,
        image: str = "registry.example.com/team/app:1.0",
        digest: str | None = DIGEST,
        os: OperatingSystem | None = ALPINE,
        platform: str | None = None,
    ) -> ContainerReport:
        return ContainerReport(
            name=name,
            image=image,
            digest=digest,
            platform=platform,
            os=os,
            status=SCANNED,
            vulnerabilities=list(findings or []),
        )

    @staticmethod
    def failed(
        name: str = "app",
        kind: str = "auth",
        message: str = "registry.example.com refused the credentials of team/pull",
        *,
        image: str = "registry.example.com/team/private:2.0",
    ) -> ContainerReport:
        return ContainerReport(
            name=name,
            image=image,
            status=kind,
            error=ContainerError(kind=kind, message=message),
        )

    @staticmethod
    def workload(
        *containers: ContainerReport,
        namespace: str = "shop",
        kind: str = "Deployment",
        name: str = "web",
        uid: str = WORKLOAD_UID,
        api_version: str = "",
    ) -> WorkloadReport:
        return WorkloadReport(
            namespace=namespace,
            kind=kind,
            name=name,
            uid=uid,
            api_version=api_version,
            containers=list(containers),
        )

    @staticmethod
    def report(
        *workloads: WorkloadReport,
        started: datetime = STARTED,
        namespaces: dict[str, bool] | None = None,
    ) -> CycleReport:
        """A cycle report whose summary agrees with ``workloads``."""
        containers = [c for w in workloads for c in w.containers]
        failed = {w.namespace for w in workloads for c in w.containers if c.status != SCANNED}
        targeted = {w.namespace for w in workloads}
        by_status: dict[str, int] = {}
        by_severity: dict[str, int] = {}
        for container in containers:
            by_status[container.status] = by_status.get(container.status, 0) + 1
            for finding in container.vulnerabilities:
                key = finding.severity.value
                by_severity[key] = by_severity.get(key, 0) + 1
        finished = started + timedelta(seconds=42, microseconds=654321)
        summary = CycleSummary(
            started_at=started,
            finished_at=finished,
            duration_seconds=(finished - started).total_seconds(),
            namespaces=namespaces
            if namespaces is not None
            else {ns: ns not in failed for ns in sorted(targeted)},
            workloads=len(workloads),
            containers=len(containers),
            scan_targets=len({c.digest or c.image for c in containers}),
            scans=len(containers),
            by_status=by_status,
            by_severity=by_severity,
        )
        return CycleReport(cycle=summary, workloads=list(workloads))


@pytest.fixture
def build() -> type[Build]:
    return Build
