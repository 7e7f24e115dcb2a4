"""Discovery: list what runs in the target namespaces, with a fixed number of API calls.

The calls grow with namespaces and kinds, never with pods: one paged list each of Pods,
ReplicaSets, Jobs and ServiceAccounts per target namespace (or cluster-wide when every
namespace is targeted), a few namespaces at a time, and one paged list of Nodes, each object
decoded into a slim view (:mod:`ocscan.kube.views`). Pull secrets are read afterwards with
``get`` by name, once each.

Nodes tell which platform each pod runs (see :func:`node_platform`): the variant of a
multi-platform image that its node pulled. Nodes that cannot be listed are no reason to
stop: a warning says so, and images are scanned for the scanner's default platform.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube import ALL_NS, AsyncClient, operators
from lightkube.core.exceptions import ApiError
from lightkube.core.resource import api_info
from lightkube.resources.core_v1 import Secret

from ocscan.kube.retry import describe, retrying
from ocscan.kube.selector import parse_label_selector
from ocscan.kube.views import (
    ContainerStatusView,
    ContainerView,
    JobView,
    NodeView,
    ObjectMetaView,
    PodView,
    ReplicaSetView,
    ServiceAccountView,
)
from ocscan.kube.workloads import (
    ContainerSnapshot,
    ContainerType,
    OwnerLink,
    PodSnapshot,
)
from ocscan.registry.platform import InvalidPlatformError, Platform

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 500
SECRET_GET_CONCURRENCY = 16
NAMESPACE_CONCURRENCY = 4  # namespaces listed at once, each with its four lists
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
    node_platforms: dict[str, Platform] = field(default_factory=dict)
    """Node name -> the platform it runs; empty when Nodes could not be listed."""


OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"


def node_platform(node: NodeView) -> Platform | None:
    """The platform of ``node``'s images: ``os/architecture`` as its kubelet reports them
    (``status.nodeInfo``), else from its well-known labels (which anyone allowed to patch
    Nodes can change); None when neither says.

    Nodes publish no CPU variant. ``arm`` is taken as ``arm/v7``, the oldest a kubelet runs
    on, as a containerd on such a node pulls it; for other architectures the scanner picks
    the index entry of that OS and architecture, whatever its variant (``arm64/v8``).
    """
    labels = (node.metadata.labels if node.metadata else None) or {}
    info = node.status.nodeInfo if node.status else None
    os_name = (info.operatingSystem if info else None) or labels.get(OS_LABEL)
    architecture = (info.architecture if info else None) or labels.get(ARCH_LABEL)
    if not os_name or not architecture:
        return None
    name = node.metadata.name if node.metadata else "?"
    labelled = (labels.get(OS_LABEL), labels.get(ARCH_LABEL))
    if all(labelled) and labelled != (os_name, architecture):
        log.warning("node %s: labelled %s/%s but its kubelet reports %s/%s; using the kubelet's",
                    name, *labelled, os_name, architecture)  # fmt: skip
    try:
        return Platform(os_name, architecture, "v7" if architecture == "arm" else None)
    except InvalidPlatformError as error:
        log.warning("node %s: %s; its pods are scanned for the default platform", name, error)
        return None


def _controller_of(metadata: ObjectMetaView) -> OwnerLink | None:
    for ref in metadata.ownerReferences or ():
        if ref.controller:
            return OwnerLink(
                kind=ref.kind or "",
                name=ref.name or "",
                uid=ref.uid or "",
                api_version=ref.apiVersion or "",
            )
    return None


def _containers(
    specs: Iterable[ContainerView] | None,
    statuses: Iterable[ContainerStatusView] | None,
    container_type: ContainerType,
) -> list[ContainerSnapshot]:
    image_ids = {status.name: status.imageID for status in statuses or ()}
    return [
        ContainerSnapshot(
            name=spec.name or "",
            type=container_type,
            image=spec.image or "",
            image_id=image_ids.get(spec.name) or None,
        )
        for spec in specs or ()
    ]


def pod_snapshot(pod: PodView) -> PodSnapshot:
    """The scan-relevant view of a listed Pod."""
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
        node=spec.nodeName or None,
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

        kind = api_info(resource).resource.kind
        # A failed page restarts the list: a continue token may not outlive the failure.
        return await retrying(read_all, what=f"list {kind} in {namespace}")

    async def _read_namespace(self, namespace: str) -> tuple[list[Any], ...]:
        return tuple(
            await asyncio.gather(
                self._list(PodView, namespace, labels=self._labels),
                self._list(ReplicaSetView, namespace),
                self._list(JobView, namespace),
                self._list(ServiceAccountView, namespace),
            )
        )

    async def node_platforms(self) -> dict[str, Platform]:
        """Node name -> platform, from one paged list of Nodes; empty, with a warning, when
        the API refuses or fails (scans then use the scanner's default platform)."""

        async def read_all() -> list[NodeView]:
            stream = self._client.list(NodeView, chunk_size=self._page_size)
            return [node async for node in stream]

        try:
            nodes = await retrying(read_all, what="list nodes")
        except (ApiError, httpx2.HTTPError) as error:
            log.warning(
                "cannot list nodes (%s); images are scanned for the scanner's default platform, "
                "not the one each pod's node runs",
                describe(error),
            )
            return {}
        platforms: dict[str, Platform] = {}
        for node in nodes:
            name = node.metadata.name if node.metadata else None
            if name and (platform := node_platform(node)) is not None:
                platforms[name] = platform
        return platforms

    async def snapshot(self) -> ClusterSnapshot:
        """Pods, their owners' owners, the service accounts' pull secrets and the nodes'
        platforms."""
        snapshot = ClusterSnapshot()
        namespaces = self._list_namespaces()
        gate = asyncio.Semaphore(NAMESPACE_CONCURRENCY)

        async def read(namespace: str) -> tuple[list[Any], ...]:
            async with gate:
                return await self._read_namespace(namespace)

        nodes = asyncio.create_task(self.node_platforms())
        tasks = [asyncio.create_task(read(namespace)) for namespace in namespaces]
        try:
            listed = await asyncio.gather(*tasks)
            snapshot.node_platforms = await nodes
        finally:
            for task in (*tasks, nodes):  # one namespace failed: stop reading the others
                task.cancel()
        for namespace, (pods, replica_sets, jobs, accounts) in zip(namespaces, listed, strict=True):
            for pod in pods:
                if pod.metadata.deletionTimestamp is not None:
                    continue
                shot = pod_snapshot(pod)
                if self._scope.includes(shot.namespace):
                    snapshot.pods.append(shot)
                    snapshot.namespaces.add(shot.namespace)
            for kind, owned in (("ReplicaSet", replica_sets), ("Job", jobs)):
                for obj in owned:
                    meta = obj.metadata
                    snapshot.owners[(meta.namespace, kind, meta.name)] = _controller_of(meta)
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
                        fetched.errors[key] = describe(error)
                    return
                except httpx2.HTTPError as error:  # no JSON Status, or no answer at all
                    fetched.errors[key] = describe(error)
                    return
            fetched.secrets[key] = secret.to_dict()

        await asyncio.gather(*(fetch(key) for key in sorted(set(keys))))
        return fetched
