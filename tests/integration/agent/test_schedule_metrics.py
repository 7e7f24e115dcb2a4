"""The agent in process: cycles on a cron cadence, and the metrics they leave on /metrics."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from agent_support import (
    AgentRun,
    Metrics,
    agent_config,
    eventually,
    expected_scans,
    probe,
    running_agent,
    scrape,
)

from ocscan.report.model import CycleReport
from ocscan.sandbox.stack import PULL_SECRET, Sandbox, deployment
from ocscan.sandbox.trivydb import SAMPLE_APP
from ocscan.scan.report import Severity
from scanner_objects import managed_objects

YEARLY = "0 0 1 1 *"  # with run_at_start: exactly one cycle during a test


async def consistent_scrape(run: AgentRun) -> tuple[Metrics, list[CycleReport]]:
    """A scrape, and the reports of exactly the cycles it has counted."""
    metrics = await scrape(run.port)
    counted = int(metrics.value("ocscan_cycle_duration_seconds_count") or 0)
    return metrics, [delivered.report for delivered in await run.cycles(counted)]


def assert_metrics_match(metrics: Metrics, reports: list[CycleReport]) -> None:
    assert metrics.by_label("ocscan_scans_total", "result") == expected_scans(reports)
    last = reports[-1].cycle
    assert metrics.by_label("ocscan_vulnerabilities", "severity") == {
        severity.value: last.by_severity.get(severity.value, 0) for severity in Severity
    }
    complete = [r.cycle.finished_at.timestamp() for r in reports if r.cycle.complete]
    assert metrics.value("ocscan_last_successful_cycle_timestamp_seconds") == (
        max(complete) if complete else 0
    )


async def test_metrics_after_a_cycle_match_its_summary(sandbox: Sandbox, namespace: str) -> None:
    app = sandbox.image(SAMPLE_APP.repository).reference
    sandbox.apply(deployment("web", namespace, app, pull_secrets=[PULL_SECRET]))
    sandbox.wait_for_running(namespace, 1)
    # Runs because the node has its image already, as a broken pull secret goes unnoticed.
    sandbox.pull_secret("stale", namespace, password="stale-password-for-metrics")
    sandbox.apply(deployment("legacy", namespace, app, pull_secrets=["stale"]))
    sandbox.wait_for_running(namespace, 2)
    config = agent_config(sandbox, [namespace], lease=namespace, schedule=YEARLY)

    async with running_agent(sandbox.kubeconfig, config, identity="solo") as run:
        (delivered,) = await run.cycles(1)
        metrics = await scrape(run.port)
        assert await probe(run.port, "/healthz") == 200
        assert await probe(run.port, "/readyz") == 200
        assert await probe(run.port, "/nothing") == 404

    summary = delivered.report.cycle
    assert summary.by_status == {"auth": 1, "scanned": 1}
    assert summary.by_severity  # the sample app is vulnerable
    assert_metrics_match(metrics, [delivered.report])
    assert metrics.value("ocscan_last_successful_cycle_timestamp_seconds") == 0  # auth failed
    assert metrics.value("ocscan_cycle_duration_seconds_count") == 1
    assert metrics.value("ocscan_scan_duration_seconds_count") == summary.scan_targets == 2
    assert metrics.value("ocscan_temporary_secrets") == 0
    assert metrics.value("ocscan_leader") == 1
    assert managed_objects(sandbox) == []


async def test_cycles_follow_a_six_field_schedule_and_metrics_add_up(
    sandbox: Sandbox, namespace: str
) -> None:
    app = sandbox.image(SAMPLE_APP.repository).reference
    sandbox.apply(deployment("web", namespace, app, pull_secrets=[PULL_SECRET]))
    sandbox.wait_for_running(namespace, 1)
    # Seconds first: every two seconds, and not even the first cycle before its time.
    config = agent_config(
        sandbox,
        [namespace],
        lease=namespace,
        schedule="*/2 * * * * *",
        agent={"run_at_start": False},
    )

    async with running_agent(sandbox.kubeconfig, config, identity="solo") as run:
        first, second = await run.cycles(2, within=20)
        starts = [d.report.cycle.started_at for d in (first, second)]
        slots = [start.replace(microsecond=0) for start in starts]
        assert all(slot.second % 2 == 0 for slot in slots), starts
        assert slots[1] - slots[0] >= timedelta(seconds=2)
        assert all(d.sinks == {} for d in (first, second))  # no sink configured
        metrics, reports = await consistent_scrape(run)
        assert len(reports) >= 2 and all(r.cycle.complete for r in reports)
        assert_metrics_match(metrics, reports)
        assert metrics.value("ocscan_last_successful_cycle_timestamp_seconds") > 0  # type: ignore[operator]

        # A failing workload: later cycles are incomplete, the last success stays put.
        sandbox.pull_secret("stale", namespace, password="stale-password-for-metrics")
        sandbox.apply(deployment("legacy", namespace, app, pull_secrets=["stale"]))
        await asyncio.to_thread(sandbox.wait_for_running, namespace, 2)
        added = reports[-1].cycle.finished_at
        failing = await run.cycle_started_after(added, within=20)
        assert failing.report.cycle.by_status == {"auth": 1, "scanned": 1}
        await eventually(lambda: run.agent.cycles_run >= len(run.delivered), "delivery")
        metrics, reports = await consistent_scrape(run)
        assert not reports[-1].cycle.complete
        assert_metrics_match(metrics, reports)
        assert metrics.value("ocscan_scans_total", result="auth") >= 1  # type: ignore[operator]
    assert run.agent.cycles_run == len(run.delivered) >= 3
