"""``ocscan agent`` as a process: JSON logs without a credential, endpoints, and a graceful
SIGTERM that cancels running scans and leaves nothing behind."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
from agent_support import (
    AGENT_TOKEN,
    KAS_SECRET,
    AgentProcess,
    GitLabFiles,
    Metrics,
    agent_document,
    lease_spec,
    wait_until,
    write_yaml,
)

from ocscan.sandbox.registry import SilentRegistry
from ocscan.sandbox.stack import (
    AGENT_NAMESPACE,
    PULL_SECRET,
    Sandbox,
    deployment,
    docker_config_secret,
)
from ocscan.sandbox.trivydb import SAMPLE_APP
from scanner_objects import managed_objects

GRACE_SECONDS = 8


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}")


def test_one_cycle_logs_json_without_credentials_and_serves_matching_metrics(
    sandbox: Sandbox, namespace: str, gitlab: GitLabFiles, tmp_path: Path
) -> None:
    stale_password = "canary-stale-" + "0d5e1f"
    app = sandbox.image(SAMPLE_APP.repository).reference
    sandbox.apply(deployment("web", namespace, app, pull_secrets=[PULL_SECRET]))
    sandbox.wait_for_running(namespace, 1)
    sandbox.pull_secret("stale", namespace, password=stale_password)
    sandbox.apply(deployment("legacy", namespace, app, pull_secrets=["stale"]))
    sandbox.wait_for_running(namespace, 2)
    report_file = tmp_path / "out" / "report.json"
    report_file.parent.mkdir()
    document = agent_document(
        sandbox, [namespace], lease=namespace, schedule="0 0 1 1 *",
        agent={"log_level": "DEBUG"},
        sinks={"json_file": str(report_file), "gitlab": gitlab.sink()},
    )  # fmt: skip
    config_file = write_yaml(tmp_path / "agent.yaml", document)

    with AgentProcess(config_file, sandbox.kubeconfig) as agent:
        port = agent.port
        agent.wait_for_entry(lambda e: "findings uploaded, resolution" in e["message"],
                             "the delivery to GitLab, the last sink")  # fmt: skip
        assert get(port, "/healthz").status_code == 200
        assert get(port, "/readyz").status_code == 200
        metrics = Metrics(get(port, "/metrics").text)
        agent.signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        stdout = agent.stdout()

    report = json.loads(report_file.read_text())
    summary = report["cycle"]
    assert summary["by_status"] == {"auth": 1, "scanned": 1}
    assert metrics.by_label("ocscan_scans_total", "result") == summary["by_status"]
    severities = metrics.by_label("ocscan_vulnerabilities", "severity")
    assert {k: v for k, v in severities.items() if v} == summary["by_severity"]
    assert metrics.value("ocscan_temporary_secrets") == 0
    assert metrics.value("ocscan_leader") == 1

    entries = agent.entries()  # every line is JSON, or this fails
    assert stdout == b""
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    messages = [e["message"] for e in entries]
    assert any(m.startswith(f"scan failed for {namespace}/Deployment/legacy") for m in messages)
    assert any(m.startswith("received SIGTERM") for m in messages)
    assert any(e["level"] == "DEBUG" for e in entries)  # the most talkative level
    # The GitLab agent API was used (with the token and a KAS-signed JWT) ...
    assert len(gitlab.emulator.findings()) == len(SAMPLE_APP.expected_findings)
    assert any(m.startswith("GitLab: old findings left open") for m in messages)
    # ... and no credential of any kind shows in the log or the report.
    output = "\n".join(agent.lines) + report_file.read_text()
    canaries = [sandbox.registry_password, stale_password, AGENT_TOKEN,
                KAS_SECRET.decode(), gitlab.emulator.kas_secret_file_content.strip()]  # fmt: skip
    for canary in canaries:
        assert canary not in output
    assert managed_objects(sandbox) == []


def test_sigterm_mid_scan_cancels_it_and_leaves_nothing_behind(
    sandbox: Sandbox, namespace: str, tmp_path: Path
) -> None:
    assert sandbox.kube is not None
    kube = sandbox.kube
    with SilentRegistry() as registry:
        sandbox.apply(docker_config_secret("slow", namespace, registry.address, "slow", "pw"))
        image = f"{registry.address}/team/app:1.0"
        sandbox.apply(deployment("slow", namespace, image, pull_secrets=["slow"]))
        sandbox.wait_for_running(namespace, 1)
        document = agent_document(
            sandbox, [namespace], lease=namespace,  # every second: new cycles would start
            agent={"shutdown_grace_seconds": GRACE_SECONDS},
        )  # fmt: skip
        config_file = write_yaml(tmp_path / "agent.yaml", document)
        # The scanner's Secret outlives the start of its scan: its first delete hangs.
        hung = kube.faults.hang(
            verb="delete", resource="secrets", namespace=AGENT_NAMESPACE, times=1, seconds=60
        )
        try:
            with AgentProcess(config_file, sandbox.kubeconfig) as agent:
                port = agent.port
                wait_until(
                    lambda: hung.hits == 1 and registry.connections != [],
                    "a scan in flight with its Secret alive",
                )
                assert any(name.startswith("Secret/") for name in managed_objects(sandbox))
                metrics = Metrics(get(port, "/metrics").text)
                assert metrics.value("ocscan_temporary_secrets") == 1
                created = jobs_created(sandbox)
                signalled = time.monotonic()
                agent.signal(signal.SIGTERM)
                code = agent.wait(GRACE_SECONDS + 5)
                took = time.monotonic() - signalled
        finally:
            kube.faults.remove(hung)
        assert code == 0, "\n".join(agent.lines)
        assert took < GRACE_SECONDS, f"exit took {took:.1f}s"
        assert managed_objects(sandbox) == []  # right away: no later sweep needed
        assert jobs_created(sandbox) == created  # no scan started after SIGTERM
        assert lease_spec(sandbox, namespace).get("holderIdentity") in (None, "")
        # The scanner process itself is gone: Trivy's connection was closed by its end.
        wait_until(registry.all_closed_by_peer, "the scanner process to end", 10)
    messages = [e["message"] for e in agent.entries()]
    assert "stopping: cancelling the running cycle" in messages


def jobs_created(sandbox: Sandbox) -> int:
    assert sandbox.kube is not None
    return sandbox.kube.request_log.count(verb="create", resource="jobs", namespace=AGENT_NAMESPACE)
