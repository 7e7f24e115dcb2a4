"""The whole local sandbox: a private registry with sample images, a Trivy server on a DB built
from advisories, and the Kubernetes emulator with its controllers and process kubelet.

``ocscan sandbox up`` runs :func:`serve` in a background process; tests and benchmarks use
:class:`Sandbox` directly. Everything started is stopped by :meth:`Sandbox.stop`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from ocscan.registry.credential import RegistryCredential
from ocscan.report import vulnerabilityreport
from ocscan.sandbox.errors import SandboxError
from ocscan.sandbox.kube.cluster import SandboxCluster
from ocscan.sandbox.kube.imagepull import ImagePuller
from ocscan.sandbox.kube.jsondata import JsonObject
from ocscan.sandbox.kube.kubelet import KubeletConfig, RunnableImage
from ocscan.sandbox.kube.server import KubeEmulator
from ocscan.sandbox.lifecycle import StartsOnEnter
from ocscan.sandbox.registry import RegistryServer
from ocscan.sandbox.samples import SampleImage, push_sample
from ocscan.sandbox.trivy import TrivyServer, find_trivy
from ocscan.sandbox.trivydb import (
    SAMPLE_ADVISORIES,
    SAMPLE_APP,
    SAMPLE_CLEAN,
    SAMPLE_MINIMAL,
    Advisory,
    build_trivy_db,
)

AGENT_NAMESPACE = "ocscan"
SCANNER_IMAGE = "aquasec/trivy"  # the kubelet runs pods of this image as local processes
TRIVY_SERVICE = "trivy.ocscan.svc:4954"  # what scanner pods are told; mapped to loopback
REGISTRY_USER = "sandbox"
PULL_SECRET = "registry-pull"


def docker_config_secret(
    name: str, namespace: str, registry: str, username: str, password: str
) -> JsonObject:
    """A ``kubernetes.io/dockerconfigjson`` Secret as ``kubectl create secret docker-registry``
    writes it."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    document = {"auths": {registry: {"username": username, "password": password, "auth": auth}}}
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": name, "namespace": namespace},
        "data": {".dockerconfigjson": encoded},
    }


def deployment(
    name: str,
    namespace: str,
    image: str,
    *,
    replicas: int = 1,
    pull_secrets: Sequence[str] = (),
    service_account: str | None = None,
    node_selector: Mapping[str, str] | None = None,
) -> JsonObject:
    """A Deployment of one container named ``app``."""
    spec: JsonObject = {"containers": [{"name": "app", "image": image}]}
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if pull_secrets:
        spec["imagePullSecrets"] = [{"name": secret} for secret in pull_secrets]
    if service_account:
        spec["serviceAccountName"] = service_account
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


@dataclass
class SandboxInfo:
    """What ``sandbox.json`` holds: everything a client of the sandbox needs."""

    directory: Path
    kubeconfig: Path
    registry: str
    registry_username: str
    registry_password: str
    registry_ca_file: Path | None
    trivy_server: str
    trivy_token_file: Path
    agent_namespace: str
    config_file: Path
    images: dict[str, str] = field(default_factory=dict)
    pid: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "kubeconfig": str(self.kubeconfig),
            "registry": {
                "address": self.registry,
                "username": self.registry_username,
                "password": self.registry_password,
                "ca_file": str(self.registry_ca_file) if self.registry_ca_file else None,
            },
            "trivy": {"url": self.trivy_server, "token_file": str(self.trivy_token_file)},
            "agent_namespace": self.agent_namespace,
            "config_file": str(self.config_file),
            "images": self.images,
            "pid": self.pid,
        }


class Sandbox(StartsOnEnter):
    """Starts and stops the local stack in ``directory``.

    ``samples``: create the sample workloads (issue 4). The registry has one user whose
    random password the sample pull secrets hold. ``architectures``: one node per entry,
    ``sandbox-node`` first, then ``sandbox-node-<arch>`` (a mixed cluster: amd64, arm64).
    """

    def __init__(
        self,
        directory: Path,
        advisories: Sequence[Advisory] = SAMPLE_ADVISORIES,
        *,
        samples: bool = True,
        architectures: Sequence[str] = ("amd64",),
    ) -> None:
        self.directory = directory.resolve()
        self.advisories = tuple(advisories)
        self.samples = samples
        self.nodes = {
            ("sandbox-node" if index == 0 else f"sandbox-node-{arch}"): arch
            for index, arch in enumerate(architectures)
        }
        self.registry_password = secrets.token_urlsafe(18)
        self.trivy_token = secrets.token_urlsafe(24)
        self.registry: RegistryServer | None = None
        self.trivy: TrivyServer | None = None
        self.kube: KubeEmulator | None = None
        self.cluster: SandboxCluster | None = None
        self.images: dict[str, SampleImage] = {}
        self._served_registries: set[str] = set()

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        self.registry = RegistryServer.start(
            directory / "registry", {REGISTRY_USER: self.registry_password}
        )
        self.add_registry(self.registry.address)
        for spec in (SAMPLE_APP, SAMPLE_MINIMAL, SAMPLE_CLEAN):
            self.images[spec.repository] = push_sample(self.registry, spec, self.credential)
        cache = directory / "trivy-db"
        build_trivy_db(cache, self.advisories)
        self.trivy = TrivyServer.start(cache, directory / "trivy", self.trivy_token)
        trivy_bin = find_trivy().parent
        kubelet = KubeletConfig(
            nodes=tuple(self.nodes),
            architectures=self.nodes,
            runnable=(RunnableImage(SCANNER_IMAGE, entrypoint=("trivy",)),),
            # The registry's images resolve for real; the scanner image needs no pull.
            images=ImagePuller(registries=self._served_registries, fake_digests=True),
            state_dir=directory / "kubelet",
            path=f"{trivy_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            services={TRIVY_SERVICE: self.trivy.address},
            backoff=2.0,
        )
        self.kube = KubeEmulator().start()
        self.cluster = SandboxCluster(self.kube.store, kubelet).start()
        self.kube.write_kubeconfig(self.kubeconfig)
        self._agent_namespace()
        if self.samples:
            self.create_samples()
        self.config_file.write_text(yaml.safe_dump(self.ocscan_config()))

    def stop(self) -> None:
        """Stop everything started, in reverse order, each even if another fails; safe to
        call more than once."""
        with contextlib.ExitStack() as stopping:
            for part in (self.registry, self.trivy, self.kube, self.cluster):  # pushed: LIFO
                if part is not None:
                    stopping.callback(part.stop)
            self.cluster = self.kube = None
            self.trivy = self.registry = None

    # ---- what clients need ----------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def config_file(self) -> Path:
        return self.directory / "ocscan.yaml"

    @property
    def credential(self) -> RegistryCredential:
        return RegistryCredential.of(REGISTRY_USER, self.registry_password)

    def image(self, repository: str) -> SampleImage:
        return self.images[repository]

    def ocscan_config(self) -> dict[str, Any]:
        """An ocscan configuration for this sandbox (the defaults work too)."""
        return {
            "targets": {"exclude_namespaces": [AGENT_NAMESPACE]},
            "scanner": {"namespace": AGENT_NAMESPACE, "timeout_seconds": 120},
        }

    def info(self) -> SandboxInfo:
        assert self.registry is not None and self.trivy is not None
        token_file = self.directory / "trivy-token"
        token_file.write_text(self.trivy_token + "\n")
        token_file.chmod(0o600)
        return SandboxInfo(
            directory=self.directory,
            kubeconfig=self.kubeconfig,
            registry=self.registry.address,
            registry_username=REGISTRY_USER,
            registry_password=self.registry_password,
            registry_ca_file=self.registry.ca_file,
            trivy_server=self.trivy.url,
            trivy_token_file=token_file,
            agent_namespace=AGENT_NAMESPACE,
            config_file=self.config_file,
            images={name: image.reference for name, image in self.images.items()},
            pid=os.getpid(),
        )

    # ---- objects --------------------------------------------------------------------------

    def apply(self, obj: JsonObject) -> JsonObject:
        """Create ``obj`` in the emulator, as ``kubectl create`` would."""
        assert self.kube is not None
        store = self.kube.store
        rtype = store.registry.for_kind(obj["apiVersion"], obj["kind"])
        if rtype is None:
            raise SandboxError(f"the emulator does not serve {obj['apiVersion']} {obj['kind']}")
        namespace = obj["metadata"].get("namespace") if rtype.namespaced else None
        return store.create(rtype, namespace, obj)

    def add_registry(self, address: str) -> None:
        """Let the kubelet pull from ``address`` for real (images elsewhere get fake digests)."""
        self._served_registries.add(address)

    def namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def pull_secret(self, name: str, namespace: str, password: str | None = None) -> None:
        assert self.registry is not None
        self.apply(
            docker_config_secret(
                name,
                namespace,
                self.registry.address,
                REGISTRY_USER,
                self.registry_password if password is None else password,
            )
        )

    def _agent_namespace(self) -> None:
        # The VulnerabilityReport CRD, as deploy/ installs it, so the agent can write reports.
        self.apply(vulnerabilityreport.crd())
        self.namespace(AGENT_NAMESPACE)
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "ocscan-scanner", "namespace": AGENT_NAMESPACE},
                "automountServiceAccountToken": False,
            }
        )
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": "ocscan-trivy-token", "namespace": AGENT_NAMESPACE},
                "stringData": {"token": self.trivy_token},
            }
        )

    def create_samples(self) -> None:
        """The workloads the demo scans: good, service-account, CronJob, and two broken."""
        app = self.image(SAMPLE_APP.repository).reference
        minimal = self.image(SAMPLE_MINIMAL.repository).reference
        clean = self.image(SAMPLE_CLEAN.repository).reference
        self.namespace("shop")
        self.pull_secret(PULL_SECRET, "shop")
        self.apply(deployment("web", "shop", app, replicas=2, pull_secrets=[PULL_SECRET]))
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "builder", "namespace": "shop"},
                "imagePullSecrets": [{"name": PULL_SECRET}],
            }
        )
        self.apply(deployment("api", "shop", minimal, service_account="builder"))
        self.namespace("batch")
        self.pull_secret(PULL_SECRET, "batch")
        self.apply(
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "nightly-report", "namespace": "batch"},
                "spec": {
                    "schedule": "0 3 * * *",
                    "jobTemplate": {
                        "spec": {
                            "template": {
                                "spec": {
                                    "restartPolicy": "Never",
                                    "imagePullSecrets": [{"name": PULL_SECRET}],
                                    "containers": [{"name": "report", "image": clean}],
                                }
                            }
                        }
                    },
                },
            }
        )
        assert self.cluster is not None
        self.cluster.trigger_cronjob("batch", "nightly-report")
        # The broken ones run because the node already has their images (IfNotPresent),
        # exactly how a broken pull secret goes unnoticed in a real cluster.
        self.wait_for_running("shop", 3)
        self.pull_secret("stale-pull", "shop", password="expired-" + secrets.token_hex(4))
        self.apply(deployment("legacy", "shop", app, pull_secrets=["stale-pull"]))
        self.apply(deployment("orphan", "shop", minimal, pull_secrets=["deleted-pull"]))
        self.wait_for_running("shop", 5)
        self.wait_for_running("batch", 1)

    def wait_for_running(self, namespace: str, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` pods of ``namespace`` run; SandboxError naming the others."""
        self.wait_for_pods(namespace, count, timeout, phase="Running")

    def wait_for_pods(
        self, namespace: str, count: int, timeout: float = 30.0, *, phase: str | None = None
    ) -> None:
        """Wait until ``namespace`` has ``count`` pods (in ``phase``, when given)."""
        assert self.kube is not None
        store = self.kube.store
        pods_type = store.registry.for_kind("v1", "Pod")
        assert pods_type is not None
        deadline = time.monotonic() + timeout
        while True:
            pods = store.list(pods_type, namespace)
            matching = [
                p for p in pods if phase is None or (p.get("status") or {}).get("phase") == phase
            ]
            if len(matching) >= count:
                return
            if time.monotonic() > deadline:
                states = {p["metadata"]["name"]: (p.get("status") or {}).get("phase") for p in pods}
                raise SandboxError(
                    f"{count} pods of {namespace} not {phase or 'there'} after {timeout}s: {states}"
                )
            time.sleep(0.05)
