"""The ServiceAccount admission plugin and the default ServiceAccount, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.apps_v1 import ReplicaSet
from lightkube.resources.core_v1 import ConfigMap, Event, Namespace, Pod, ServiceAccount
from polling import eventually

from ocscan.sandbox.kube.cluster import SandboxCluster
from ocscan.sandbox.kube.imagepull import ImagePuller
from ocscan.sandbox.kube.kubelet import KubeletConfig
from ocscan.sandbox.kube.server import KubeEmulator

NS = "default"


@pytest.fixture
def cluster(kube: KubeEmulator) -> Iterator[SandboxCluster]:
    config = KubeletConfig(images=ImagePuller(resolve_digest=None, fake_digests=True))
    with SandboxCluster(kube.store, config, root_ca="CA PEM") as running:
        yield running


def pod(name: str, **spec: Any) -> Pod:
    body = {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "app:1"}]}}
    body["spec"] |= spec
    return Pod.from_dict(body)


async def test_every_namespace_gets_a_default_service_account_and_root_ca(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    await client.create(Namespace.from_dict({"metadata": {"name": "team-a"}}))
    accounts = await eventually(lambda: _names(client, "team-a"), bool)
    assert accounts == ["default"]
    # The controller writes the account and the ConfigMap one after the other.
    ca = await eventually(lambda: _get(client, ConfigMap, "kube-root-ca.crt"), bool)
    assert ca.data == {"ca.crt": "CA PEM"}
    await client.delete(ServiceAccount, "default", namespace="team-a")
    await eventually(lambda: _get(client, ServiceAccount, "default"), bool)


async def _get(client: AsyncClient, kind: Any, name: str) -> Any:
    """``kind`` ``name`` in team-a, or None while it does not exist."""
    try:
        return await client.get(kind, name, namespace="team-a")
    except ApiError:
        return None


async def test_pull_secrets_are_copied_only_into_pods_that_list_none(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    await client.create(
        ServiceAccount.from_dict(
            {
                "metadata": {"name": "builder"},
                "imagePullSecrets": [{"name": "sa-one"}, {"name": "sa-two"}],
            }
        )
    )
    inherits = await client.create(pod("inherits", serviceAccountName="builder"))
    keeps = await client.create(
        pod("keeps", serviceAccountName="builder", imagePullSecrets=[{"name": "own"}])
    )
    defaulted = await client.create(pod("defaulted"))
    assert inherits.spec is not None and keeps.spec is not None and defaulted.spec is not None
    assert [s.name for s in inherits.spec.imagePullSecrets or []] == ["sa-one", "sa-two"]
    assert [s.name for s in keeps.spec.imagePullSecrets or []] == ["own"]
    assert defaulted.spec.serviceAccountName == "default"
    assert defaulted.spec.imagePullSecrets is None


async def test_a_missing_service_account_is_forbidden(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    with pytest.raises(ApiError) as caught:
        await client.create(pod("orphan", serviceAccountName="ghost"))
    status = caught.value.status
    assert status.code == 403
    assert status.reason == "Forbidden"
    assert status.message == (
        'pods "orphan" is forbidden: error looking up service account default/ghost: '
        'serviceaccount "ghost" not found'
    )


async def test_controller_retries_until_the_service_account_exists(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    template = {
        "metadata": {"labels": {"app": "late"}},
        "spec": {"serviceAccountName": "late", "containers": [{"name": "c", "image": "app:1"}]},
    }
    await client.create(
        ReplicaSet.from_dict(
            {
                "metadata": {"name": "late"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "late"}},
                    "template": template,
                },
            }
        )
    )
    events = await eventually(
        lambda: _events(client),
        lambda found: any(e.reason == "FailedCreate" for e in found),
    )
    failed = next(e for e in events if e.reason == "FailedCreate")
    assert failed.message == (
        'Error creating: pods "late-" is forbidden: error looking up service account '
        'default/late: serviceaccount "late" not found'
    )
    await client.create(ServiceAccount.from_dict({"metadata": {"name": "late"}}))
    pods = await eventually(lambda: _pods(client), lambda found: len(found) == 1)
    assert pods[0].spec.serviceAccountName == "late"


async def test_service_account_token_is_mounted_unless_disabled(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    mounted = await client.create(pod("mounted"))
    unmounted = await client.create(pod("unmounted", automountServiceAccountToken=False))
    assert mounted.spec is not None and unmounted.spec is not None
    volumes = [v.name for v in mounted.spec.volumes or []]
    assert len(volumes) == 1 and volumes[0].startswith("kube-api-access-")
    mounts = mounted.spec.containers[0].volumeMounts or []
    assert [(m.name, m.mountPath, m.readOnly) for m in mounts] == [
        (volumes[0], "/var/run/secrets/kubernetes.io/serviceaccount", True)
    ]
    assert not unmounted.spec.volumes
    assert not unmounted.spec.containers[0].volumeMounts


async def _names(client: AsyncClient, namespace: str) -> list[str]:
    return [
        sa.metadata.name
        async for sa in client.list(ServiceAccount, namespace=namespace)
        if sa.metadata is not None and sa.metadata.name
    ]


async def _events(client: AsyncClient) -> list[Event]:
    return [event async for event in client.list(Event, namespace=NS)]


async def _pods(client: AsyncClient) -> list[Pod]:
    return [p async for p in client.list(Pod, namespace=NS)]
