"""Planning: one scan target per running image digest, platform and credentials, fanned out
to every container that runs it.

Pure. Input: pod snapshots, the owner index, service accounts' pull-secret names, the pull
secrets fetched by name and the nodes' platforms. Output: :class:`ScanPlan`. Credentials
are matched per image with the kubelet's rules, so a target only ever carries credentials
for its own registry.

Workloads that run the same digest with the same credentials share one scan. A workload
whose credentials differ (another account, a stale password, a deleted secret) gets a scan
of its own: it is the only way to know that its pull secret still works, and a pull secret
that silently stopped working is what ocscan exists to reveal.

The platform is that of the pod's node (``linux/arm64``): a tag of a multi-platform image
resolves to its index digest, and each node runs the index's entry for its own platform, so
one digest on amd64 and arm64 nodes is two scans. A pod not scheduled yet, or on a node
whose platform is unknown, gets no platform: the scanner's default (``linux/amd64``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ocscan.errors import InvalidReferenceError
from ocscan.kube.workloads import (
    ContainerType,
    OwnerIndex,
    PodSnapshot,
    WorkloadRef,
    top_level_workload,
)
from ocscan.registry.keyring import CredentialMatch
from ocscan.registry.platform import Platform
from ocscan.registry.pullsecrets import PullCredentials, PullSecretSet
from ocscan.registry.reference import ImageReference, image_id_digest, parse_reference

SecretKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class SecretProblem:
    """A pull secret that a pod lists but that gave no credentials."""

    secret: str  # namespace/name
    kind: str  # "secret_missing" | "secret_invalid"
    reason: str


@dataclass(frozen=True, slots=True, order=True)
class ContainerUse:
    """One (workload, container) that runs a target's image."""

    workload: WorkloadRef
    container: str
    container_type: ContainerType
    image: str  # as written in the pod spec
    pod: str
    problems: tuple[SecretProblem, ...] = field(default=(), compare=False)


@dataclass(slots=True)
class ScanTarget:
    """One image to scan, for which platform, the credentials to try in order, and every use
    it fans out to."""

    reference: ImageReference  # what the scanner pulls: registry/repository@digest when known
    credentials: list[CredentialMatch] = field(default_factory=list)
    uses: list[ContainerUse] = field(default_factory=list)
    secrets_consulted: list[str] = field(default_factory=list)  # namespace/name, try order
    platform: Platform | None = None  # the nodes' platform; None: the scanner's default

    @property
    def key(self) -> str:
        """Unique within a plan: the reference, the platform, and which credentials (by
        identity)."""
        key = str(self.reference)
        if self.platform is not None:
            key += f" for {self.platform}"
        if not self.credentials:
            return key
        identities = ",".join(match.credential.identity for match in self.credentials)
        return f"{key} with {identities}"


@dataclass(frozen=True, slots=True)
class UnplannedUse:
    """A container that cannot be scanned at all, e.g. its image reference is invalid."""

    use: ContainerUse
    kind: str
    reason: str


@dataclass(slots=True)
class ScanPlan:
    targets: list[ScanTarget]
    unplanned: list[UnplannedUse]

    @property
    def use_count(self) -> int:
        return sum(len(t.uses) for t in self.targets) + len(self.unplanned)


def scan_reference(spec_image: str, image_id: str | None) -> ImageReference:
    """The reference to scan: the spec image's repository at the digest the node runs.

    The repository comes from the spec (that is what the kubelet matched credentials
    against); the digest from ``imageID`` when the runtime reported one.
    """
    spec = parse_reference(spec_image)
    digest = image_id_digest(image_id) if image_id else None
    if digest is None:
        return spec
    return ImageReference(
        registry=spec.registry, repository=spec.repository, tag=None, digest=digest
    )


def pull_secret_keys(
    pods: Iterable[PodSnapshot], service_accounts: Mapping[SecretKey, tuple[str, ...] | None]
) -> set[SecretKey]:
    """Every pull secret the plan will read: fetch each once, by name."""
    keys: set[SecretKey] = set()
    for pod in pods:
        for name in _pull_secret_names(pod, service_accounts):
            keys.add((pod.namespace, name))
    return keys


def _pull_secret_names(
    pod: PodSnapshot, service_accounts: Mapping[SecretKey, tuple[str, ...] | None]
) -> tuple[str, ...]:
    # The ServiceAccount admission plugin copies the SA's secrets only into pods that list none.
    if pod.pull_secret_names:
        return pod.pull_secret_names
    return service_accounts.get((pod.namespace, pod.service_account)) or ()


SCANNABLE_OS = "linux"


def _unscannable(platform: Platform | None, node: str | None) -> str | None:
    """Why images of ``platform`` cannot be scanned, if they cannot.

    Trivy finds no OS packages in a Windows image and would call it clean: a container
    that cannot be scanned must say so instead.
    """
    if platform is None or platform.os == SCANNABLE_OS:
        return None
    return (
        f"Trivy scans Linux images only; the pod runs on node {node}, a {platform} node,"
        " so its image was not scanned"
    )


def plan_scans(
    pods: Iterable[PodSnapshot],
    owners: OwnerIndex,
    service_accounts: Mapping[SecretKey, tuple[str, ...] | None],
    secrets: Mapping[SecretKey, Mapping[str, Any] | None],
    unreadable: Mapping[SecretKey, str] | None = None,
    node_platforms: Mapping[str, Platform] | None = None,
) -> ScanPlan:
    """Group every container by the image and platform it runs and attach the credentials
    to try.

    ``secrets`` maps each pull secret read by name to its object (None: not found);
    ``unreadable`` maps the ones the API refused to the reason; ``node_platforms`` maps node
    names to their platforms. Targets and uses come out sorted, so the same cluster gives
    the same plan.
    """
    unreadable = unreadable or {}
    node_platforms = node_platforms or {}
    targets: dict[tuple[str, Platform | None, tuple[str, ...]], ScanTarget] = {}
    unplanned: list[UnplannedUse] = []
    # Replicas and neighbours repeat the same images and secrets: work each out once.
    references: dict[tuple[str, str | None], ImageReference] = {}
    secret_sets: dict[tuple[str, tuple[str, ...]], PullSecretSet] = {}
    resolved: dict[
        tuple[str, tuple[str, ...], str],
        tuple[PullCredentials, list[CredentialMatch], tuple[str, ...]],
    ] = {}
    for pod in sorted(pods, key=lambda p: (p.namespace, p.name)):
        workload = top_level_workload(pod, owners)
        listed = _pull_secret_names(pod, service_accounts)
        refused = tuple(
            SecretProblem(
                f"{pod.namespace}/{name}",
                "secret_invalid",
                f"cannot be read: {unreadable[(pod.namespace, name)]}",
            )
            for name in listed
            if (pod.namespace, name) in unreadable
        )
        names = tuple(name for name in listed if (pod.namespace, name) not in unreadable)
        platform = node_platforms.get(pod.node) if pod.node else None
        unscannable = _unscannable(platform, pod.node)
        for container in pod.containers:
            if unscannable is not None:
                use = ContainerUse(
                    workload, container.name, container.type, container.image, pod.name
                )
                unplanned.append(UnplannedUse(use, "scanner_error", unscannable))
                continue
            try:
                reference = references.get((container.image, container.image_id))
                if reference is None:
                    reference = scan_reference(container.image, container.image_id)
                    references[(container.image, container.image_id)] = reference
            except InvalidReferenceError as error:
                use = ContainerUse(
                    workload, container.name, container.type, container.image, pod.name
                )
                unplanned.append(UnplannedUse(use, "not_found", str(error)))
                continue
            memo_key = (pod.namespace, names, reference.name)
            if memo_key not in resolved:
                secret_set = secret_sets.get((pod.namespace, names))
                if secret_set is None:
                    pod_secrets = {name: secrets.get((pod.namespace, name)) for name in names}
                    secret_set = PullSecretSet(names, pod_secrets, pod.namespace)
                    secret_sets[(pod.namespace, names)] = secret_set
                found = secret_set.credentials_for(reference)
                # An entry without credentials is an anonymous pull: the no-credentials target.
                usable = [m for m in found.matches if not m.credential.is_anonymous]
                resolved[memo_key] = (found, usable, tuple(m.credential.identity for m in usable))
            pulled, usable, identities = resolved[memo_key]
            use = ContainerUse(
                workload,
                container.name,
                container.type,
                container.image,
                pod.name,
                problems=refused + _problems(pulled, pod.namespace),
            )
            identity = (str(reference), platform, identities)
            target = targets.get(identity)
            if target is None:
                target = ScanTarget(reference, list(usable), platform=platform)
                targets[identity] = target
            target.uses.append(use)
            for name in pulled.tried:
                qualified = f"{pod.namespace}/{name}"
                if qualified not in target.secrets_consulted:
                    target.secrets_consulted.append(qualified)
    for target in targets.values():
        target.uses = sorted(set(target.uses))
    ordered = sorted(targets.values(), key=lambda t: t.key)
    return ScanPlan(targets=ordered, unplanned=sorted(unplanned, key=lambda u: u.use))


def _problems(pulled: PullCredentials, namespace: str) -> tuple[SecretProblem, ...]:
    missing = [
        SecretProblem(f"{namespace}/{name}", "secret_missing", "not found")
        for name in pulled.missing
    ]
    invalid = [
        SecretProblem(f"{namespace}/{bad.name}", "secret_invalid", bad.reason)
        for bad in pulled.invalid
    ]
    return (*missing, *invalid)
