"""Discovery: list what runs in the target namespaces, with a fixed number of API calls.

The calls grow with namespaces and kinds, never with pods: one paged list each of Pods,
ReplicaSets, Jobs and ServiceAccounts per target namespace (or cluster-wide when every
namespace is targeted). Pull secrets are read afterwards with ``get`` by name, once each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube import ALL_NS, AsyncClient, operators
from lightkube.core.exceptions import ApiError
from lightkube.models.core_v1 import Container, ContainerStatus, EphemeralContainer
from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod, Secret, ServiceAccount

from ocscan.kube.retry import retrying
from ocscan.kube.selector import parse_label_selector
from ocscan.kube.workloads import (
    ContainerSnapshot,
    ContainerType,
    OwnerLink,
    PodSnapshot,
)

DEFAULT_PAGE_SIZE = 500
SECRET_GET_CONCURRENCY = 16
SecretKey = tuple[str, str]


@dataclass(slots=True)
class SecretFetch:
    """Pull secrets read by name: the found ones, the missing ones (None), the unreadable ones."""

    secrets: dict[SecretKey, dict[str, Any] | None] = field(default_factory=dict)
    errors: dict[SecretKey, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DiscoveryScope:
    """Which namespaces and pods a cycle looks at. An empty ``namespaces`` means all."""

    namespaces: tuple[str, ...] = ()
    exclude_namespaces: tuple[str, ...] = ()
    label_selector: str | None = None

    def includes(self, namespace: str) -> bool:
        if namespace in self.exclude_namespaces:
            return False
        return not self.namespaces or namespace in self.namespaces


@dataclass(slots=True)
class ClusterSnapshot:
    """What discovery saw, as plain data for the planner."""

    pods: list[PodSnapshot] = field(default_factory=list)
    owners: dict[tuple[str, str, str], OwnerLink | None] = field(default_factory=dict)
    service_accounts: dict[SecretKey, tuple[str, ...] | None] = field(default_factory=dict)
    namespaces: set[str] = field(default_factory=set)


def _controller_of(metadata: Any) -> OwnerLink | None:
    for ref in metadata.ownerReferences or ():
        if ref.controller:
            return OwnerLink(kind=ref.kind, name=ref.name, uid=ref.uid, api_version=ref.apiVersion)
    return None


def _containers(
    specs: Iterable[Container | EphemeralContainer] | None,
    statuses: Iterable[ContainerStatus] | None,
    container_type: ContainerType,
) -> list[ContainerSnapshot]:
    image_ids = {status.name: status.imageID for status in statuses or ()}
    return [
        ContainerSnapshot(
            name=spec.name,
            type=container_type,
            image=spec.image or "",
            image_id=image_ids.get(spec.name) or None,
        )
        for spec in specs or ()
    ]


def pod_snapshot(pod: Pod) -> PodSnapshot:
    """The scan-relevant view of a lightkube Pod."""
    meta, spec, status = pod.metadata, pod.spec, pod.status
    assert meta is not None and spec is not None  # the API always sets both
    init_statuses = status.initContainerStatuses if status else None
    statuses = status.containerStatuses if status else None
    ephemeral_statuses = status.ephemeralContainerStatuses if status else None
    containers = [
        *_containers(spec.initContainers, init_statuses, "init"),
        *_containers(spec.containers, statuses, "container"),
        *_containers(spec.ephemeralContainers, ephemeral_statuses, "ephemeral"),
    ]
    return PodSnapshot(
        namespace=meta.namespace or "",
        name=meta.name or "",
        owner=_controller_of(meta),
        service_account=spec.serviceAccountName or "default",
        pull_secret_names=tuple(ref.name for ref in spec.imagePullSecrets or () if ref.name),
        containers=tuple(containers),
        labels=dict(meta.labels or {}),
        uid=meta.uid or "",
    )


class Discovery:
    """Reads the cluster for one cycle through an existing lightkube ``AsyncClient``."""

    def __init__(
        self, client: AsyncClient, scope: DiscoveryScope, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> None:
        self._client = client
        self._scope = scope
        self._page_size = page_size
        self._labels = parse_label_selector(scope.label_selector) if scope.label_selector else None

    def _list_namespaces(self) -> Sequence[str]:
        return self._scope.namespaces or (ALL_NS,)

    def _exclusions(self) -> dict[str, Any] | None:
        # Server-side filtering where it is cheap: everything but the excluded namespaces.
        if self._scope.exclude_namespaces and not self._scope.namespaces:
            return {"metadata.namespace": operators.not_in(list(self._scope.exclude_namespaces))}
        return None

    async def _list(self, resource: Any, namespace: str, *, labels: Any = None) -> list[Any]:
        async def read_all() -> list[Any]:
            stream = self._client.list(
                resource,
                namespace=namespace,
                chunk_size=self._page_size,
                labels=labels,
                fields=self._exclusions(),
            )
            return [item async for item in stream]

        # A failed page restarts the list: a continue token may not outlive the failure.
        return await retrying(read_all, what=f"list {resource.__name__} in {namespace}")

    async def snapshot(self) -> ClusterSnapshot:
        """Pods, their owners' owners and the service accounts' pull secrets."""
        snapshot = ClusterSnapshot()
        for namespace in self._list_namespaces():
            pods, replica_sets, jobs, accounts = await asyncio.gather(
                self._list(Pod, namespace, labels=self._labels),
                self._list(ReplicaSet, namespace),
                self._list(Job, namespace),
                self._list(ServiceAccount, namespace),
            )
            for pod in pods:
                if pod.metadata.deletionTimestamp is not None:
                    continue
                shot = pod_snapshot(pod)
                if self._scope.includes(shot.namespace):
                    snapshot.pods.append(shot)
                    snapshot.namespaces.add(shot.namespace)
            for obj in (*replica_sets, *jobs):
                meta = obj.metadata
                key = (meta.namespace, type(obj).__name__, meta.name)
                snapshot.owners[key] = _controller_of(meta)
            for account in accounts:
                meta = account.metadata
                names = tuple(ref.name for ref in account.imagePullSecrets or () if ref.name)
                snapshot.service_accounts[(meta.namespace, meta.name)] = names
            if namespace != ALL_NS:
                snapshot.namespaces.add(namespace)
        return snapshot

    async def pull_secrets(self, keys: Iterable[SecretKey]) -> SecretFetch:
        """Each secret by name (never ``list``), a bounded number at a time."""
        fetched = SecretFetch()
        gate = asyncio.Semaphore(SECRET_GET_CONCURRENCY)

        async def fetch(key: SecretKey) -> None:
            namespace, name = key
            async with gate:
                try:
                    secret = await retrying(
                        lambda: self._client.get(Secret, name, namespace=namespace),
                        what=f"get secret {namespace}/{name}",
                    )
                except ApiError as error:
                    if error.status.code == 404:
                        fetched.secrets[key] = None
                    else:  # e.g. 403: the secret exists for the kubelet but not for us
                        fetched.errors[key] = error.status.message or f"HTTP {error.status.code}"
                    return
            fetched.secrets[key] = secret.to_dict()

        await asyncio.gather(*(fetch(key) for key in sorted(set(keys))))
        return fetched
