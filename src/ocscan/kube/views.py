"""Slim views of the objects discovery lists: lightkube resources with only the fields a cycle
reads.

Decoding a pod into lightkube's full model builds every probe, volume, env var and condition,
and the garbage collector then walks all of them: at 10,000 pods that is seconds of CPU and
hundreds of MiB. These classes use the same API paths as lightkube's ``Pod``,
``ReplicaSet``, ``Job``, ``ServiceAccount`` and ``Node``, and msgspec decodes a response
straight into the few fields below, skipping everything else unread. Every field is optional, as in
lightkube's models. Read-only: nothing here is ever sent to the API.
"""

from __future__ import annotations

import msgspec
from lightkube.core.resource import GlobalResource, NamespacedResourceG
from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Node, Pod, ServiceAccount

# gc=False: these hold only strings and other views, never a reference cycle, so the
# garbage collector need not track them.


class OwnerReferenceView(msgspec.Struct, kw_only=True, gc=False):
    apiVersion: str | None = None
    kind: str | None = None
    name: str | None = None
    uid: str | None = None
    controller: bool | None = None


class ObjectMetaView(msgspec.Struct, kw_only=True, gc=False):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] | None = None
    ownerReferences: list[OwnerReferenceView] | None = None
    deletionTimestamp: str | None = None


class LocalObjectReferenceView(msgspec.Struct, kw_only=True, gc=False):
    name: str | None = None


class ContainerView(msgspec.Struct, kw_only=True, gc=False):
    name: str | None = None
    image: str | None = None


class ContainerStatusView(msgspec.Struct, kw_only=True, gc=False):
    name: str | None = None
    imageID: str | None = None


class PodSpecView(msgspec.Struct, kw_only=True, gc=False):
    nodeName: str | None = None
    serviceAccountName: str | None = None
    imagePullSecrets: list[LocalObjectReferenceView] | None = None
    initContainers: list[ContainerView] | None = None
    containers: list[ContainerView] | None = None
    ephemeralContainers: list[ContainerView] | None = None


class PodStatusView(msgspec.Struct, kw_only=True, gc=False):
    initContainerStatuses: list[ContainerStatusView] | None = None
    containerStatuses: list[ContainerStatusView] | None = None
    ephemeralContainerStatuses: list[ContainerStatusView] | None = None


class PodView(NamespacedResourceG, msgspec.Struct, kw_only=True):
    """A Pod: its identity, owner, node, pull secrets, containers and the digests they run."""

    _api_info = Pod._api_info
    metadata: ObjectMetaView | None = None
    spec: PodSpecView | None = None
    status: PodStatusView | None = None


class ReplicaSetView(NamespacedResourceG, msgspec.Struct, kw_only=True):
    """A ReplicaSet's metadata: enough to follow it to its Deployment."""

    _api_info = ReplicaSet._api_info
    metadata: ObjectMetaView | None = None


class JobView(NamespacedResourceG, msgspec.Struct, kw_only=True):
    """A Job's metadata: enough to follow it to its CronJob."""

    _api_info = Job._api_info
    metadata: ObjectMetaView | None = None


class ServiceAccountView(NamespacedResourceG, msgspec.Struct, kw_only=True):
    """A ServiceAccount's name and the pull secrets it gives pods that list none."""

    _api_info = ServiceAccount._api_info
    metadata: ObjectMetaView | None = None
    imagePullSecrets: list[LocalObjectReferenceView] | None = None


class NodeSystemInfoView(msgspec.Struct, kw_only=True, gc=False):
    operatingSystem: str | None = None
    architecture: str | None = None


class NodeStatusView(msgspec.Struct, kw_only=True, gc=False):
    nodeInfo: NodeSystemInfoView | None = None


class NodeView(GlobalResource, msgspec.Struct, kw_only=True):
    """A Node's name, labels and the OS and architecture its kubelet reports."""

    _api_info = Node._api_info
    metadata: ObjectMetaView | None = None
    status: NodeStatusView | None = None
