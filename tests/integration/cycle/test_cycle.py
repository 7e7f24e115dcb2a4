"""The operational scan cycle end to end: emulator, process kubelet, real registry and Trivy.

Each scan runs in a scanner pod of the agent namespace, reading its credentials from a
temporary Secret through secretKeyRef, exactly as on a real cluster.
"""

from __future__ import annotations

import json
import logging

import pytest
from cycle_support import container, run, sandbox_config

from ocscan.sandbox.stack import Sandbox, deployment
from ocscan.sandbox.trivydb import SAMPLE_APP, SAMPLE_CLEAN, SAMPLE_MINIMAL
from ocscan.scan import executor, podwatch
from scanner_objects import managed_objects


def findings_of(entry: object) -> set[tuple[str, str]]:
    return {(f.package_name, f.vulnerability_id) for f in entry.vulnerabilities}  # type: ignore[attr-defined]


def events_of(sandbox: Sandbox, namespace: str) -> list[dict[str, object]]:
    assert sandbox.kube is not None
    store = sandbox.kube.store
    rtype = store.registry.for_kind("v1", "Event")
    assert rtype is not None
    return store.list(rtype, namespace)


def test_every_sample_workload_gets_the_right_status(sandbox: Sandbox) -> None:
    # The sample namespaces only: other tests add namespaces of their own to this sandbox.
    report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": ["shop", "batch"]}))

    # Seed reproduction: a private image through a dockerconfigjson pod pull secret.
    web = container(report, "shop", "web")
    assert web.status == "scanned", web.error
    assert findings_of(web) == SAMPLE_APP.expected_findings
    assert web.digest == sandbox.image(SAMPLE_APP.repository).digest
    # Through the service account's imagePullSecrets.
    api = container(report, "shop", "api")
    assert api.status == "scanned", api.error
    assert findings_of(api) == SAMPLE_MINIMAL.expected_findings
    # A CronJob's pod, reported as the CronJob.
    nightly = container(report, "batch", "nightly-report")
    assert nightly.status == "scanned", nightly.error
    assert findings_of(nightly) == SAMPLE_CLEAN.expected_findings
    assert any(w.kind == "CronJob" and w.name == "nightly-report" for w in report.workloads)
    # A stale password: auth, naming the secret, in the registry's words.
    legacy = container(report, "shop", "legacy")
    assert legacy.status == "auth"
    assert "shop/stale-pull" in legacy.error.message
    assert "UNAUTHORIZED" in legacy.error.message
    # A deleted secret.
    orphan = container(report, "shop", "orphan")
    assert orphan.status == "secret_missing"
    assert "shop/deleted-pull" in orphan.error.message

    assert report.cycle.namespaces == {"batch": True, "shop": False}
    assert report.cycle.by_status == {"auth": 1, "scanned": 3, "secret_missing": 1}
    # Every failure is an Event on its workload.
    failures = [e for e in events_of(sandbox, "shop") if e.get("reason") == "ScanFailed"]
    involved = {(e["involvedObject"]["kind"], e["involvedObject"]["name"]) for e in failures}  # type: ignore[index]
    assert {("Deployment", "legacy"), ("Deployment", "orphan")} <= involved
    assert all(e["type"] == "Warning" for e in failures)
    assert managed_objects(sandbox) == []


def test_replicas_and_another_deployment_of_the_image_share_one_scan(
    sandbox: Sandbox, scratch_namespace: str
) -> None:
    image = sandbox.image(SAMPLE_APP.repository).reference
    namespace = scratch_namespace
    sandbox.apply(deployment("front", namespace, image, replicas=5, pull_secrets=["registry-pull"]))
    sandbox.apply(deployment("back", namespace, image, pull_secrets=["registry-pull"]))
    sandbox.wait_for_running(namespace, 6)
    assert sandbox.kube is not None
    log = sandbox.kube.request_log
    before = log.count(verb="create", resource="jobs", namespace="ocscan")

    report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": [namespace]}))

    assert log.count(verb="create", resource="jobs", namespace="ocscan") - before == 1
    assert report.cycle.scan_targets == 1 and report.cycle.scans == 1
    for name in ("front", "back"):
        entry = container(report, namespace, name)
        assert entry.status == "scanned"
        assert findings_of(entry) == SAMPLE_APP.expected_findings


def test_secrets_are_read_by_name_and_never_listed(sandbox: Sandbox) -> None:
    assert sandbox.kube is not None
    log = sandbox.kube.request_log
    before = log.count(resource="secrets", verb="list") + log.count(
        resource="secrets", verb="watch"
    )
    run(sandbox, sandbox_config(sandbox, targets={"namespaces": ["shop"]}))
    after = log.count(resource="secrets", verb="list") + log.count(resource="secrets", verb="watch")
    assert after == before


def test_cycle_completes_through_api_errors_and_dropped_watches(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    assert sandbox.kube is not None
    faults = sandbox.kube.faults
    rules = [
        faults.fail(verb="list", resource="pods", times=2, status=500),
        faults.fail(verb="list", resource="replicasets", times=1, status=429, retry_after=1),
        faults.fail(verb="get", resource="secrets", times=2, status=503),
        faults.fail(verb="create", resource="jobs", namespace="ocscan", times=1, status=500),
        faults.fail(verb="patch", resource="jobs", namespace="ocscan", times=1, status=503),
        faults.fail(verb="create", resource="events", times=1, status=500),
        faults.drop_watches(resource="pods", namespace="ocscan", after_events=1, times=3),
    ]
    try:
        with caplog.at_level(logging.INFO, logger="ocscan"):
            report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": ["shop"]}))
    finally:
        for rule in rules:
            faults.remove(rule)
    assert all(rule.hits >= 1 for rule in rules), [(r.kind, r.hits) for r in rules]
    statuses = {w.name: w.containers[0].status for w in report.workloads}
    assert statuses == {
        "web": "scanned",
        "api": "scanned",
        "legacy": "auth",
        "orphan": "secret_missing",
    }
    assert "retry" in caplog.text
    assert managed_objects(sandbox) == []


SHOP = {"web": "scanned", "api": "scanned", "legacy": "auth", "orphan": "secret_missing"}


def test_creates_whose_answers_were_lost_are_found_again(sandbox: Sandbox) -> None:
    """The Job and Secret were made, the client never heard: retries meet 409 and go on."""
    assert sandbox.kube is not None
    faults, log = sandbox.kube.faults, sandbox.kube.request_log
    start = len(log.records())
    rules = [
        faults.lose_answer(verb="create", resource="jobs", namespace="ocscan", times=1),
        faults.lose_answer(verb="create", resource="secrets", namespace="ocscan", times=1),
    ]
    try:
        report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": ["shop"]}))
    finally:
        for rule in rules:
            faults.remove(rule)
    assert [rule.hits for rule in rules] == [1, 1]
    assert {w.name: w.containers[0].status for w in report.workloads} == SHOP
    conflicts = [r.resource for r in log.records()[start:] if r.code == 409]
    assert sorted(conflicts) == ["jobs", "secrets"]
    assert managed_objects(sandbox) == []


def test_a_hung_pod_watch_costs_a_recheck_not_the_start_timeout(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the watch silent, each scan reads its pod after RECHECK_SECONDS of quiet (here
    twice the Job check interval, as in production), not after the 5 s start timeout."""
    monkeypatch.setattr(podwatch, "RECHECK_SECONDS", 1.0)
    monkeypatch.setattr(executor, "JOB_CHECK_SECONDS", 0.5)
    assert sandbox.kube is not None
    faults, log = sandbox.kube.faults, sandbox.kube.request_log
    start = len(log.records())
    hung = faults.hang(verb="watch", resource="pods", namespace="ocscan", seconds=60)
    try:
        config = sandbox_config(
            sandbox, targets={"namespaces": ["shop"]}, scanner={"start_timeout_seconds": 5}
        )
        report = run(sandbox, config)
    finally:
        faults.remove(hung)
    assert hung.hits >= 1
    assert {w.name: w.containers[0].status for w in report.workloads} == SHOP
    calls = log.records()[start:]
    assert any(r.verb == "list" and r.resource == "pods" and r.namespace == "ocscan" for r in calls)
    # A scan that lost track of its pod would look for why its Job has none every 0.5 s
    # until the start timeout: several times per scan.
    event_lists = [r for r in calls if r.resource == "events" and r.verb == "list"]
    assert len(event_lists) < report.cycle.scans, event_lists


def test_scan_output_is_json_with_the_documented_shape(sandbox: Sandbox) -> None:
    report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": ["batch"]}))
    document = json.loads(report.model_dump_json())
    assert set(document) == {"cycle", "workloads"}
    (workload,) = document["workloads"]
    assert {"namespace", "kind", "name", "containers"} <= set(workload)
    (entry,) = workload["containers"]
    assert {"name", "image", "digest", "status", "error", "vulnerabilities"} <= set(entry)
