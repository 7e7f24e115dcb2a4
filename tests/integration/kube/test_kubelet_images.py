"""Image pulls against the real sandbox registry, and a scanner pod running the real Trivy.

The kubelet resolves each pod's image with the pod's pull secret, like a real node: the
right secret gives Running with ``imageID`` = the digest the registry serves; a missing or
wrong one gives ``ErrImagePull`` then ``ImagePullBackOff`` with containerd's message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Event, Pod, Secret
from polling import eventually

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.kube.cluster import SandboxCluster
from ocscan.sandbox.kube.imagepull import ImagePuller, RegistryResolver
from ocscan.sandbox.kube.kubelet import KubeletConfig, RunnableImage
from ocscan.sandbox.kube.server import KubeEmulator
from ocscan.sandbox.registry import RegistryServer
from ocscan.sandbox.samples import SampleImage
from ocscan.sandbox.trivy import TrivyServer

NS = "default"
SCANNER = "ghcr.io/aquasecurity/trivy"


@pytest.fixture
def cluster(
    kube: KubeEmulator, tmp_path: Path, registry_a: RegistryServer, trivy_binary: Path
) -> Iterator[SandboxCluster]:
    config = KubeletConfig(
        runnable=(RunnableImage(SCANNER, entrypoint=("trivy",)),),
        images=ImagePuller(RegistryResolver(), registries={registry_a.address}, fake_digests=True),
        state_dir=tmp_path / "kubelet",
        path=f"{trivy_binary.parent}:/usr/bin:/bin",
        backoff=0.3,
        resync=0.2,
    )
    with SandboxCluster(kube.store, config) as running:
        yield running


def pull_secret(name: str, registry: str, credential: RegistryCredential) -> Secret:
    user, password = credential.reveal()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    document = json.dumps({"auths": {registry: {"auth": auth}}})
    return Secret.from_dict(
        {
            "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": document},
        }
    )


def app_pod(name: str, image: str, secrets: list[str]) -> Pod:
    return Pod.from_dict(
        {
            "metadata": {"name": name},
            "spec": {
                "containers": [{"name": "app", "image": image}],
                "imagePullSecrets": [{"name": secret} for secret in secrets],
            },
        }
    )


async def container_status(client: AsyncClient, name: str) -> dict[str, Any]:
    pod = (await client.get(Pod, name, namespace=NS)).to_dict()
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    status: dict[str, Any] = statuses[0]
    return status


def waiting_reason(status: dict[str, Any]) -> str | None:
    reason: str | None = (status.get("state") or {}).get("waiting", {}).get("reason")
    return reason


async def test_pull_secret_gives_the_registrys_digest(
    cluster: SandboxCluster, client: AsyncClient, sample_image: SampleImage
) -> None:
    assert sample_image.credential is not None
    registry = sample_image.registry.address
    await client.create(pull_secret("registry-a", registry, sample_image.credential))
    await client.create(app_pod("app", sample_image.reference, ["absent", "registry-a"]))
    status = await eventually(
        lambda: container_status(client, "app"), lambda s: "running" in s.get("state", {})
    )
    assert status["imageID"] == sample_image.digest_reference
    assert status["image"] == sample_image.reference
    assert status["ready"] is True and status["started"] is True
    assert status["containerID"].startswith("containerd://")


async def test_missing_and_wrong_credentials_end_in_image_pull_back_off(
    cluster: SandboxCluster, client: AsyncClient, sample_image: SampleImage
) -> None:
    canary = RegistryCredential.of("alice", "canary-Wr0ng-pa55")
    registry = sample_image.registry.address
    await client.create(pull_secret("wrong", registry, canary))
    await client.create(app_pod("anonymous", sample_image.reference, []))
    await client.create(app_pod("wrong-password", sample_image.reference, ["wrong"]))
    manifest_url = f"http://{registry}/v2/{sample_image.repository}/manifests/{sample_image.tag}"
    reference = sample_image.reference
    expected = (
        f'rpc error: code = Unknown desc = failed to pull and unpack image "{reference}": '
        f'failed to resolve reference "{reference}": unexpected status from HEAD request to '
        f"{manifest_url}: 401 Unauthorized"
    )
    for name in ("anonymous", "wrong-password"):
        status = await eventually(
            lambda name=name: container_status(client, name),  # type: ignore[misc]
            lambda s: waiting_reason(s) in ("ErrImagePull", "ImagePullBackOff"),
        )
        assert status["imageID"] == ""
        assert status["state"]["waiting"]["message"].endswith(expected)
        status = await eventually(
            lambda name=name: container_status(client, name),  # type: ignore[misc]
            lambda s: waiting_reason(s) == "ImagePullBackOff",
        )
        assert status["state"]["waiting"]["message"] == (
            f'Back-off pulling image "{sample_image.reference}": ErrImagePull: {expected}'
        )
    pods = [pod.to_dict() async for pod in client.list(Pod, namespace=NS)]
    events = [event.to_dict() async for event in client.list(Event, namespace=NS)]
    assert "canary-Wr0ng-pa55" not in json.dumps([pods, events])


async def test_missing_tag_is_not_found(
    cluster: SandboxCluster, client: AsyncClient, sample_image: SampleImage
) -> None:
    assert sample_image.credential is not None
    registry = sample_image.registry.address
    await client.create(pull_secret("registry-a", registry, sample_image.credential))
    image = f"{registry}/{sample_image.repository}:does-not-exist"
    await client.create(app_pod("typo", image, ["registry-a"]))
    status = await eventually(
        lambda: container_status(client, "typo"),
        lambda s: waiting_reason(s) in ("ErrImagePull", "ImagePullBackOff"),
    )
    assert status["state"]["waiting"]["message"].endswith(
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
        f'failed to resolve reference "{image}": {image}: not found'
    )


async def test_scanner_pod_runs_real_trivy_with_credentials_from_a_secret(
    cluster: SandboxCluster,
    client: AsyncClient,
    sample_image: SampleImage,
    trivy_server: TrivyServer,
) -> None:
    assert sample_image.credential is not None
    user, password = sample_image.credential.reveal()
    await client.create(
        Secret.from_dict(
            {"metadata": {"name": "scan-creds"}, "stringData": {"u": user, "p": password}}
        )
    )
    secret_env = [
        {"name": env, "valueFrom": {"secretKeyRef": {"name": "scan-creds", "key": key}}}
        for env, key in (("TRIVY_USERNAME", "u"), ("TRIVY_PASSWORD", "p"))
    ]
    args = [
        "image", "--server", trivy_server.url, "--token", "$(SERVER_TOKEN)",
        "--skip-db-update", "--skip-java-db-update", "--skip-check-update",
        "--skip-version-check", "--disable-telemetry", "--image-src", "remote",
        "--scanners", "vuln", "--format", "json", "--quiet",
        "--cache-dir", "/cache", "--cache-backend", "memory", sample_image.reference,
    ]  # fmt: skip
    pod = {
        "metadata": {"name": "scan"},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
            "containers": [
                {
                    "name": "trivy",
                    "image": f"{SCANNER}:0.76.0",
                    "args": args,
                    "env": [{"name": "SERVER_TOKEN", "value": trivy_server.token}, *secret_env],
                    "volumeMounts": [
                        {"name": "cache", "mountPath": "/cache"},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                    "resources": {"limits": {"memory": "512Mi"}},
                }
            ],
        },
    }
    await client.create(Pod.from_dict(pod))
    phase = await eventually(
        lambda: client.get(Pod, "scan", namespace=NS),
        lambda p: p.status is not None and p.status.phase in ("Succeeded", "Failed"),
        within=60,
    )
    output = "".join([line async for line in client.log("scan", namespace=NS)])
    assert phase.status.phase == "Succeeded", output
    report = json.loads(output)
    assert report["ArtifactName"] == sample_image.reference
    found = {
        (vulnerability["PkgName"], vulnerability["VulnerabilityID"])
        for result in report.get("Results") or []
        for vulnerability in result.get("Vulnerabilities") or []
    }
    assert found == sample_image.expected_findings
    status = await container_status(client, "scan")
    assert status["state"]["terminated"]["reason"] == "Completed"
    assert status["imageID"].startswith(f"{SCANNER}@sha256:")
    assert password not in output
