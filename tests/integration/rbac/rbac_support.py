"""Helpers of the RBAC tests: the rendered deploy/ RBAC, rules without one verb, the agent's
kubeconfig, and ``ocscan scan`` run as the agent's service account."""

from __future__ import annotations

import contextlib
import copy
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.stack import Sandbox
from prerequisites import require_binary

DEPLOY = Path(__file__).parents[3] / "deploy"
RBAC_SOURCE = DEPLOY / "base" / "rbac.yaml"
AGENT_NAMESPACE = "ocscan"
AGENT_ACCOUNT = "ocscan-agent"
AGENT_USER = f"system:serviceaccount:{AGENT_NAMESPACE}:{AGENT_ACCOUNT}"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@dataclass(frozen=True, order=True)
class Grant:
    """One verb on one resource, granted by the ClusterRole or the Role."""

    role_kind: str  # ClusterRole | Role
    group: str
    resource: str  # pods, pods/log, ...
    verb: str

    def __str__(self) -> str:
        group = f"{self.group}/" if self.group else ""
        return f"{self.role_kind}-{group}{self.resource}-{self.verb}"


def kubectl() -> str:
    """kubectl's path; missing it fails under CI and skips locally."""
    return require_binary("kubectl")


def render_deploy() -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/``, parsed."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def grants_of(role: dict[str, Any]) -> list[Grant]:
    """Every (group, resource, verb) a Role or ClusterRole grants."""
    return sorted(
        {
            Grant(role["kind"], group, resource, verb)
            for rule in role["rules"]
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
    )


def source_grants() -> list[Grant]:
    """The grants of deploy/base/rbac.yaml, read without kubectl (to parametrize tests)."""
    documents = yaml.safe_load_all(RBAC_SOURCE.read_text())
    roles = [doc for doc in documents if doc and doc["kind"] in ("ClusterRole", "Role")]
    return [grant for role in roles for grant in grants_of(role)]


def without(role: dict[str, Any], grant: Grant) -> dict[str, Any]:
    """``role`` minus ``grant``'s verb on ``grant``'s resource; everything else unchanged."""
    rules: list[dict[str, Any]] = []
    for rule in role["rules"]:
        hit = (
            grant.group in rule["apiGroups"]
            and grant.resource in rule["resources"]
            and grant.verb in rule["verbs"]
        )
        if not hit:
            rules.append(rule)
            continue
        # Split the rule: the other resources keep every verb, this one loses one.
        others = [res for res in rule["resources"] if res != grant.resource]
        if others:
            rules.append(dict(rule, resources=others))
        verbs = [verb for verb in rule["verbs"] if verb != grant.verb]
        if verbs:
            rules.append(dict(rule, resources=[grant.resource], verbs=verbs))
    reduced = copy.deepcopy(role)
    reduced["rules"] = rules
    return reduced


def apply(sandbox: Sandbox, obj: dict[str, Any]) -> None:
    """Create ``obj``, or replace it when it exists (as ``kubectl apply`` ends up doing)."""
    assert sandbox.kube is not None
    store = sandbox.kube.store
    rtype = store.registry.for_kind(obj["apiVersion"], obj["kind"])
    assert rtype is not None, obj["kind"]
    namespace = obj["metadata"].get("namespace") if rtype.namespaced else None
    try:
        store.create(rtype, namespace, copy.deepcopy(obj))
    except ApiError as error:
        if error.code != 409:
            raise
        store.update(rtype, namespace, copy.deepcopy(obj))


@dataclass
class ScanRun:
    """What ``ocscan scan`` did: its exit code, stdout and stderr."""

    code: int
    stdout: str
    stderr: str


def ocscan_scan(kubeconfig: Path, config_file: Path, *extra: str) -> ScanRun:
    """``ocscan scan --format json --deliver`` in a process of its own."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ocscan",
            "scan",
            "--kubeconfig",
            str(kubeconfig),
            "--config",
            str(config_file),
            "--format",
            "json",
            "--deliver",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return ScanRun(done.returncode, done.stdout, done.stderr)


def statuses_of(run: ScanRun) -> dict[tuple[str, str], str]:
    """(namespace, workload) -> the status of its single container, from the JSON report."""
    report = json.loads(run.stdout)
    return {(w["namespace"], w["name"]): w["containers"][0]["status"] for w in report["workloads"]}


def errors_of(run: ScanRun) -> dict[tuple[str, str], str]:
    """(namespace, workload) -> its container's error message ("" when scanned)."""
    report = json.loads(run.stdout)
    return {
        (w["namespace"], w["name"]): (w["containers"][0]["error"] or {}).get("message", "")
        for w in report["workloads"]
    }


def forbidden(verb: str, resource: str) -> str:
    """The part of the API server's 403 message that names the verb and the resource."""
    return f'cannot {verb} resource "{resource}"'


STALE_REPORT = "deployment-gone-app"  # a report whose workload is gone: pruning deletes it


def vulnerability_reports(sandbox: Sandbox, namespace: str) -> dict[str, dict[str, Any]]:
    """The VulnerabilityReports in ``namespace``, by name."""
    assert sandbox.kube is not None
    store = sandbox.kube.store
    rtype = store.registry.for_kind("aquasecurity.github.io/v1alpha1", "VulnerabilityReport")
    assert rtype is not None, "the VulnerabilityReport CRD is not installed"
    return {obj["metadata"]["name"]: obj for obj in store.list(rtype, namespace)}


MISSING_REPORT = ("shop", "deployment-api-app")  # deleted before each run: one to create


def stage_reports(sandbox: Sandbox, namespace: str = "batch") -> None:
    """Give the next cycle each kind of report write: an ocscan report of a workload that no
    longer runs (to prune), one missing (to create), and the others there (to replace)."""
    assert sandbox.kube is not None
    store = sandbox.kube.store
    rtype = store.registry.for_kind("aquasecurity.github.io/v1alpha1", "VulnerabilityReport")
    assert rtype is not None
    with contextlib.suppress(ApiError):
        store.delete(rtype, *MISSING_REPORT)
    template = next(iter(vulnerability_reports(sandbox, namespace).values()))
    stale = {key: value for key, value in template.items() if key != "metadata"}
    stale["metadata"] = {
        "name": STALE_REPORT,
        "namespace": namespace,
        "labels": template["metadata"]["labels"],
    }
    apply(sandbox, stale)
