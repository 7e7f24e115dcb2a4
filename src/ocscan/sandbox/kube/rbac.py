"""RBAC authorization from the Role/ClusterRole and (Cluster)RoleBinding objects in the store.

Off by default. ``enable()`` enforces it for every identity outside ``system:masters``;
``enable(users=[...])`` only for the named users (e.g. the agent's service account), so tests
can keep an admin client. A denied request gets the real API server's 403 message.
Non-resource URLs (discovery, /version, /openapi) are open to everyone, as the default
``system:discovery`` ClusterRole makes them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.auth import Identity
from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.store import ObjectStore


@dataclass(frozen=True)
class Attributes:
    """What is being done: the RBAC view of one request."""

    verb: str
    group: str
    resource: str
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_RBAC_GROUP = "rbac.authorization.k8s.io"

# The bootstrap policy every cluster has, reduced to what clients of the emulator meet.
BOOTSTRAP_CLUSTER_ROLES: tuple[JsonObject, ...] = (
    {"metadata": {"name": "cluster-admin"},
     "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
               {"nonResourceURLs": ["*"], "verbs": ["*"]}]},
    {"metadata": {"name": "system:basic-user"},
     "rules": [{"apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"]}]},
)  # fmt: skip
BOOTSTRAP_CLUSTER_ROLE_BINDINGS: tuple[JsonObject, ...] = (
    {"metadata": {"name": "cluster-admin"},
     "roleRef": {"apiGroup": _RBAC_GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
     "subjects": [{"apiGroup": _RBAC_GROUP, "kind": "Group", "name": "system:masters"}]},
    {"metadata": {"name": "system:basic-user"},
     "roleRef": {"apiGroup": _RBAC_GROUP, "kind": "ClusterRole", "name": "system:basic-user"},
     "subjects": [{"apiGroup": _RBAC_GROUP, "kind": "Group",
                   "name": "system:authenticated"}]},
)  # fmt: skip


class RbacAuthorizer:
    """Decides requests from the RBAC objects in ``store``.

    Creates the bootstrap ClusterRoles and bindings a real cluster starts with
    (``cluster-admin``, ``system:basic-user``: anyone authenticated may ask what they may do).
    """

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._enabled = False
        self._users: frozenset[str] | None = None
        for role in BOOTSTRAP_CLUSTER_ROLES:
            store.create(r.CLUSTER_ROLES, None, role)
        for binding in BOOTSTRAP_CLUSTER_ROLE_BINDINGS:
            store.create(r.CLUSTER_ROLE_BINDINGS, None, binding)

    def enable(self, users: Iterable[str] | None = None) -> None:
        """Enforce RBAC for ``users`` (every non-master identity when None)."""
        with self._lock:
            self._enabled = True
            self._users = frozenset(users) if users is not None else None

    def disable(self) -> None:
        """Allow everything again."""
        with self._lock:
            self._enabled = False

    def enforced_for(self, identity: Identity) -> bool:
        """Whether ``identity``'s requests are checked."""
        with self._lock:
            if not self._enabled or identity.is_master:
                return False
            return self._users is None or identity.user in self._users

    def authorize(self, identity: Identity, attrs: Attributes) -> None:
        """Raise the API server's 403 when ``identity`` may not do ``attrs``."""
        if not self.enforced_for(identity) or self.allowed(identity, attrs):
            return
        rtype_name = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
        subject = f'{rtype_name} "{attrs.name}"' if attrs.name else rtype_name
        scope = (
            f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        )
        message = (
            f'{subject} is forbidden: User "{identity.user}" cannot {attrs.verb} resource '
            f'"{attrs.full_resource}" in API group "{attrs.group}" {scope}'
        )
        details: dict[str, Any] = {"kind": attrs.resource}
        if attrs.name:
            details["name"] = attrs.name
        if attrs.group:
            details["group"] = attrs.group
        raise ApiError(403, "Forbidden", message, details)

    def allowed(self, identity: Identity, attrs: Attributes) -> bool:
        """Whether some role bound to ``identity`` grants ``attrs`` (masters: always)."""
        if identity.is_master:
            return True
        for binding in self._store.list(r.CLUSTER_ROLE_BINDINGS):
            if _binds(binding, identity) and self._role_allows(binding, None, attrs):
                return True
        if attrs.namespace is None:
            return False
        for binding in self._store.list(r.ROLE_BINDINGS, attrs.namespace):
            if _binds(binding, identity) and self._role_allows(binding, attrs.namespace, attrs):
                return True
        return False

    def _role_allows(self, binding: JsonObject, namespace: str | None, attrs: Attributes) -> bool:
        ref = binding.get("roleRef") or {}
        try:
            if ref.get("kind") == "ClusterRole":
                role = self._store.get(r.CLUSTER_ROLES, None, ref.get("name", ""))
            elif ref.get("kind") == "Role" and namespace is not None:
                role = self._store.get(r.ROLES, namespace, ref.get("name", ""))
            else:
                return False
        except ApiError:
            return False  # a binding to a missing role grants nothing
        return any(_rule_allows(rule, attrs) for rule in role.get("rules") or [])


def _binds(binding: JsonObject, identity: Identity) -> bool:
    binding_namespace = (binding.get("metadata") or {}).get("namespace")
    for subject in binding.get("subjects") or []:
        kind, name = subject.get("kind"), subject.get("name")
        if kind == "User" and name == identity.user:
            return True
        if kind == "Group" and name in identity.groups:
            return True
        if kind == "ServiceAccount":
            namespace = subject.get("namespace") or binding_namespace
            if identity.user == f"system:serviceaccount:{namespace}:{name}":
                return True
    return False


def _rule_allows(rule: JsonObject, attrs: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    groups = rule.get("apiGroups") or []
    resources = rule.get("resources") or []
    names = rule.get("resourceNames") or []
    if "*" not in verbs and attrs.verb not in verbs:
        return False
    if "*" not in groups and attrs.group not in groups:
        return False
    wanted = attrs.full_resource
    star_sub = f"*/{attrs.subresource}" if attrs.subresource else None
    if "*" not in resources and wanted not in resources and star_sub not in resources:
        return False
    return not names or (attrs.name is not None and attrs.name in names)
