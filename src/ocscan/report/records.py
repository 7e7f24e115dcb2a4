"""A cycle report flattened to one record per vulnerable package of a workload's container.

Pure. The delivery formats build their entries from :class:`VulnerabilityRecord`, so they
agree on what a finding is and on its identity; those that track findings across cycles (the
GitLab security report and agent API) take the deduplicated, ordered list of :func:`records`.

Identity (:attr:`VulnerabilityRecord.fingerprint`) covers *where* a vulnerability lives and
*which* one it is: namespace, workload kind, workload name, container, package name and
vulnerability id. It leaves out the image, the digest, the platform and the installed/fixed
versions on purpose: a rebuilt image or a package bumped to another still-vulnerable version
is the same open finding, and a vulnerability that is fixed and later reintroduced gets its
old identity back, so sinks can track it across cycles instead of piling up duplicates.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from ocscan.kube.workloads import WorkloadRef
from ocscan.report.model import SCANNED, ContainerReport, CycleReport, WorkloadReport
from ocscan.scan.report import Cvss, Finding, OperatingSystem, Severity

_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://ocscan.io/vulnerability-record")

RecordKey = tuple[str, str, str, str, str, str]
"""(namespace, workload kind, workload name, container, package name, vulnerability id)."""


@dataclass(frozen=True, slots=True)
class VulnerabilityRecord:
    """One vulnerability of one package in one container of one workload."""

    namespace: str
    workload_kind: str
    workload_name: str
    container: str
    image: str
    digest: str | None
    os: OperatingSystem | None
    package_name: str
    installed_version: str
    fixed_version: str | None
    vulnerability_id: str
    severity: Severity
    title: str | None = None
    description: str | None = None
    primary_url: str | None = None
    references: tuple[str, ...] = ()
    cvss: Mapping[str, Cvss] = field(default_factory=dict, hash=False)
    """CVSS data keyed by source (``nvd``, ``redhat``, ...)."""
    platform: str | None = None
    """The platform scanned (``linux/arm64``); None: the scanner's default."""

    @property
    def key(self) -> RecordKey:
        """What makes two records the same finding (see the module docstring)."""
        return (
            self.namespace,
            self.workload_kind,
            self.workload_name,
            self.container,
            self.package_name,
            self.vulnerability_id,
        )

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of :attr:`key`; the same in every cycle for the same finding."""
        encoded = json.dumps(self.key, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(encoded.encode()).hexdigest()

    @property
    def uuid(self) -> str:
        """A UUID (version 5) derived from :attr:`fingerprint`, for formats that want one."""
        return str(uuid.uuid5(_UUID_NAMESPACE, self.fingerprint))

    @property
    def workload(self) -> WorkloadRef:
        return WorkloadRef(self.namespace, self.workload_kind, self.workload_name)

    @property
    def score(self) -> float | None:
        """The CVSS score to show: NVD's v3 score first, then other sources' v3, v4, v2."""
        sources = sorted(self.cvss.items(), key=lambda item: (item[0] != "nvd", item[0]))
        for attribute in ("v3_score", "v40_score", "v2_score"):
            for _, cvss in sources:
                value: float | None = getattr(cvss, attribute)
                if value is not None:
                    return value
        return None


@dataclass(frozen=True, slots=True)
class ContainerFailure:
    """A container whose image could not be scanned, and why."""

    namespace: str
    workload_kind: str
    workload_name: str
    container: str
    image: str
    kind: str  # the container's status: a failure kind
    message: str

    @property
    def workload(self) -> WorkloadRef:
        return WorkloadRef(self.namespace, self.workload_kind, self.workload_name)


def record_of(
    workload: WorkloadReport, container: ContainerReport, finding: Finding
) -> VulnerabilityRecord:
    """The record of one finding of ``container``."""
    return VulnerabilityRecord(
        namespace=workload.namespace,
        workload_kind=workload.kind,
        workload_name=workload.name,
        container=container.name,
        image=container.image,
        digest=container.digest,
        os=container.os,
        package_name=finding.package_name,
        installed_version=finding.installed_version,
        fixed_version=finding.fixed_version,
        vulnerability_id=finding.vulnerability_id,
        severity=finding.severity,
        title=finding.title,
        description=finding.description,
        primary_url=finding.primary_url,
        references=finding.references,
        cvss=finding.cvss,
        platform=container.platform,
    )


def _preference(record: VulnerabilityRecord) -> tuple[int, str, str, str, str]:
    # Among duplicates of one key keep the most severe, then a deterministic pick.
    return (
        record.severity.rank,
        record.installed_version,
        record.digest or "",
        record.platform or "",
        record.image,
    )


def sort_key(record: VulnerabilityRecord) -> tuple[str, str, str, str, int, str, str]:
    """Workload, container, then most severe first; the order every format uses."""
    return (
        record.namespace,
        record.workload_kind,
        record.workload_name,
        record.container,
        record.severity.rank,
        record.vulnerability_id,
        record.package_name,
    )


def records(report: CycleReport) -> list[VulnerabilityRecord]:
    """Every finding of the cycle, one per (workload, container, package, vulnerability id).

    Duplicates of a key come from one package installed at several versions or paths in an
    image, from a container running two digests mid-rollout, or on nodes of two platforms;
    the most severe is kept (ties broken by installed version, digest, platform, image).
    Sorted by :func:`sort_key`.
    """
    kept: dict[RecordKey, VulnerabilityRecord] = {}
    for workload in report.workloads:
        for container in workload.containers:
            for finding in container.vulnerabilities:
                record = record_of(workload, container, finding)
                current = kept.get(record.key)
                if current is None or _preference(record) < _preference(current):
                    kept[record.key] = record
    return sorted(kept.values(), key=sort_key)


def failures(report: CycleReport) -> list[ContainerFailure]:
    """Every container of the cycle that was not scanned, in report order."""
    return [
        ContainerFailure(
            namespace=workload.namespace,
            workload_kind=workload.kind,
            workload_name=workload.name,
            container=container.name,
            image=container.image,
            kind=container.status,
            message=container.error.message if container.error else container.status,
        )
        for workload in report.workloads
        for container in workload.containers
        if container.status != SCANNED
    ]
