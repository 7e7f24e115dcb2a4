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


@dataclass(frozen=True, slots=True)
class OwnerLink:
    """The controller ownerReference of an object."""

    kind: str
    name: str
    uid: str = ""


@dataclass(frozen=True, slots=True, order=True)
class WorkloadRef:
    """A top-level workload: a Deployment, CronJob, StatefulSet, ..., or a bare Pod."""

    namespace: str
    kind: str
    name: str

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
        return WorkloadRef(pod.namespace, "Pod", pod.name)
    owner = pod.owner
    if owner.kind in INTERMEDIATE_KINDS:
        parent = owners.get((pod.namespace, owner.kind, owner.name))
        if parent is not None:
            owner = parent
    return WorkloadRef(pod.namespace, owner.kind, owner.name)
