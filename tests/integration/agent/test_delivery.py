"""An agent delivering to every sink at once: the JSON and GitLab report files,
VulnerabilityReports read back with kubectl, and the GitLab agent API (emulated), across
cycles in which workloads go away or fail."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from agent_support import (
    AGENT_ID,
    GitLabFiles,
    agent_config,
    delete,
    eventually,
    pod_count,
    running_agent,
)

from ocscan.kube.client import make_client
from ocscan.kube.vulnerabilityreports import ReportTypeMissingError, write_reports
from ocscan.report.gitlab_report import validate_gitlab_report
from ocscan.report.model import SCANNED, ContainerReport, CycleReport, WorkloadReport
from ocscan.report.vulnerabilityreport import crd, workload_reports
from ocscan.sandbox.gitlab import BASE_PATH
from ocscan.sandbox.kube.server import KubeEmulator
from ocscan.sandbox.stack import PULL_SECRET, Sandbox, deployment
from ocscan.sandbox.trivydb import SAMPLE_APP, SAMPLE_MINIMAL

CRD_KEY = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
SINKS = {"web": SAMPLE_APP, "api": SAMPLE_MINIMAL}
ALL_SINKS = {"json_file": True, "gitlab_report_file": True, "vulnerability_reports": True,
             "gitlab": True}  # fmt: skip


async def kubectl_get(kubectl: str, sandbox: Sandbox, *args: str) -> str:
    """``kubectl get <args>``'s output; the command must succeed."""
    process = await asyncio.create_subprocess_exec(
        kubectl, "--kubeconfig", str(sandbox.kubeconfig), "get", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def vulnerability_reports(kubectl: str, sandbox: Sandbox, namespace: str) -> dict[str, Any]:
    """``kubectl get vulnerabilityreports -n <namespace> -o json``, by name."""
    listed = json.loads(
        await kubectl_get(kubectl, sandbox, "vulnerabilityreports", "-n", namespace, "-o", "json")
    )
    return {item["metadata"]["name"]: item for item in listed["items"]}


def read_json(path: str) -> Any:
    return json.loads(Path(path).read_text())


def severity_counts(report: CycleReport, namespace: str, workload: str) -> dict[str, int]:
    """What a VulnerabilityReport's summary must say for the workload's container ``app``."""
    (entry,) = [w for w in report.workloads if (w.namespace, w.name) == (namespace, workload)]
    (container,) = entry.containers
    unique = {(f.vulnerability_id, f.package_name, f.installed_version): f.severity
              for f in container.vulnerabilities}  # fmt: skip
    counts = Counter(severity.value.lower() + "Count" for severity in unique.values())
    return {key: counts.get(key, 0) for key in
            ("criticalCount", "highCount", "mediumCount", "lowCount", "unknownCount")}  # fmt: skip


def gitlab_state(gitlab: GitLabFiles) -> dict[tuple[str, str, str, str], str]:
    """``(namespace, workload, package, vulnerability id) -> state`` of the agent's findings."""
    return {
        (f.namespace, f.name, f.package_name, f.identifier): f.state
        for f in gitlab.emulator.findings(agent_id=AGENT_ID)
    }


def expected_gitlab(namespace: str, *workloads: str) -> set[tuple[str, str, str, str]]:
    return {
        (namespace, workload, package, vulnerability)
        for workload in workloads
        for package, vulnerability in SINKS[workload].expected_findings
    }


def resolutions(gitlab: GitLabFiles) -> list[list[str]]:
    """The uuids of every ``POST /scan_result`` so far."""
    return [
        r.body["uuids"]
        for r in gitlab.emulator.requests
        if r.method == "POST" and r.path == BASE_PATH + "/scan_result"
    ]


def sinks_config(tmp_path: Path, gitlab: GitLabFiles) -> dict[str, Any]:
    return {
        "json_file": str(tmp_path / "cycle.json"),
        "gitlab_report_file": str(tmp_path / "gl-container-scanning-report.json"),
        "vulnerability_reports": True,
        "gitlab": gitlab.sink(),
    }


def deploy(sandbox: Sandbox, namespace: str, *workloads: str) -> None:
    for name in workloads:
        image = sandbox.image(SINKS[name].repository).reference
        sandbox.apply(deployment(name, namespace, image, pull_secrets=[PULL_SECRET]))
    sandbox.wait_for_running(namespace, len(workloads))


async def remove(sandbox: Sandbox, namespace: str, workload: str) -> datetime:
    """Delete a Deployment and wait until its pods are gone; the moment after."""
    before = pod_count(sandbox, namespace)
    delete(sandbox, "Deployment", namespace, workload)
    await eventually(lambda: pod_count(sandbox, namespace) < before, f"pods of {workload} to go")
    return datetime.now(UTC)


async def test_every_sink_then_gone_workloads_are_resolved_and_their_reports_removed(
    sandbox: Sandbox, namespace: str, gitlab: GitLabFiles, kubectl: str, tmp_path: Path
) -> None:
    deploy(sandbox, namespace, "web", "api")
    sinks = sinks_config(tmp_path, gitlab)
    config = agent_config(sandbox, [namespace], lease=namespace, sinks=sinks)

    async with running_agent(sandbox.kubeconfig, config, identity="solo") as run:
        (first,) = await run.cycles(1)
        assert first.sinks == ALL_SINKS
        report = first.report
        assert report.cycle.namespaces == {namespace: True}

        # The files: the cycle report, and a schema-valid GitLab report of the same findings.
        written = CycleReport.model_validate(read_json(sinks["json_file"]))
        assert written.cycle.started_at == report.cycle.started_at
        document = read_json(sinks["gitlab_report_file"])
        validate_gitlab_report(document)
        assert document["scan"]["status"] == "success"
        entries = {
            (v["details"]["kubernetes_resource"]["items"]["name"]["value"],
             v["location"]["dependency"]["package"]["name"], v["identifiers"][0]["value"])
            for v in document["vulnerabilities"]
        }  # fmt: skip
        assert {(namespace, *entry) for entry in entries} == expected_gitlab(
            namespace, "web", "api"
        )

        # VulnerabilityReports, as kubectl shows them, one per container, owned by the workload.
        table = await kubectl_get(kubectl, sandbox, "vulnerabilityreports", "-A")
        assert "deployment-web-app" in table and "deployment-api-app" in table
        reports = await vulnerability_reports(kubectl, sandbox, namespace)
        assert set(reports) == {"deployment-web-app", "deployment-api-app"}
        for workload in ("web", "api"):
            item = reports[f"deployment-{workload}-app"]
            summary = {k: v for k, v in item["report"]["summary"].items() if k != "noneCount"}
            assert summary == severity_counts(report, namespace, workload)
            (owner,) = item["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"]) == ("Deployment", workload)

        # GitLab: every finding open.
        assert gitlab_state(gitlab) == dict.fromkeys(expected_gitlab(namespace, "web", "api"),
                                                     "detected")  # fmt: skip

        # web goes away: its findings are resolved, its report goes with it.
        gone = await remove(sandbox, namespace, "web")
        second = await run.cycle_started_after(gone)
        assert second.sinks == ALL_SINKS
        states = gitlab_state(gitlab)
        assert {k for k, v in states.items() if v == "resolved"} == expected_gitlab(
            namespace, "web"
        )
        assert {k for k, v in states.items() if v == "detected"} == expected_gitlab(
            namespace, "api"
        )
        assert set(await vulnerability_reports(kubectl, sandbox, namespace)) == {
            "deployment-api-app"
        }

        # Nothing left: a clean cluster resolves every old finding (an empty scan_result).
        gone = await remove(sandbox, namespace, "api")
        third = await run.cycle_started_after(gone)
        assert third.sinks == ALL_SINKS
        assert third.report.workloads == []
        assert set(gitlab_state(gitlab).values()) == {"resolved"}
        assert resolutions(gitlab)[-1] == []
        document = read_json(sinks["gitlab_report_file"])
        validate_gitlab_report(document)
        assert document["vulnerabilities"] == [] and document["scan"]["status"] == "success"
        assert await vulnerability_reports(kubectl, sandbox, namespace) == {}


async def test_a_namespace_that_was_not_fully_scanned_resolves_nothing(
    sandbox: Sandbox, namespace: str, gitlab: GitLabFiles, tmp_path: Path
) -> None:
    other = f"{namespace[:45]}-b"
    sandbox.namespace(other)
    sandbox.pull_secret(PULL_SECRET, other)
    deploy(sandbox, namespace, "web")
    deploy(sandbox, other, "web")
    sinks = sinks_config(tmp_path, gitlab)
    config = agent_config(sandbox, [namespace, other], lease=namespace, sinks=sinks)

    async with running_agent(sandbox.kubeconfig, config, identity="solo") as run:
        (first,) = await run.cycles(1)
        assert first.sinks == ALL_SINKS
        both = expected_gitlab(namespace, "web") | expected_gitlab(other, "web")
        assert gitlab_state(gitlab) == dict.fromkeys(both, "detected")
        resolved_before = len(resolutions(gitlab))

        # Both webs go; in the other namespace a workload now fails to scan (stale secret).
        sandbox.pull_secret("stale", other, password="stale-password-of-other")
        app = sandbox.image(SAMPLE_APP.repository).reference
        sandbox.apply(deployment("legacy", other, app, pull_secrets=["stale"]))
        await asyncio.to_thread(sandbox.wait_for_running, other, 2)
        await remove(sandbox, namespace, "web")
        gone = await remove(sandbox, other, "web")
        second = await run.cycle_started_after(gone)

    assert second.report.cycle.namespaces == {namespace: True, other: False}
    # Leaving findings open is the designed outcome, not a failed delivery.
    assert second.sinks == ALL_SINKS
    assert gitlab_state(gitlab) == dict.fromkeys(both, "detected")
    assert len(resolutions(gitlab)) == resolved_before
    document = read_json(sinks["gitlab_report_file"])
    validate_gitlab_report(document)
    assert document["scan"]["status"] == "failure"
    (message,) = document["scan"]["messages"]
    assert f"{other}/Deployment/legacy" in message["value"] and "auth" in message["value"]


def report_of(namespace: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """A VulnerabilityReport of a clean container ``app`` of workload ``kind/name``."""
    workload = WorkloadReport(
        namespace=namespace, kind=kind, name=name, api_version="apps/v1", uid=uid,
        containers=[ContainerReport(name="app", image="registry.example/app:1", status=SCANNED)],
    )  # fmt: skip
    (document,) = workload_reports(workload, scanner_version="0.76.0", updated_at=datetime.now(UTC))
    return document


def web_report(namespace: str) -> dict[str, Any]:
    return report_of(namespace, "Deployment", "web", "uid-1")


async def test_a_cluster_without_the_crd_is_named_as_the_reason(tmp_path: Path) -> None:
    with KubeEmulator() as kube:  # a bare cluster
        client = make_client(kube.write_kubeconfig(tmp_path / "kubeconfig"))
        try:
            with pytest.raises(
                ReportTypeMissingError, match="install its CustomResourceDefinition"
            ):
                await write_reports(
                    client,
                    [report_of("default", "Deployment", "web", "uid-1")],
                    prune_namespaces=[],
                )
            # With the CRD, a missing namespace is one report's error, not a missing type.
            kube.store.create(kube.store.registry.for_kind(*CRD_KEY), None, crd())
            summary = await write_reports(
                client, [web_report("gone"), web_report("default")],
                prune_namespaces=["default"],
            )  # fmt: skip
        finally:
            await client.close()
    assert summary.written == 1
    (error,) = summary.errors
    assert error.startswith("gone/deployment-web-app: ") and "not found" in error


@pytest.fixture
def bare_cluster(tmp_path: Path) -> Iterator[tuple[KubeEmulator, Path]]:
    """An emulator serving VulnerabilityReports, and an admin kubeconfig."""
    with KubeEmulator() as kube:
        kube.store.create(kube.store.registry.for_kind(*CRD_KEY), None, crd())
        yield kube, kube.write_kubeconfig(tmp_path / "kubeconfig")


async def write(kubeconfig: Path, documents: list[dict[str, Any]]) -> Any:
    client = make_client(kubeconfig)
    try:
        return await write_reports(client, documents, prune_namespaces=["default"])
    finally:
        await client.close()


async def test_reports_that_exist_cost_one_replace_each_after_one_list(
    bare_cluster: tuple[KubeEmulator, Path],
) -> None:
    kube, kubeconfig = bare_cluster
    documents = [report_of("default", "Deployment", f"web-{i}", f"uid-{i}") for i in range(5)]
    assert (await write(kubeconfig, documents)).written == 5  # created
    start = len(kube.request_log.records())

    summary = await write(kubeconfig, documents)

    assert (summary.written, summary.pruned, summary.errors) == (5, 0, [])
    calls = Counter(r.verb for r in kube.request_log.records()[start:])
    assert calls == {"list": 1, "update": 5}


async def test_a_report_changed_since_listed_is_read_again_and_replaced(
    bare_cluster: tuple[KubeEmulator, Path],
) -> None:
    kube, kubeconfig = bare_cluster
    store, log = kube.store, kube.request_log
    rtype = store.registry.for_kind("aquasecurity.github.io/v1alpha1", "VulnerabilityReport")
    assert rtype is not None
    document = report_of("default", "Deployment", "web", "uid-1")
    await write(kubeconfig, [document])
    start = len(log.records())

    def meddle() -> None:  # someone changes it after ocscan's list, before its replace lands
        deadline = time.monotonic() + 10
        while not [r for r in log.records()[start:] if r.resource.startswith("vuln")]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        changed = store.get(rtype, "default", "deployment-web-app")
        changed["metadata"].setdefault("annotations", {})["meddled"] = "yes"
        store.update(rtype, "default", changed)

    kube.faults.delay(1.0, verb="update", resource="vulnerabilityreports", times=1)
    meddler = threading.Thread(target=meddle)
    meddler.start()
    summary = await write(kubeconfig, [document])
    meddler.join()

    assert (summary.written, summary.errors) == (1, [])
    calls = [(r.verb, r.code) for r in log.records()[start:] if r.resource.startswith("vuln")]
    # The stale replace meets 409; the report is read again by name and replaced.
    assert calls == [("list", 200), ("update", 409), ("list", 200), ("update", 200)]
    assert "meddled" not in store.get(rtype, "default", "deployment-web-app")["metadata"].get(
        "annotations", {}
    )


async def test_a_report_name_of_another_workload_or_tool_is_never_overwritten(
    bare_cluster: tuple[KubeEmulator, Path],
) -> None:
    kube, kubeconfig = bare_cluster
    ours = report_of("default", "Deployment", "web", "uid-1")
    await write(kubeconfig, [ours])
    theirs = report_of("default", "Deployment", "api", "uid-2")
    foreign = {**theirs, "metadata": {**theirs["metadata"], "name": "deployment-api-app"}}
    foreign["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "trivy-operator"}
    rtype = kube.store.registry.for_kind("aquasecurity.github.io/v1alpha1", "VulnerabilityReport")
    assert rtype is not None
    kube.store.create(rtype, "default", foreign)
    # Another workload whose report name would be the same as web's.
    clash = {**ours, "metadata": {**ours["metadata"], "ownerReferences": [
        {**ours["metadata"]["ownerReferences"][0], "name": "web2", "uid": "uid-9"}]}}  # fmt: skip

    summary = await write(kubeconfig, [clash, theirs])

    assert summary.written == 0
    assert sorted(summary.errors) == [
        "default/deployment-api-app: the name is taken by a report ocscan does not manage;"
        " not overwritten",
        "default/deployment-web-app: the name is taken by the report of Deployment web;"
        " not overwritten",
    ]
    stored = kube.store.get(rtype, "default", "deployment-api-app")
    assert stored["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "trivy-operator"}
