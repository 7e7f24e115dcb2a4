"""Leader election over a real Lease: only the leader scans, and leadership moves on.

Each agent talks to the API as a user of its own, so the emulator's request log shows which
replica created which scanner pod.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent_support import (
    agent_config,
    eventually,
    lease_spec,
    probe,
    running_agent,
    scrape,
    user_kubeconfig,
)

from ocscan.agent.leader import LeaderElector
from ocscan.kube.client import make_client
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


def jobs_created_by(sandbox: Sandbox, user: str) -> int:
    assert sandbox.kube is not None
    log = sandbox.kube.request_log
    return log.count(verb="create", resource="jobs", namespace=AGENT_NAMESPACE, user=user)


def web(sandbox: Sandbox, namespace: str) -> None:
    app = sandbox.image(SAMPLE_APP.repository).reference
    sandbox.apply(deployment("web", namespace, app, pull_secrets=[PULL_SECRET]))
    sandbox.wait_for_running(namespace, 1)


async def test_only_the_leader_scans_and_a_stopping_leader_hands_over_at_once(
    sandbox: Sandbox, namespace: str, tmp_path: Path
) -> None:
    web(sandbox, namespace)
    config = agent_config(
        sandbox, [namespace], lease=namespace, leader_election={"lease_duration_seconds": 6}
    )
    kubeconfig_a = user_kubeconfig(sandbox, "replica-a", tmp_path / "a")
    kubeconfig_b = user_kubeconfig(sandbox, "replica-b", tmp_path / "b")

    async with (
        running_agent(kubeconfig_b, config, identity="replica-b") as b,
        running_agent(kubeconfig_a, config, identity="replica-a") as a,
    ):
        await eventually(lambda: len(a.delivered) + len(b.delivered) >= 3, "three cycles")
        leader, standby = (a, b) if a.delivered else (b, a)
        assert standby.delivered == []
        assert lease_spec(sandbox, namespace)["holderIdentity"] == leader.agent.identity
        leader_metrics, standby_metrics = await scrape(leader.port), await scrape(standby.port)
        assert leader_metrics.value("ocscan_leader") == 1
        assert standby_metrics.value("ocscan_leader") == 0
        assert standby_metrics.by_label("ocscan_scans_total", "result") == {"scanned": 0}
        assert await probe(standby.port, "/readyz") == 200  # a standby is a healthy replica
        assert jobs_created_by(sandbox, leader.agent.identity) >= 3
        assert jobs_created_by(sandbox, standby.agent.identity) == 0

        stopped_at = time.monotonic()
        await leader.halt()
        await eventually(lambda: len(standby.delivered) >= 1, "the standby's first cycle")
        took = time.monotonic() - stopped_at
        # Released on the way out: no waiting out the 6 s lease.
        assert took < 4, f"takeover took {took:.1f}s"
        spec = lease_spec(sandbox, namespace)
        assert spec["holderIdentity"] == standby.agent.identity
        assert spec["leaseTransitions"] >= 1
        assert jobs_created_by(sandbox, standby.agent.identity) >= 1
    assert managed_objects(sandbox) == []


async def test_a_crashed_leaders_lease_is_taken_over_after_its_duration(
    sandbox: Sandbox, namespace: str
) -> None:
    web(sandbox, namespace)
    duration = 3
    config = agent_config(
        sandbox, [namespace], lease=namespace, leader_election={"lease_duration_seconds": duration}
    )
    # A leader that took the lease, then died without releasing it.
    client = make_client(sandbox.kubeconfig)
    try:
        crashed = LeaderElector(
            client, namespace=AGENT_NAMESPACE, name=namespace, identity="crashed",
            lease_duration_seconds=duration,
        )  # fmt: skip
        assert await crashed.try_acquire_or_renew()
    finally:
        await client.close()
    started = time.monotonic()

    async with running_agent(sandbox.kubeconfig, config, identity="survivor") as run:
        await asyncio.sleep(duration - 1)
        assert run.delivered == []
        assert lease_spec(sandbox, namespace)["holderIdentity"] == "crashed"
        (first,) = await run.cycles(1, within=10)
        waited = time.monotonic() - started
    assert duration <= waited < duration + 4, f"took over after {waited:.1f}s"
    assert first.report.cycle.by_status == {"scanned": 1}
    assert lease_spec(sandbox, namespace).get("holderIdentity") in (None, "")  # released at stop


async def test_a_leader_that_cannot_renew_steps_down_and_cancels_its_cycle(
    sandbox: Sandbox, namespace: str
) -> None:
    assert sandbox.kube is not None
    with SilentRegistry() as registry:
        # A scan that hangs: the kubelet does not serve this registry, so the pod runs.
        sandbox.apply(docker_config_secret("slow", namespace, registry.address, "slow", "pw"))
        image = f"{registry.address}/team/app:1.0"
        sandbox.apply(deployment("slow", namespace, image, pull_secrets=["slow"]))
        sandbox.wait_for_running(namespace, 1)
        config = agent_config(
            sandbox, [namespace], lease=namespace, leader_election={"lease_duration_seconds": 3}
        )
        async with running_agent(sandbox.kubeconfig, config, identity="unlucky") as run:
            await eventually(lambda: registry.connections != [], "the scan to reach the registry")
            assert any(name.startswith("Pod/") for name in managed_objects(sandbox))
            # The API refuses every lease update from now on.
            refusals = sandbox.kube.faults.fail(verb="update", resource="leases", status=500)
            try:
                await eventually(lambda: managed_objects(sandbox) == [], "the cycle's cleanup", 10)
                assert refusals.hits >= 1
                assert (await scrape(run.port)).value("ocscan_leader") == 0
                assert run.delivered == []  # cancelled, so never delivered
            finally:
                sandbox.kube.faults.remove(refusals)
        assert managed_objects(sandbox) == []
