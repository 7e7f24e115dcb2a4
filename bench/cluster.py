"""A synthetic cluster of any size, written straight into the emulator's object store.

:func:`build_cluster` describes the cluster (pure); :func:`seed` creates it through
:class:`~ocscan.sandbox.kube.store.ObjectStore` (no HTTP, no controllers, no kubelet), with
the owner chain a real cluster has (Deployment -> ReplicaSet -> Pod, CronJob -> Job -> Pod,
StatefulSet and DaemonSet -> Pod) and pods as a real API server returns them: labels,
owner references, probes, a projected token volume, conditions and
``containerStatuses[].imageID``.

Credentials: a few private registries, each with ONE username and password used in every
namespace. Even namespaces hold one ``regcred`` Secret with every registry, odd ones one
Secret per registry. Even workloads name their pull secrets in the pod spec, odd ones get
them from their service account. Every private digest is therefore pulled with the same
credential identity everywhere, and ocscan must plan exactly one scan per running digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.resources import ResourceType
from ocscan.sandbox.kube.store import ObjectStore

JsonObject = dict[str, Any]
WORKLOAD_KINDS = ("Deployment", "Deployment", "StatefulSet", "Deployment", "DaemonSet", "CronJob")
STARTED = "2025-01-01T00:00:00Z"
# Starts every registry password of a synthetic cluster: a canary no output may contain.
PASSWORD_CANARY = "bench-canary-"
_TOP_LEVEL = {
    "Deployment": (r.DEPLOYMENTS, "apps/v1"),
    "StatefulSet": (r.STATEFUL_SETS, "apps/v1"),
    "DaemonSet": (r.DAEMON_SETS, "apps/v1"),
    "CronJob": (r.CRON_JOBS, "batch/v1"),
}


@dataclass(frozen=True)
class ClusterShape:
    """How big the cluster is. ``images`` counts distinct running digests: one in ten is a
    public Docker Hub sidecar, the others live on ``registries`` private registries."""

    pods: int
    namespaces: int
    workloads: int
    images: int = 50
    registries: int = 3

    def __post_init__(self) -> None:
        if not 0 < self.namespaces <= self.workloads <= self.pods:
            raise ValueError(f"need 0 < namespaces <= workloads <= pods, got {self}")
        if self.images < 2 or self.registries < 1:
            raise ValueError(f"need at least 2 images and 1 registry, got {self}")
        if self.workloads < self.images:
            raise ValueError(f"need a workload per image at least, got {self}")

    @classmethod
    def scaled(cls, pods: int, images: int = 50) -> ClusterShape:
        """The issue's proportions (10,000 pods, 500 namespaces, 2,000 workloads) at ``pods``."""
        return cls(
            pods=pods, namespaces=max(1, pods // 20), workloads=max(1, pods // 5), images=images
        )

    @property
    def public_images(self) -> int:
        return max(1, self.images // 10)

    @property
    def private_images(self) -> int:
        return self.images - self.public_images


@dataclass(frozen=True)
class Image:
    spec: str  # as a pod spec names it (by tag)
    image_id: str  # containerStatuses[].imageID: repository@digest, as containerd reports it


@dataclass(frozen=True)
class Workload:
    namespace: str
    kind: str
    name: str
    replicas: int
    pod_spec: JsonObject
    containers: tuple[tuple[str, Image], ...]
    init_containers: tuple[tuple[str, Image], ...]


@dataclass
class SyntheticCluster:
    """What to create, and the facts the benchmark checks the agent's plan against."""

    shape: ClusterShape
    setup: list[tuple[ResourceType, JsonObject]] = field(default_factory=list)
    workloads: list[Workload] = field(default_factory=list)

    @property
    def running_digests(self) -> set[str]:
        """``imageID`` of every container: what ocscan must scan, once each."""
        return {
            image.image_id
            for w in self.workloads
            for _, image in (*w.containers, *w.init_containers)
        }

    @property
    def pull_secrets_used(self) -> set[tuple[str, str]]:
        """(namespace, name) of every pull secret a pod uses, directly or via its account."""
        accounts = {
            (obj["metadata"]["namespace"], obj["metadata"]["name"]): obj
            for rtype, obj in self.setup
            if rtype == r.SERVICE_ACCOUNTS
        }
        used = set()
        for w in self.workloads:
            account = accounts.get((w.namespace, w.pod_spec["serviceAccountName"])) or {}
            for ref in w.pod_spec.get("imagePullSecrets") or account.get("imagePullSecrets") or ():
                used.add((w.namespace, ref["name"]))
        return used

    @property
    def pod_level_workloads(self) -> int:
        return sum(1 for w in self.workloads if "imagePullSecrets" in w.pod_spec)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _images(shape: ClusterShape) -> tuple[list[Image], list[Image], list[str]]:
    registries = [f"registry-{i}.bench.internal:5000" for i in range(shape.registries)]
    private = []
    for i in range(shape.private_images):
        repository = f"{registries[i % len(registries)]}/team-{i % 7}/service-{i:02d}"
        private.append(Image(f"{repository}:1.{i}.0", f"{repository}@{_digest(repository)}"))
    public = []
    for i in range(shape.public_images):
        repository = f"docker.io/library/sidecar-{i}"
        public.append(Image(f"sidecar-{i}:2.{i}", f"{repository}@{_digest(repository)}"))
    return private, public, registries


def docker_config_secret(
    name: str, namespace: str, auths: dict[str, tuple[str, str]]
) -> JsonObject:
    """A ``kubernetes.io/dockerconfigjson`` Secret with one entry per registry."""
    document = {
        "auths": {
            registry: {
                "username": user,
                "password": password,
                "auth": base64.b64encode(f"{user}:{password}".encode()).decode(),
            }
            for registry, (user, password) in auths.items()
        }
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": namespace},
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(document).encode()).decode()},
    }


def _container(name: str, image: str, port: int) -> JsonObject:
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {
                "name": "POD_NAMESPACE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
            },
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "256Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": port}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 20},
        "volumeMounts": [
            {
                "name": "kube-api-access",
                "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            }
        ],
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }


_TOKEN_VOLUME: JsonObject = {
    "name": "kube-api-access",
    "projected": {
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {
                "configMap": {
                    "name": "kube-root-ca.crt",
                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                }
            },
            {
                "downwardAPI": {
                    "items": [
                        {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                    ]
                }
            },
        ],
    },
}


def build_cluster(shape: ClusterShape) -> SyntheticCluster:
    """Every object of a cluster of ``shape``; deterministic but for the registry passwords."""
    seed = secrets.token_hex(8)
    private, public, registries = _images(shape)
    auths = {
        registry: (f"puller-{i}", f"{PASSWORD_CANARY}{seed}-{i}")
        for i, registry in enumerate(registries)
    }
    cluster = SyntheticCluster(shape=shape)
    namespaces = [f"team-{i:03d}" for i in range(shape.namespaces)]
    secrets_of: dict[str, list[str]] = {}
    for index, namespace in enumerate(namespaces):
        cluster.setup.append(
            (
                r.NAMESPACES,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
        )
        if index % 2 == 0:
            names = ["regcred"]
            cluster.setup.append((r.SECRETS, docker_config_secret("regcred", namespace, auths)))
        else:
            names = [f"pull-{i}" for i in range(len(registries))]
            for name, registry in zip(names, registries, strict=True):
                secret = docker_config_secret(name, namespace, {registry: auths[registry]})
                cluster.setup.append((r.SECRETS, secret))
        secrets_of[namespace] = names
        for account, pulls in (("default", []), ("app", names)):
            sa: JsonObject = {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account, "namespace": namespace},
            }
            if pulls:
                sa["imagePullSecrets"] = [{"name": name} for name in pulls]
            cluster.setup.append((r.SERVICE_ACCOUNTS, sa))

    base, extra = divmod(shape.pods, shape.workloads)
    for w in range(shape.workloads):
        namespace = namespaces[w % shape.namespaces]
        kind = WORKLOAD_KINDS[w % len(WORKLOAD_KINDS)]
        main = private[w % len(private)]
        containers = [("app", main)]
        if w % 3 == 0 or w < len(public):
            containers.append(("sidecar", public[w % len(public)]))
        init = [("migrate", main)] if w % 5 == 0 else []
        pod_level = w % 2 == 0
        spec: JsonObject = {
            "serviceAccountName": "default" if pod_level else "app",
            "containers": [
                _container(name, image.spec, 8080 + i) for i, (name, image) in enumerate(containers)
            ],
            "volumes": [_TOKEN_VOLUME],
            "tolerations": [
                {
                    "key": f"node.kubernetes.io/{taint}",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
                for taint in ("not-ready", "unreachable")
            ],
        }
        if init:
            spec["initContainers"] = [_container(name, image.spec, 9000) for name, image in init]
        if pod_level:
            spec["imagePullSecrets"] = [{"name": secret} for secret in secrets_of[namespace]]
        cluster.workloads.append(
            Workload(
                namespace=namespace,
                kind=kind,
                name=f"{kind.lower()}-{w:05d}",
                replicas=base + (1 if w < extra else 0),
                pod_spec=spec,
                containers=tuple(containers),
                init_containers=tuple(init),
            )
        )
    return cluster


def _owner_reference(obj: JsonObject) -> list[JsonObject]:
    return [
        {
            "apiVersion": obj["apiVersion"],
            "kind": obj["kind"],
            "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _template(workload: Workload, labels: dict[str, str]) -> JsonObject:
    return {"metadata": {"labels": labels}, "spec": workload.pod_spec}


def _top_level(workload: Workload, labels: dict[str, str]) -> JsonObject:
    api_version = _TOP_LEVEL[workload.kind][1]
    meta = {"name": workload.name, "namespace": workload.namespace, "labels": labels}
    selector = {"matchLabels": labels}
    spec: JsonObject
    if workload.kind == "CronJob":
        job_spec = {"template": _template(workload, labels)}
        job_spec["template"]["spec"] = dict(workload.pod_spec, restartPolicy="OnFailure")
        spec = {"schedule": "0 3 * * *", "jobTemplate": {"spec": job_spec}}
    elif workload.kind == "DaemonSet":
        spec = {"selector": selector, "template": _template(workload, labels)}
    else:
        spec = {
            "replicas": workload.replicas,
            "selector": selector,
            "template": _template(workload, labels),
        }
        if workload.kind == "StatefulSet":
            spec["serviceName"] = workload.name
    return {"apiVersion": api_version, "kind": workload.kind, "metadata": meta, "spec": spec}


def _intermediate(workload: Workload, top: JsonObject, labels: dict[str, str]) -> JsonObject | None:
    """The ReplicaSet of a Deployment or the Job of a CronJob; None for the others."""
    owner = _owner_reference(top)
    if workload.kind == "Deployment":
        name = f"{workload.name}-{_digest(workload.name)[7:17]}"
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": workload.namespace,
                "labels": labels,
                "ownerReferences": owner,
            },
            "spec": {
                "replicas": workload.replicas,
                "selector": {"matchLabels": labels},
                "template": _template(workload, labels),
            },
        }
    if workload.kind == "CronJob":
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": f"{workload.name}-28934580",
                "namespace": workload.namespace,
                "labels": labels,
                "ownerReferences": owner,
            },
            "spec": {
                "parallelism": workload.replicas,
                "completions": workload.replicas,
                "template": top["spec"]["jobTemplate"]["spec"]["template"],
            },
        }
    return None


def _pod_status(workload: Workload, index: int) -> JsonObject:
    def statuses(entries: tuple[tuple[str, Image], ...], *, done: bool) -> list[JsonObject]:
        state = (
            {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": STARTED,
                    "finishedAt": STARTED,
                }
            }
            if done
            else {"running": {"startedAt": STARTED}}
        )
        return [
            {
                "name": name,
                "image": image.spec,
                "imageID": image.image_id,
                "containerID": "containerd://" + _digest(f"{index}/{name}")[7:],
                "ready": not done,
                "started": not done,
                "restartCount": 0,
                "state": state,
            }
            for name, image in entries
        ]

    status: JsonObject = {
        "phase": "Running",
        "hostIP": f"10.0.{index % 50}.1",
        "podIP": f"10.{1 + index // 65536}.{index // 256 % 256}.{index % 256}",
        "startTime": STARTED,
        "qosClass": "Burstable",
        "conditions": [
            {"type": kind, "status": "True", "lastTransitionTime": STARTED}
            for kind in (
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            )
        ],
        "containerStatuses": statuses(workload.containers, done=False),
    }
    if workload.init_containers:
        status["initContainerStatuses"] = statuses(workload.init_containers, done=True)
    return status


def seed(store: ObjectStore, cluster: SyntheticCluster) -> int:
    """Create ``cluster`` in ``store``; returns the number of pods created."""
    for rtype, obj in cluster.setup:
        store.create(rtype, obj["metadata"].get("namespace"), obj)
    pods = 0
    for workload in cluster.workloads:
        labels = {"app.kubernetes.io/name": workload.name, "app.kubernetes.io/part-of": "bench"}
        rtype = _TOP_LEVEL[workload.kind][0]
        top = store.create(rtype, workload.namespace, _top_level(workload, labels))
        owner = top
        middle = _intermediate(workload, top, labels)
        if middle is not None:
            middle_type = r.REPLICA_SETS if middle["kind"] == "ReplicaSet" else r.JOBS
            owner = store.create(middle_type, workload.namespace, middle)
        prefix = owner["metadata"]["name"]
        for replica in range(workload.replicas):
            suffix = (
                str(replica)
                if workload.kind == "StatefulSet"
                else _digest(f"{prefix}/{replica}")[7:12]
            )
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"{prefix}-{suffix}",
                    "namespace": workload.namespace,
                    "labels": labels,
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
                    "ownerReferences": _owner_reference(owner),
                },
                "spec": dict(workload.pod_spec, nodeName=f"node-{pods % 50:02d}"),
            }
            created = store.create(r.PODS, workload.namespace, pod)
            created["status"] = _pod_status(workload, pods)
            store.update_status(r.PODS, workload.namespace, created)
            pods += 1
    return pods
