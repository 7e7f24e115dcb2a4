"""The resource types the emulator serves: built-in ones, plus those CRDs define at runtime.

A :class:`ResourceType` names one REST resource (``apps/v1 deployments``) the way discovery
documents it. :class:`ResourceRegistry` is the thread-safe set of served types; the object
store keeps one registry and adds or removes CRD-defined types as CRDs come and go.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

STANDARD_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


@dataclass(frozen=True)
class ResourceType:
    """One REST resource: where it is served and what its objects look like.

    ``group`` is ``""`` for the core group. ``has_status`` means the type has a ``status``
    subresource: writes to the main resource keep the stored status, writes to ``/status``
    change nothing else. ``schema`` is the OpenAPI v3 schema of a CRD-defined type (None for
    built-in types, which are validated against the Kubernetes schema), ``printer_columns``
    its ``additionalPrinterColumns``.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    has_status: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = STANDARD_VERBS
    extra_subresources: tuple[str, ...] = ()
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)

    @property
    def api_version(self) -> str:
        """``apiVersion`` of the objects: ``v1`` or ``<group>/<version>``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """Kind of the list object (``PodList``)."""
        return f"{self.kind}List"

    @property
    def singular(self) -> str:
        """Singular resource name (``pod``)."""
        return self.kind.lower()

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: every version of a resource shares one ``(group, plural)``."""
        return (self.group, self.plural)

    @property
    def group_resource(self) -> str:
        """``pods`` or ``deployments.apps``: how API error messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def subresources(self) -> tuple[str, ...]:
        """Served subresources (``status``, ``log``)."""
        return (("status",) if self.has_status else ()) + self.extra_subresources

    @property
    def is_custom(self) -> bool:
        """Whether a CustomResourceDefinition defines this type."""
        return self.schema is not None

    def __str__(self) -> str:
        return f"{self.api_version} {self.plural}"


def _t(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    status: bool = True,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    verbs: tuple[str, ...] = STANDARD_VERBS,
    sub: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        has_status=status,
        short_names=short,
        categories=categories,
        verbs=verbs,
        extra_subresources=sub,
    )


_ALL = ("all",)

# Namespaces
NAMESPACES = _t("", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",))
NODES = _t("", "v1", "nodes", "Node", namespaced=False, short=("no",))
# core/v1
PODS = _t("", "v1", "pods", "Pod", short=("po",), categories=_ALL, sub=("log",))
SECRETS = _t("", "v1", "secrets", "Secret", status=False)
SERVICE_ACCOUNTS = _t("", "v1", "serviceaccounts", "ServiceAccount", status=False, short=("sa",))
CONFIG_MAPS = _t("", "v1", "configmaps", "ConfigMap", status=False, short=("cm",))
EVENTS = _t("", "v1", "events", "Event", status=False, short=("ev",))
SERVICES = _t("", "v1", "services", "Service", short=("svc",), categories=_ALL)
ENDPOINTS = _t("", "v1", "endpoints", "Endpoints", status=False, short=("ep",))
PERSISTENT_VOLUME_CLAIMS = _t(
    "", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",)
)
REPLICATION_CONTROLLERS = _t(
    "", "v1", "replicationcontrollers", "ReplicationController", short=("rc",), categories=_ALL
)
# apps/v1
DEPLOYMENTS = _t("apps", "v1", "deployments", "Deployment", short=("deploy",), categories=_ALL)
REPLICA_SETS = _t("apps", "v1", "replicasets", "ReplicaSet", short=("rs",), categories=_ALL)
STATEFUL_SETS = _t("apps", "v1", "statefulsets", "StatefulSet", short=("sts",), categories=_ALL)
DAEMON_SETS = _t("apps", "v1", "daemonsets", "DaemonSet", short=("ds",), categories=_ALL)
CONTROLLER_REVISIONS = _t("apps", "v1", "controllerrevisions", "ControllerRevision", status=False)
# batch/v1
JOBS = _t("batch", "v1", "jobs", "Job", categories=_ALL)
CRON_JOBS = _t("batch", "v1", "cronjobs", "CronJob", short=("cj",), categories=_ALL)
# coordination.k8s.io/v1
LEASES = _t("coordination.k8s.io", "v1", "leases", "Lease", status=False)
# rbac.authorization.k8s.io/v1
_RBAC = "rbac.authorization.k8s.io"
ROLES = _t(_RBAC, "v1", "roles", "Role", status=False)
ROLE_BINDINGS = _t(_RBAC, "v1", "rolebindings", "RoleBinding", status=False)
CLUSTER_ROLES = _t(_RBAC, "v1", "clusterroles", "ClusterRole", namespaced=False, status=False)
CLUSTER_ROLE_BINDINGS = _t(
    _RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False, status=False
)
# networking.k8s.io/v1, policy/v1
NETWORK_POLICIES = _t(
    "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", status=False, short=("netpol",)
)
INGRESSES = _t("networking.k8s.io", "v1", "ingresses", "Ingress", short=("ing",))
POD_DISRUPTION_BUDGETS = _t(
    "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",)
)
# apiextensions.k8s.io/v1
CUSTOM_RESOURCE_DEFINITIONS = _t(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "CustomResourceDefinition",
    namespaced=False,
    short=("crd", "crds"),
)
# authorization.k8s.io/v1: create-only reviews, answered from the emulator's RBAC.
SELF_SUBJECT_ACCESS_REVIEWS = _t(
    "authorization.k8s.io",
    "v1",
    "selfsubjectaccessreviews",
    "SelfSubjectAccessReview",
    namespaced=False,
    status=False,
    verbs=("create",),
)

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    NAMESPACES,
    NODES,
    PODS,
    SECRETS,
    SERVICE_ACCOUNTS,
    CONFIG_MAPS,
    EVENTS,
    SERVICES,
    ENDPOINTS,
    PERSISTENT_VOLUME_CLAIMS,
    REPLICATION_CONTROLLERS,
    DEPLOYMENTS,
    REPLICA_SETS,
    STATEFUL_SETS,
    DAEMON_SETS,
    CONTROLLER_REVISIONS,
    JOBS,
    CRON_JOBS,
    LEASES,
    ROLES,
    ROLE_BINDINGS,
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    NETWORK_POLICIES,
    INGRESSES,
    POD_DISRUPTION_BUDGETS,
    CUSTOM_RESOURCE_DEFINITIONS,
    SELF_SUBJECT_ACCESS_REVIEWS,
)


def split_api_version(api_version: str) -> tuple[str, str]:
    """``(group, version)`` of an ``apiVersion`` string (``v1`` is the core group)."""
    group, _, version = api_version.rpartition("/")
    return group, version


class ResourceRegistry:
    """The set of served resource types; safe to use from any thread."""

    def __init__(self, types: Iterable[ResourceType] = BUILTIN_TYPES) -> None:
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rtype in types:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype

    def register(self, rtype: ResourceType) -> None:
        """Serve ``rtype`` (replacing a type with the same group, version and plural)."""
        with self._lock:
            self._types[(rtype.group, rtype.version, rtype.plural)] = rtype

    def unregister(self, group: str, plural: str) -> None:
        """Stop serving every version of ``plural.group``."""
        with self._lock:
            for key in [k for k in self._types if k[0] == group and k[2] == plural]:
                del self._types[key]

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type served at ``/apis/<group>/<version>/<plural>``, if any."""
        with self._lock:
            return self._types.get((group, version, plural))

    def for_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The type whose objects have this ``apiVersion`` and ``kind``, if any."""
        group, version = split_api_version(api_version)
        with self._lock:
            for rtype in self._types.values():
                if (rtype.group, rtype.version, rtype.kind) == (group, version, kind):
                    return rtype
        return None

    def all(self) -> list[ResourceType]:
        """Every served type, ordered by group, version and plural."""
        with self._lock:
            return [self._types[k] for k in sorted(self._types)]

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions per group (core group as ``""``), in registration order."""
        result: dict[str, list[str]] = {}
        for rtype in self.all():
            versions = result.setdefault(rtype.group, [])
            if rtype.version not in versions:
                versions.append(rtype.version)
        return result
