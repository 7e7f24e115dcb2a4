"""Constants and builders shared by the GitLab agent API tests.

The agent token and the KAS secret are canaries: tests assert they never show up in any output.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from pydantic import SecretStr

from ocscan.report.gitlab_api import GitLabAgentSink, RetryPolicy
from ocscan.report.model import SCANNED, ContainerReport, CycleReport, CycleSummary, WorkloadReport
from ocscan.sandbox.gitlab import GitLabEmulator
from ocscan.scan.report import Finding, OperatingSystem, Severity

AGENT_ID = "1042"
AGENT_TOKEN = "glagent-CANARY-t0ken-4f9c2e7a1b"
KAS_SECRET = b"CANARY-kas-shared-secret-9d3e71!"  # 32 bytes, as GitLab generates
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
DEBIAN = OperatingSystem(family="debian", name="12.5")


def make_sink(
    gitlab: GitLabEmulator,
    *,
    token: str = AGENT_TOKEN,
    secret: bytes = KAS_SECRET,
    retry: RetryPolicy = FAST_RETRY,
    client: httpx.AsyncClient | None = None,
    concurrency: int = 4,
    scanner_version: str | None = None,
) -> GitLabAgentSink:
    """A sink for the emulator's agent, with fast retries."""
    return GitLabAgentSink(
        gitlab.url,
        AGENT_ID,
        SecretStr(token),
        secret,
        client=client,
        retry=retry,
        concurrency=concurrency,
        scanner_version=scanner_version,
    )


def finding(
    cve: str,
    package: str,
    *,
    severity: Severity = Severity.HIGH,
    installed: str = "1.0.0",
    fixed: str | None = "1.0.1",
    title: str | None = None,
) -> Finding:
    return Finding(
        vulnerability_id=cve,
        package_name=package,
        installed_version=installed,
        fixed_version=fixed,
        severity=severity,
        title=title or f"{package}: flaw {cve}",
        description=f"A flaw in {package}.",
        primary_url=f"https://avd.aquasec.com/nvd/{cve.lower()}",
        references=(f"https://nvd.nist.gov/vuln/detail/{cve}",),
    )


def container(
    name: str, *findings: Finding, image: str = "registry.example:5000/app:1.0"
) -> ContainerReport:
    return ContainerReport(
        name=name,
        image=image,
        digest="sha256:" + "ab" * 32,
        os=DEBIAN,
        status=SCANNED,
        vulnerabilities=list(findings),
    )


def workload(
    namespace: str, name: str, *containers: ContainerReport, kind: str = "Deployment"
) -> WorkloadReport:
    return WorkloadReport(namespace=namespace, kind=kind, name=name, containers=list(containers))


def cycle(*workloads: WorkloadReport, namespaces: dict[str, bool] | None = None) -> CycleReport:
    """A cycle report; every namespace of ``workloads`` counts as fully scanned by default."""
    now = datetime.now(UTC)
    scanned = namespaces if namespaces is not None else {w.namespace: True for w in workloads}
    return CycleReport(
        cycle=CycleSummary(
            started_at=now, finished_at=now, duration_seconds=0.0, namespaces=scanned
        ),
        workloads=list(workloads),
    )
