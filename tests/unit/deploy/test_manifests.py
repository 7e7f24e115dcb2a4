"""The deploy/ manifests render offline, validate, and grant no more than they must."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ocscan.config import Config, parse_config
from prerequisites import require_binary

DEPLOY = Path(__file__).parents[3] / "deploy"
TARGETS = ["", "overlays/namespaces", "overlays/gitlab"]


def kubectl() -> str:
    return require_binary("kubectl")


def render(target: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def config_of(target: str) -> Config:
    """The agent configuration that ``target`` ships in its ConfigMap."""
    configmap = by_kind(render(target), "ConfigMap", "ocscan-config")
    return parse_config(yaml.safe_load(configmap["data"]["config.yaml"]))


def by_kind(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


@pytest.mark.parametrize("target", TARGETS)
def test_every_rendered_object_validates(target: str) -> None:
    objects = render(target)
    assert len(objects) >= 14
    version = kubernetes_validate.latest_version()
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_shipped_configuration_is_valid(target: str) -> None:
    configmap = by_kind(render(target), "ConfigMap", "ocscan-config")
    config = parse_config(yaml.safe_load(configmap["data"]["config.yaml"]))
    assert config.scanner.namespace == "ocscan"
    assert config.scanner.trivy_server == "http://trivy.ocscan.svc:4954"


def rules(obj: dict[str, Any]) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for rule in obj["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault(f"{group}/{resource}", set()).update(rule["verbs"])
    return granted


REPORT_VERBS = {"list", "create", "update", "delete"}  # list, write, prune


def test_cluster_role_lists_workloads_and_gets_secrets_without_listing() -> None:
    # Only what discovery, events and VulnerabilityReports call: the RBAC integration
    # tests prove each of these verbs is needed and that nothing else is.
    cluster = rules(by_kind(render(""), "ClusterRole", "ocscan-agent"))
    assert cluster == {
        "/pods": {"list"},
        "/serviceaccounts": {"list"},
        "/nodes": {"list"},
        "apps/replicasets": {"list"},
        "batch/jobs": {"list"},
        "/secrets": {"get"},
        "/events": {"create"},
        "aquasecurity.github.io/vulnerabilityreports": REPORT_VERBS,
    }


def test_namespaced_role_is_limited_to_scanner_objects_and_the_lease() -> None:
    objects = render("")
    role = by_kind(objects, "Role", "ocscan-agent")
    assert role["metadata"]["namespace"] == "ocscan"
    assert rules(role) == {
        "batch/jobs": {"create", "patch", "delete"},
        "/pods": {"watch"},
        "/events": {"list"},
        "/secrets": {"create", "delete"},
        "/pods/log": {"get"},
        "coordination.k8s.io/leases": {"get", "create", "update"},
    }


def test_scanner_account_has_no_token_and_no_binding() -> None:
    objects = render("")
    account = by_kind(objects, "ServiceAccount", "ocscan-scanner")
    assert account["automountServiceAccountToken"] is False
    subjects = [s for o in objects if o["kind"].endswith("Binding") for s in o["subjects"]]
    assert all(s["name"] != "ocscan-scanner" for s in subjects)


def test_agent_runs_two_hardened_replicas() -> None:
    agent = by_kind(render(""), "Deployment", "ocscan-agent")
    assert agent["spec"]["replicas"] == 2
    container = agent["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_namespaces_overlay_adds_the_scanner_network_policy() -> None:
    objects = render("overlays/namespaces")
    policy = by_kind(objects, "NetworkPolicy", "ocscan-scanner-egress")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "scanner"


def test_gitlab_overlay_mounts_the_gitlab_secret() -> None:
    objects = render("overlays/gitlab")
    config = parse_config(
        yaml.safe_load(by_kind(objects, "ConfigMap", "ocscan-config")["data"]["config.yaml"])
    )
    assert config.sinks.gitlab is not None
    mounts = by_kind(objects, "Deployment", "ocscan-agent")["spec"]["template"]["spec"][
        "containers"
    ][0]["volumeMounts"]
    assert str(config.sinks.gitlab.token_file).startswith(
        next(m["mountPath"] for m in mounts if m["name"] == "gitlab")
    )


@pytest.mark.parametrize("target", TARGETS)
def test_the_agent_can_read_every_volume_it_mounts(target: str) -> None:
    spec = by_kind(render(target), "Deployment", "ocscan-agent")["spec"]["template"]["spec"]
    user = spec["securityContext"]["runAsUser"]
    group = spec["securityContext"].get("fsGroup")
    for volume in spec["volumes"]:
        source = volume.get("secret") or volume.get("configMap")
        if source is None:
            continue
        mode = source.get("defaultMode", 0o644)
        # Volume files belong to root (and to the fsGroup when one is set).
        readable = bool(mode & 0o004) or (group is not None and bool(mode & 0o040))
        assert readable, f"{volume['name']}: mode {mode:o} is unreadable for user {user}"


@pytest.mark.parametrize("target", ["overlays/namespaces", "overlays/gitlab"])
def test_overlays_keep_the_base_exclusions(target: str) -> None:
    base = parse_config(
        yaml.safe_load(by_kind(render(""), "ConfigMap", "ocscan-config")["data"]["config.yaml"])
    )
    config = parse_config(
        yaml.safe_load(by_kind(render(target), "ConfigMap", "ocscan-config")["data"]["config.yaml"])
    )
    if not config.targets.namespaces:  # scanning every namespace: never the agent's own
        assert set(base.targets.exclude_namespaces) <= set(config.targets.exclude_namespaces)
