"""Discovery, /version and OpenAPI, as kubectl and lightkube read them."""

from __future__ import annotations

import json

from kube_support import Kubectl, admin_http

from ocscan.sandbox.kube.server import KubeEmulator


def test_version_and_legacy_discovery(kube: KubeEmulator) -> None:
    with admin_http(kube) as http:
        version = http.get("/version").json()
        assert (version["major"], version["minor"]) == ("1", "32")
        assert http.get("/api").json()["versions"] == ["v1"]
        groups = {g["name"]: g for g in http.get("/apis").json()["groups"]}
        assert {"apps", "batch", "coordination.k8s.io", "rbac.authorization.k8s.io",
                "networking.k8s.io", "apiextensions.k8s.io"} <= set(groups)  # fmt: skip
        assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
        core = {res["name"]: res for res in http.get("/api/v1").json()["resources"]}
        apps = http.get("/apis/apps/v1").json()
    assert core["pods"]["namespaced"] is True and core["pods"]["shortNames"] == ["po"]
    assert core["pods/log"]["verbs"] == ["get"]
    assert core["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert core["namespaces"]["namespaced"] is False
    assert "secrets/status" not in core  # no status subresource
    assert apps["groupVersion"] == "apps/v1"
    assert {"deployments", "replicasets", "statefulsets", "daemonsets"} <= {
        res["name"] for res in apps["resources"]
    }


def test_aggregated_discovery_request_gets_the_legacy_form(kube: KubeEmulator) -> None:
    aggregated = (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    )
    with admin_http(kube) as http:
        answer = http.get("/apis", headers={"Accept": aggregated})
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["kind"] == "APIGroupList"


def test_openapi_v3_advertises_server_side_field_validation(kube: KubeEmulator) -> None:
    with admin_http(kube) as http:
        index = http.get("/openapi/v3").json()["paths"]
        apps = http.get(index["apis/apps/v1"]["serverRelativeURL"]).json()
    patch = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "version": "v1",
        "kind": "Deployment",
    }
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    containers = apps["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"][
        "containers"
    ]
    assert containers["x-kubernetes-patch-merge-key"] == "name"


def test_kubectl_discovers_everything(kubectl: Kubectl) -> None:
    resources = kubectl.run("api-resources", "-o", "name").stdout.split()
    assert {"pods", "deployments.apps", "cronjobs.batch", "leases.coordination.k8s.io",
            "customresourcedefinitions.apiextensions.k8s.io"} <= set(resources)  # fmt: skip
    versions = json.loads(kubectl.run("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == "v1.32.0"
    explained = kubectl.run("explain", "deployment.spec.replicas").stdout
    assert "replicas" in explained
