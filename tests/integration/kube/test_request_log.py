"""The request log: which identity used which verb on which resource, and how it ended."""

from __future__ import annotations

from pathlib import Path

import pytest
from kube_support import admin_http
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.server import KubeEmulator


async def test_records_verbs_resources_names_and_codes(
    client: AsyncClient, kube: KubeEmulator
) -> None:
    kube.request_log.clear()
    await client.create(ConfigMap(metadata=ObjectMeta(name="a")), namespace="default")
    await client.get(ConfigMap, "a", namespace="default")
    [c async for c in client.list(ConfigMap, namespace="default")]
    await client.patch(ConfigMap, "a", {"data": {"k": "v"}}, namespace="default")
    await client.delete(ConfigMap, "a", namespace="default")
    with pytest.raises(ApiError):
        await client.get(Secret, "missing", namespace="kube-system")

    records = kube.request_log.records()
    assert [(rec.verb, rec.resource, rec.namespace, rec.name, rec.code) for rec in records] == [
        ("create", "configmaps", "default", None, 201),
        ("get", "configmaps", "default", "a", 200),
        ("list", "configmaps", "default", None, 200),
        ("patch", "configmaps", "default", "a", 200),
        ("delete", "configmaps", "default", "a", 200),
        ("get", "secrets", "kube-system", "missing", 404),
    ]
    assert {rec.user for rec in records} == {"kubernetes-admin"}
    assert kube.request_log.count(verb="get") == 2
    assert kube.request_log.count(resource="configmaps", code=200) == 4
    assert kube.request_log.verbs_by_resource() == {
        "configmaps": {"create", "get", "list", "patch", "delete"},
        "secrets": {"get"},
    }


async def test_identity_per_token(kube: KubeEmulator, tmp_path: Path) -> None:
    token = kube.auth.issue_service_account("default", "scanner")
    config = kube.write_kubeconfig(tmp_path / "sa.kubeconfig", token=token, namespace="default")
    api = AsyncClient(config=KubeConfig.from_file(config))
    try:
        with pytest.raises(ApiError):
            await api.get(Secret, "pull", namespace="default")
    finally:
        await api.close()
    assert kube.request_log.verbs_by_resource(user="system:serviceaccount:default:scanner") == {
        "secrets": {"get"}
    }


def test_subresources_and_discovery_are_recorded(kube: KubeEmulator) -> None:
    kube.store.create(
        r.PODS,
        "default",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    )
    with admin_http(kube) as http:
        http.get("/api/v1")
        http.get("/api/v1/namespaces/default/pods/p/log")
        http.get("/api/v1/namespaces/default/pods/p/status")
    discovery, log, status = kube.request_log.records()
    assert (discovery.verb, discovery.resource, discovery.path) == ("get", "", "/api/v1")
    assert (log.verb, log.resource, log.name, log.code) == ("get", "pods/log", "p", 400)
    assert (status.verb, status.resource, status.code) == ("get", "pods/status", 200)
