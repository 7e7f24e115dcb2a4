"""RBAC enforcement from Role/ClusterRole and bindings in the store, per identity."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from kube_support import Kubectl
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod, Secret

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.server import KubeEmulator
from ocscan.sandbox.registry import make_tls_files

AGENT = "system:serviceaccount:ocscan:agent"


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeEmulator]:
    """This module's emulator serves HTTPS: kubectl sends bearer tokens only over TLS."""
    with KubeEmulator(tls=make_tls_files(tmp_path / "tls")) as emulator:
        yield emulator


@pytest.fixture
def rbac_objects(kube: KubeEmulator) -> None:
    store = kube.store
    for namespace in ("ocscan", "apps"):
        store.create(r.NAMESPACES, None, {"metadata": {"name": namespace}})
    store.create(r.SERVICE_ACCOUNTS, "ocscan", {"metadata": {"name": "agent"}})
    store.create(r.CLUSTER_ROLES, None, {
        "metadata": {"name": "reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods", "namespaces"],
                   "verbs": ["get", "list", "watch"]}],
    })  # fmt: skip
    store.create(r.CLUSTER_ROLE_BINDINGS, None, {
        "metadata": {"name": "reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": "ocscan"}],
    })  # fmt: skip
    store.create(r.ROLES, "apps", {
        "metadata": {"name": "pull-secret"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                   "resourceNames": ["registry"]}],
    })  # fmt: skip
    store.create(r.ROLE_BINDINGS, "apps", {
        "metadata": {"name": "pull-secret"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "pull-secret"},
        "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": "ocscan"}],
    })  # fmt: skip
    store.create(r.ROLES, "ocscan", {
        "metadata": {"name": "scanner"},
        "rules": [{"apiGroups": [""], "resources": ["secrets", "configmaps"],
                   "verbs": ["create", "delete"]},
                  {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}],
    })  # fmt: skip
    store.create(r.ROLE_BINDINGS, "ocscan", {
        "metadata": {"name": "scanner"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "scanner"},
        "subjects": [{"kind": "ServiceAccount", "name": "agent"}],  # namespace from binding
    })  # fmt: skip
    store.create(r.SECRETS, "apps", {"metadata": {"name": "registry"}})
    store.create(r.SECRETS, "apps", {"metadata": {"name": "other"}})
    kube.rbac.enable(users=[AGENT])


@pytest.fixture
def agent_kubeconfig(kube: KubeEmulator, tmp_path: Path, rbac_objects: None) -> Path:
    token = kube.auth.issue_service_account("ocscan", "agent")
    return kube.write_kubeconfig(tmp_path / "agent.kubeconfig", token=token, namespace="ocscan")


@pytest.fixture
async def agent(agent_kubeconfig: Path) -> AsyncIterator[AsyncClient]:
    api = AsyncClient(config=KubeConfig.from_file(agent_kubeconfig))
    try:
        yield api
    finally:
        await api.close()


async def _denied(call: object) -> str:
    with pytest.raises(ApiError) as denied:
        await call  # type: ignore[misc]
    assert denied.value.status.code == 403
    assert denied.value.status.reason == "Forbidden"
    return str(denied.value.status.message)


async def test_cluster_role_binding_grants_everywhere(agent: AsyncClient) -> None:
    assert [p async for p in agent.list(Pod, namespace="apps")] == []
    assert [p async for p in agent.list(Pod, namespace="*")] == []
    assert {n.metadata.name async for n in agent.list(Namespace)} >= {"apps", "ocscan"}


async def test_denials_carry_the_real_message(agent: AsyncClient) -> None:
    async def list_secrets() -> None:
        [s async for s in agent.list(Secret, namespace="apps")]

    assert await _denied(list_secrets()) == (
        f'secrets is forbidden: User "{AGENT}" cannot list resource "secrets" in API group "" '
        'in the namespace "apps"'
    )
    assert await _denied(agent.get(Secret, "other", namespace="apps")) == (
        f'secrets "other" is forbidden: User "{AGENT}" cannot get resource "secrets" in API '
        'group "" in the namespace "apps"'
    )
    assert await _denied(agent.delete(Namespace, "apps")) == (
        f'namespaces "apps" is forbidden: User "{AGENT}" cannot delete resource "namespaces" '
        'in API group "" in the namespace "apps"'
    )

    async def list_config_maps_everywhere() -> None:
        [c async for c in agent.list(ConfigMap, namespace="*")]

    assert await _denied(list_config_maps_everywhere()) == (
        f'configmaps is forbidden: User "{AGENT}" cannot list resource "configmaps" in API '
        'group "" at the cluster scope'
    )


async def test_resource_names_and_namespaced_roles(agent: AsyncClient) -> None:
    secret = await agent.get(Secret, "registry", namespace="apps")
    assert secret.metadata.name == "registry"
    created = await agent.create(ConfigMap(metadata=ObjectMeta(name="tmp")), namespace="ocscan")
    assert created.metadata.name == "tmp"
    await agent.delete(ConfigMap, "tmp", namespace="ocscan")
    await _denied(agent.create(ConfigMap(metadata=ObjectMeta(name="tmp")), namespace="apps"))


async def test_subresources_are_authorized_separately(
    kube: KubeEmulator, agent: AsyncClient
) -> None:
    kube.register_log_provider(lambda ns, pod, container, follow: iter([b"hello\n"]))
    kube.store.create(r.PODS, "ocscan", {"metadata": {"name": "p"},
                      "spec": {"containers": [{"name": "c", "image": "i"}]}})  # fmt: skip
    kube.store.create(r.PODS, "apps", {"metadata": {"name": "p"},
                      "spec": {"containers": [{"name": "c", "image": "i"}]}})  # fmt: skip
    lines = [line async for line in agent.log("p", namespace="ocscan")]
    assert lines == ["hello\n"]

    async def other_log() -> None:
        [line async for line in agent.log("p", namespace="apps")]

    message = await _denied(other_log())
    assert 'cannot get resource "pods/log" in API group ""' in message


async def test_unenforced_identities_and_bad_tokens(
    kube: KubeEmulator, client: AsyncClient, rbac_objects: None, tmp_path: Path
) -> None:
    # the admin (system:masters) is not subject to RBAC
    assert [s.metadata.name async for s in client.list(Secret, namespace="apps")] == [
        "other",
        "registry",
    ]
    bad = kube.write_kubeconfig(tmp_path / "bad.kubeconfig", token="not-a-token")
    api = AsyncClient(config=KubeConfig.from_file(bad))
    try:
        with pytest.raises(ApiError) as unauthorized:
            await api.get(Namespace, "default")
        assert unauthorized.value.status.code == 401
    finally:
        await api.close()
    assert kube.request_log.records(code=401)[0].user == "system:anonymous"


def test_kubectl_auth_can_i(kubectl: Kubectl, agent_kubeconfig: Path) -> None:
    def can_i(*args: str) -> str:
        result = kubectl.run("auth", "can-i", *args, kubeconfig=agent_kubeconfig, check=False)
        return result.stdout.strip() or result.stderr.strip()

    assert can_i("list", "pods", "-n", "apps") == "yes"
    assert can_i("list", "secrets", "-n", "apps") == "no"
    assert can_i("get", "secrets/registry", "-n", "apps") == "yes"
    assert can_i("get", "pods", "--subresource=log", "-n", "ocscan") == "yes"
    denied = kubectl.run("get", "secrets", "-n", "apps", kubeconfig=agent_kubeconfig, check=False)
    assert denied.returncode != 0
    assert (
        f'Error from server (Forbidden): secrets is forbidden: User "{AGENT}" cannot list '
        'resource "secrets" in API group "" in the namespace "apps"'
    ) in denied.stderr


def test_enforcement_for_everyone_but_masters(kube: KubeEmulator, rbac_objects: None) -> None:
    kube.rbac.enable()
    token = kube.auth.issue_user("jane", groups=("devs",))
    kube.store.create(r.CLUSTER_ROLE_BINDINGS, None, {
        "metadata": {"name": "devs-read"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "reader"},
        "subjects": [{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}],
    })  # fmt: skip
    assert kube.tls is not None
    trust = ssl.create_default_context(cafile=str(kube.tls.ca_file))
    bearer = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=kube.url, headers=bearer, verify=trust) as http:
        assert http.get("/api/v1/pods").status_code == 200
        assert http.get("/api/v1/secrets").status_code == 403
        assert http.get("/api").status_code == 200  # discovery is open
    with httpx.Client(base_url=kube.url, verify=trust) as anonymous:
        assert anonymous.get("/api/v1/pods").status_code == 403
