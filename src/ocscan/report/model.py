"""The consolidated result of one scan cycle: per workload, per container, with a status.

This is the ``ocscan scan --format json`` document; its shape is part of the CLI contract
(README, "JSON output").
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from ocscan.kube.workloads import WorkloadRef
from ocscan.scan.report import Finding, OperatingSystem

SCANNED = "scanned"


class ContainerError(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: str
    message: str


class ContainerReport(BaseModel):
    """One container of a workload, the image it runs, and what its scan found."""

    name: str
    type: str = "container"  # container | init | ephemeral
    image: str
    digest: str | None = None
    platform: str | None = None  # os/arch scanned: the image config's, else the node's
    os: OperatingSystem | None = None
    status: str  # "scanned" or a failure kind
    error: ContainerError | None = None
    vulnerabilities: list[Finding] = Field(default_factory=list)


class WorkloadReport(BaseModel):
    namespace: str
    kind: str
    name: str
    api_version: str = ""
    uid: str = ""
    containers: list[ContainerReport] = Field(default_factory=list)

    @property
    def ref(self) -> WorkloadRef:
        return WorkloadRef(self.namespace, self.kind, self.name, self.api_version, self.uid)


class CycleSummary(BaseModel):
    """What a cycle did, in numbers."""

    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    namespaces: dict[str, bool] = Field(
        default_factory=dict, description="Each targeted namespace: fully scanned or not."
    )
    workloads: int = 0
    containers: int = 0
    images: int = 0  # distinct images (digests) running
    scan_targets: int = 0  # images x platforms x distinct credentials: what is scanned
    scans: int = 0  # scanner runs, including retries with another credential
    by_status: dict[str, int] = Field(default_factory=dict)
    by_severity: dict[str, int] = Field(default_factory=dict)
    swept: int = 0  # leftovers of an earlier crashed agent removed at start

    @property
    def complete(self) -> bool:
        """Every targeted namespace fully scanned."""
        return all(self.namespaces.values())


class CycleReport(BaseModel):
    cycle: CycleSummary
    workloads: list[WorkloadReport] = Field(default_factory=list)
