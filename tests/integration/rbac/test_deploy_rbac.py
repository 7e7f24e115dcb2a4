"""The rendered RBAC is exactly what the agent needs (issue 7, item 2).

With RBAC enforced for the ocscan-agent service account, ``ocscan scan --deliver`` run with
its token completes the same cycle an admin does. Then each verb of each rule is taken away
in turn: ocscan must say which verb on which resource it was refused, in the API server's
words, and never crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from rbac_support import (
    AGENT_NAMESPACE,
    AGENT_USER,
    MISSING_REPORT,
    STALE_REPORT,
    Grant,
    ScanRun,
    apply,
    errors_of,
    forbidden,
    grants_of,
    ocscan_scan,
    source_grants,
    stage_reports,
    statuses_of,
    vulnerability_reports,
    without,
)

from ocscan.agent.leader import LeaderElector
from ocscan.config import load_config
from ocscan.cycle import run_cycle
from ocscan.deliver import Delivery
from ocscan.kube.client import make_client
from ocscan.report.model import CycleReport
from ocscan.sandbox.stack import Sandbox
from ocscan.scan import executor, podwatch
from scanner_objects import managed_objects, remove_managed_objects

EXPECTED = {
    ("shop", "web"): "scanned",
    ("shop", "api"): "scanned",
    ("batch", "nightly-report"): "scanned",
    ("shop", "legacy"): "auth",
    ("shop", "orphan"): "secret_missing",
}
EVERY_WORKLOAD = tuple(EXPECTED)
WITH_CREDENTIALS = tuple(key for key in EXPECTED if key != ("shop", "orphan"))

REFUSED = "the Kubernetes API refused ocscan:"
SCAN_FAILED = "scan failed for"
DELIVERY_FAILED = "delivery to vulnerability_reports failed:"


@dataclass(frozen=True)
class Refusal:
    """What ``ocscan scan --deliver`` shows when one grant is missing.

    ``stderr``: a line of stderr says this and names the verb and resource.
    ``failed``: the containers whose status changes to the given one, with an error
    naming the verb and resource; every other container ends as in an admin run.
    """

    stderr: str
    exit_code: int = 0
    failed: Mapping[tuple[str, str], str] = field(default_factory=dict)
    leaves_pods: bool = False


def _all(keys: tuple[tuple[str, str], ...], status: str) -> dict[tuple[str, str], str]:
    return dict.fromkeys(keys, status)


VR = "aquasecurity.github.io"
CLI_CASES: dict[Grant, Refusal] = {
    # Discovery and the sweep cannot work at all: the command stops, exit code 4.
    Grant("ClusterRole", "", "pods", "list"): Refusal(REFUSED, exit_code=4),
    Grant("ClusterRole", "", "serviceaccounts", "list"): Refusal(REFUSED, exit_code=4),
    Grant("ClusterRole", "apps", "replicasets", "list"): Refusal(REFUSED, exit_code=4),
    Grant("ClusterRole", "batch", "jobs", "list"): Refusal(REFUSED, exit_code=4),
    # Per container, in the report.
    Grant("ClusterRole", "", "secrets", "get"): Refusal(
        SCAN_FAILED, failed=_all(EVERY_WORKLOAD, "secret_invalid")
    ),
    Grant("Role", "batch", "jobs", "create"): Refusal(
        SCAN_FAILED, failed=_all(EVERY_WORKLOAD, "scanner_error")
    ),
    Grant("Role", "batch", "jobs", "patch"): Refusal(  # a Job with a Secret is not resumed
        SCAN_FAILED, failed=_all(WITH_CREDENTIALS, "scanner_error")
    ),
    Grant("Role", "", "pods/log", "get"): Refusal(
        SCAN_FAILED, failed=_all(EVERY_WORKLOAD, "scanner_error")
    ),
    Grant("Role", "", "secrets", "create"): Refusal(
        SCAN_FAILED, failed=_all(WITH_CREDENTIALS, "scanner_error")
    ),
    # The cycle completes; a warning says what could not be done.
    Grant("ClusterRole", "", "events", "create"): Refusal("could not record event on"),
    # Each image is scanned for the scanner's default platform, as before nodes were read.
    Grant("ClusterRole", "", "nodes", "list"): Refusal("cannot list nodes"),
    Grant("Role", "", "secrets", "delete"): Refusal("could not delete temporary secret"),
    Grant("Role", "batch", "jobs", "delete"): Refusal(
        "could not delete scanner job", leaves_pods=True
    ),
    # The cycle completes and its output is written; delivering VulnerabilityReports
    # fails, saying why, and the exit status (5) tells a pipeline.
    **{
        Grant("ClusterRole", VR, "vulnerabilityreports", verb): Refusal(DELIVERY_FAILED, 5)
        for verb in ("list", "create", "update", "delete")
    },
}
# The watch: run in-process. A Job's events are read only when it creates no pod.
IN_PROCESS_CASES = (Grant("Role", "", "pods", "watch"),)
EVENTS_CASE = Grant("Role", "", "events", "list")
LEASE_CASES = tuple(grant for grant in source_grants() if grant.resource == "leases")


def _line_naming(text: str, what: str, grant: Grant) -> str | None:
    """The line of ``text`` that says ``what`` and names the grant's verb and resource."""
    wanted = forbidden(grant.verb, grant.resource)
    return next((line for line in text.splitlines() if what in line and wanted in line), None)


@pytest.fixture
def missing(
    request: pytest.FixtureRequest,
    sandbox: Sandbox,
    roles: dict[str, dict[str, Any]],
    admin_statuses: dict[tuple[str, str], str],  # its reports are the ones to replace
) -> Iterator[Grant]:
    """The role of the case's grant without it, restored (and leftovers removed) afterwards."""
    grant: Grant = request.param
    stage_reports(sandbox)
    apply(sandbox, without(roles[grant.role_kind], grant))
    try:
        yield grant
    finally:
        apply(sandbox, roles[grant.role_kind])
        remove_managed_objects(sandbox)


def test_every_rendered_grant_has_a_refusal_case(roles: dict[str, dict[str, Any]]) -> None:
    rendered = {grant for role in roles.values() for grant in grants_of(role)}
    assert rendered == set(source_grants())  # kustomize changes no rule
    cases = {*CLI_CASES, *IN_PROCESS_CASES, EVENTS_CASE, *LEASE_CASES}
    assert rendered == cases, "each rule needs a case; each case a rule"
    assert {grant.verb for grant in LEASE_CASES} == {"get", "create", "update"}


def test_agent_with_exactly_the_rendered_rules_completes_a_full_cycle(
    sandbox: Sandbox,
    agent_kubeconfig: Path,
    scan_config: Path,
    admin_statuses: dict[tuple[str, str], str],
    roles: dict[str, dict[str, Any]],
) -> None:
    assert sandbox.kube is not None
    log = sandbox.kube.request_log
    stage_reports(sandbox)
    start = len(log.records())

    run = ocscan_scan(agent_kubeconfig, scan_config)

    assert run.code == 0, run.stderr
    assert "Traceback" not in run.stderr and "delivery failed" not in run.stderr, run.stderr
    assert statuses_of(run) == admin_statuses == EXPECTED
    requests = [rec for rec in log.records()[start:] if rec.user == AGENT_USER]
    assert requests, "the cycle did not run as the agent's service account"
    assert not [rec for rec in requests if rec.code in (401, 403)]
    # Everything it asked for, the rendered roles grant (the Role only in its namespace).
    cluster = {(g.group, g.resource, g.verb) for g in grants_of(roles["ClusterRole"])}
    local = {(g.group, g.resource, g.verb) for g in grants_of(roles["Role"])}
    for rec in requests:
        call = (rec.group, rec.resource, rec.verb)
        assert call in cluster or (rec.namespace == AGENT_NAMESPACE and call in local), rec
    # Delivery wrote, replaced and pruned reports; failures became Events; nothing is left.
    shop = vulnerability_reports(sandbox, "shop")
    assert {"deployment-web-app", "deployment-api-app"} <= set(shop)
    batch = vulnerability_reports(sandbox, "batch")
    assert "cronjob-nightly-report-report" in batch and STALE_REPORT not in batch
    # One list per namespace; then a replace per report there, a create for the missing one.
    reports = {r.verb for r in requests if r.resource == "vulnerabilityreports"}
    assert reports == {"create", "update", "list", "delete"}
    assert set(vulnerability_reports(sandbox, MISSING_REPORT[0])) >= {MISSING_REPORT[1]}
    assert sum(r.resource == "events" and r.code == 201 for r in requests) >= 2
    assert managed_objects(sandbox) == []


@pytest.mark.parametrize("missing", list(CLI_CASES), ids=str, indirect=True)
def test_without_one_grant_ocscan_names_the_verb_and_resource(
    missing: Grant,
    sandbox: Sandbox,
    agent_kubeconfig: Path,
    scan_config: Path,
    admin_statuses: dict[tuple[str, str], str],
) -> None:
    expected = CLI_CASES[missing]

    run = ocscan_scan(agent_kubeconfig, scan_config)

    assert "Traceback" not in run.stderr, run.stderr
    assert run.code == expected.exit_code, run.stderr
    assert _line_naming(run.stderr, expected.stderr, missing), run.stderr
    if run.code != 0:
        return
    _assert_report(run, expected, missing, admin_statuses)
    if expected.leaves_pods:
        assert managed_objects(sandbox), "the refused delete left no pod behind?"
    else:
        assert managed_objects(sandbox) == []


def _assert_report(
    run: ScanRun,
    expected: Refusal,
    grant: Grant,
    admin_statuses: dict[tuple[str, str], str],
) -> None:
    statuses, errors = statuses_of(run), errors_of(run)
    assert statuses == {**admin_statuses, **expected.failed}
    for key in expected.failed:
        assert forbidden(grant.verb, grant.resource) in errors[key], errors[key]


async def _cycle_and_delivery(kubeconfig: Path, config_file: Path) -> CycleReport:
    """One cycle and its delivery in this process, as ``ocscan scan --deliver`` runs them."""
    config = load_config(config_file)
    client = make_client(kubeconfig)
    try:
        report = await run_cycle(client, config)
        results = await Delivery(client, config).deliver(report)
        assert results == {"vulnerability_reports": True}
        return report
    finally:
        await client.close()


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r.getMessage() for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("missing", IN_PROCESS_CASES, ids=str, indirect=True)
async def test_without_watch_on_scanner_pods_ocscan_warns_and_polls(
    missing: Grant,
    sandbox: Sandbox,
    agent_kubeconfig: Path,
    scan_config: Path,
    admin_statuses: dict[tuple[str, str], str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A scan lists its pod only when the watch has been quiet this long: make it short.
    monkeypatch.setattr(podwatch, "RECHECK_SECONDS", 0.02)
    with caplog.at_level(logging.WARNING, logger="ocscan"):
        report = await _cycle_and_delivery(agent_kubeconfig, scan_config)

    _no_tracebacks(caplog)
    statuses = {(w.namespace, w.name): w.containers[0].status for w in report.workloads}
    assert statuses == admin_statuses
    wanted = forbidden(missing.verb, missing.resource)
    assert any(wanted in r.getMessage() for r in caplog.records), caplog.text
    assert managed_objects(sandbox) == []


@pytest.fixture
def missing_scanner_account(
    sandbox: Sandbox, scan_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A configuration whose scanner service account does not exist: Jobs create no pod."""
    monkeypatch.setattr(executor, "JOB_CHECK_SECONDS", 0.2)
    document = yaml.safe_load(scan_config.read_text())
    document["scanner"].update(service_account="no-such-account", start_timeout_seconds=5)
    document["targets"] = {"namespaces": ["batch"]}
    path = tmp_path / "no-scanner-account.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


async def test_a_job_that_creates_no_pod_fails_its_scan_with_the_jobs_event(
    sandbox: Sandbox, agent_kubeconfig: Path, missing_scanner_account: Path
) -> None:
    report = await _cycle_and_delivery(agent_kubeconfig, missing_scanner_account)

    (workload,) = report.workloads
    (entry,) = workload.containers
    assert entry.status == "scanner_error" and entry.error is not None
    # The Job controller's words: the pod was forbidden for want of its service account.
    assert "created no pod: FailedCreate" in entry.error.message, entry.error.message
    assert 'serviceaccount "no-such-account" not found' in entry.error.message
    assert managed_objects(sandbox) == []


@pytest.mark.parametrize("missing", [EVENTS_CASE], ids=str, indirect=True)
async def test_without_list_on_events_a_job_without_pod_says_why_it_cannot_say_more(
    missing: Grant, sandbox: Sandbox, agent_kubeconfig: Path, missing_scanner_account: Path
) -> None:
    report = await _cycle_and_delivery(agent_kubeconfig, missing_scanner_account)

    (workload,) = report.workloads
    (entry,) = workload.containers
    assert entry.status == "scanner_error" and entry.error is not None
    assert "created no pod: none within 5s" in entry.error.message, entry.error.message
    assert forbidden(missing.verb, missing.resource) in entry.error.message
    assert managed_objects(sandbox) == []


@pytest.mark.parametrize("missing", LEASE_CASES, ids=str, indirect=True)
async def test_leader_election_without_one_lease_verb_warns_and_keeps_running(
    missing: Grant, sandbox: Sandbox, agent_kubeconfig: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"rbac-without-{missing.verb}"
    if missing.verb == "update":  # an unheld lease: taking it over is an update
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": {}}
        apply(sandbox, {**lease, "metadata": {"name": name, "namespace": AGENT_NAMESPACE}})
    wanted = forbidden(missing.verb, "leases")
    client = make_client(agent_kubeconfig)
    try:
        with caplog.at_level(logging.WARNING, logger="ocscan"):
            elector = LeaderElector(
                client, namespace=AGENT_NAMESPACE, name=name, identity="agent-a",
                lease_duration_seconds=5, renew_seconds=0.2,
            )  # fmt: skip
            async with elector:
                # Round after round it says why, and keeps trying: it never dies.
                await _eventually(lambda: len(_naming(caplog, wanted)) >= 3)
                assert not elector.is_leader
    finally:
        await client.close()
    _no_tracebacks(caplog)
    assert all(r.levelno == logging.WARNING for r in _naming(caplog, wanted))


def _naming(caplog: pytest.LogCaptureFixture, wanted: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if wanted in r.getMessage()]


async def test_leader_election_with_the_rendered_rules_creates_and_renews_the_lease(
    sandbox: Sandbox, agent_kubeconfig: Path
) -> None:
    assert sandbox.kube is not None
    log = sandbox.kube.request_log
    start = len(log.records())
    client = make_client(agent_kubeconfig)
    try:
        elector = LeaderElector(
            client, namespace=AGENT_NAMESPACE, name="rbac-granted", identity="agent-a",
            lease_duration_seconds=5, renew_seconds=0.2,
        )  # fmt: skip
        async with elector:
            async with asyncio.timeout(10):
                await elector.wait_until_leader()
            await _eventually(lambda: bool(_lease_calls(sandbox, start, "update")))  # renewed
            assert elector.is_leader
    finally:
        await client.close()
    calls = [rec for rec in log.records()[start:] if rec.resource == "leases"]
    assert {rec.verb for rec in calls} == {"get", "create", "update"}
    assert all(rec.user == AGENT_USER and rec.code in (200, 201, 404) for rec in calls), calls


async def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true within {seconds}s")


def _lease_calls(sandbox: Sandbox, start: int, verb: str) -> list[Any]:
    assert sandbox.kube is not None
    return [
        rec
        for rec in sandbox.kube.request_log.records()[start:]
        if rec.resource == "leases" and rec.verb == verb and rec.code == 200
    ]
