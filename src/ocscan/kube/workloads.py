"""Plain snapshots of what runs in a cluster, and the walk from a Pod to its top-level workload.

Pure: discovery fills these from the API; planning and reporting read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ContainerType = Literal["container", "init", "ephemeral"]

# Kinds whose controller owner is itself owned by the workload users think of.
INTERMEDIATE_KINDS = frozenset({"ReplicaSet", "Job"})

# apiVersion of the built-in workload kinds; others come from their ownerReference.
BUILTIN_API_VERSIONS = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Pod": "v1",
    "ReplicationController": "v1",
}


@dataclass(frozen=True, slots=True)
class OwnerLink:
    """The controller ownerReference of an object."""

    kind: str
    name: str
    uid: str = ""
    api_version: str = ""


@dataclass(frozen=True, slots=True, order=True)
class WorkloadRef:
    """A top-level workload: a Deployment, CronJob, StatefulSet, ..., or a bare Pod.

    Identity is (namespace, kind, name); ``api_version`` and ``uid`` ride along, when known,
    for objects that point at the workload (Events, owned VulnerabilityReports).
    """

    namespace: str
    kind: str
    name: str
    api_version: str = field(default="", compare=False)
    uid: str = field(default="", compare=False)

    @property
    def resolved_api_version(self) -> str:
        return self.api_version or BUILTIN_API_VERSIONS.get(self.kind, "")

    def __str__(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class ContainerSnapshot:
    """One container of a live Pod: what the spec asks for and what the node runs."""

    name: str
    type: ContainerType
    image: str
    image_id: str | None = None  # containerStatuses[].imageID, when the kubelet reported it


@dataclass(frozen=True, slots=True)
class PodSnapshot:
    """The parts of a live Pod that scanning needs."""

    namespace: str
    name: str
    owner: OwnerLink | None
    service_account: str
    pull_secret_names: tuple[str, ...]
    containers: tuple[ContainerSnapshot, ...]
    labels: Mapping[str, str] = field(default_factory=dict)
    uid: str = ""
    node: str | None = None  # spec.nodeName: None until the pod is scheduled


# (namespace, kind, name) of an intermediate object -> its controller owner, or None.
OwnerIndex = Mapping[tuple[str, str, str], OwnerLink | None]


def top_level_workload(pod: PodSnapshot, owners: OwnerIndex) -> WorkloadRef:
    """The workload a Pod belongs to, as a user names it.

    ReplicaSet -> Deployment and Job -> CronJob are followed when the intermediate object
    is known and has a controller owner; a ReplicaSet or Job without one is the workload
    itself. Any other controller (StatefulSet, DaemonSet, ReplicationController, a custom
    operator's kind) is the workload; a Pod without a controller is its own workload.
    """
    if pod.owner is None:
        return WorkloadRef(pod.namespace, "Pod", pod.name, "v1", pod.uid)
    owner = pod.owner
    if owner.kind in INTERMEDIATE_KINDS:
        parent = owners.get((pod.namespace, owner.kind, owner.name))
        if parent is not None:
            owner = parent
    return WorkloadRef(pod.namespace, owner.kind, owner.name, owner.api_version, owner.uid)
