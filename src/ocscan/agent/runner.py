"""The agent's main loop: lead, wait for the schedule, run a cycle, deliver, repeat.

On stop (SIGTERM) no new cycle starts; a running one is cancelled, and its scans clean up
their pods and Secrets within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from lightkube import AsyncClient

from ocscan.agent.http import HealthServer
from ocscan.agent.leader import LeaderElector
from ocscan.agent.metrics import AgentMetrics
from ocscan.agent.schedule import next_run
from ocscan.config import Config
from ocscan.cycle import run_cycle
from ocscan.report.model import CycleReport

log = logging.getLogger(__name__)

Deliver = Callable[[CycleReport], Awaitable[object]]


def default_identity() -> str:
    """The pod name in a cluster (its hostname), plus the PID to tell local runs apart."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"


class _AlwaysLeader:
    is_leader = True

    async def wait_until_leader(self) -> None:
        return None


class Agent:
    """Runs cycles on the configured schedule while it holds the lease."""

    def __init__(
        self,
        client: AsyncClient,
        config: Config,
        *,
        deliver: Deliver,
        identity: str | None = None,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self._client = client
        self._config = config
        self._deliver = deliver
        self.identity = identity or default_identity()
        self.metrics = metrics or AgentMetrics()
        self.cycles_run = 0
        self._ready = False
        self._loop_alive = False

    def _sleep_until(self, when: datetime) -> float:
        return max(0.0, (when - datetime.now(UTC)).total_seconds())

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        agent = self._config.agent
        http = HealthServer(
            self.metrics.registry,
            host=agent.listen_host,
            port=agent.listen_port,
            alive=lambda: self._loop_alive,
            ready=lambda: self._ready,
        )
        http.start()
        self.http_port = http.port
        try:
            election = self._config.leader_election
            if election.enabled:
                elector = LeaderElector(
                    self._client,
                    namespace=self._config.scanner.namespace,
                    name=election.lease_name,
                    identity=self.identity,
                    lease_duration_seconds=election.lease_duration_seconds,
                    renew_seconds=election.renew_seconds,
                )
                async with elector:
                    await self._loop(elector, stop)
            else:
                await self._loop(_AlwaysLeader(), stop)
        finally:
            self._loop_alive = False
            http.stop()

    async def _until(self, awaitable: Awaitable[object], stop: asyncio.Event) -> bool:
        """Await ``awaitable`` unless ``stop`` comes first; True if it completed."""
        task = asyncio.ensure_future(awaitable)
        stopper = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for pending in (task, stopper):
            if pending not in done:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
        return task in done

    async def _loop(self, elector: LeaderElector | _AlwaysLeader, stop: asyncio.Event) -> None:
        self._loop_alive = True
        self._ready = True
        first = True
        while not stop.is_set():
            if not await self._until(elector.wait_until_leader(), stop):
                return
            self.metrics.leader.set(1)
            if not (first and self._config.agent.run_at_start):
                when = next_run(self._config.agent.schedule, datetime.now(UTC))
                log.info("next cycle at %s", when.isoformat())
                if not await self._until(asyncio.sleep(self._sleep_until(when)), stop):
                    return
            first = False
            if not elector.is_leader:
                self.metrics.leader.set(0)
                continue
            await self._run_one_cycle(stop)

    async def _run_one_cycle(self, stop: asyncio.Event) -> None:
        cycle = asyncio.create_task(
            run_cycle(self._client, self._config, observer=self.metrics), name="ocscan-cycle"
        )
        if not await self._until(asyncio.shield(cycle), stop):
            log.warning("stopping: cancelling the running cycle")
            cycle.cancel()
            grace = self._config.agent.shutdown_grace_seconds
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(cycle, grace)
            return
        try:
            report = cycle.result()
        except Exception:
            log.exception("the cycle failed")
            return
        self.cycles_run += 1
        self.metrics.observe_cycle(report)
        try:
            await self._deliver(report)
        except Exception:
            log.exception("delivering the cycle's results failed")
