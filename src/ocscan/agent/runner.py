"""The agent's main loop: lead, wait for the schedule, run a cycle, deliver, repeat.

On stop (SIGTERM) no new cycle or scan starts; a running cycle is cancelled, and its scans
delete their pods and Secrets within the grace period. A replica that loses the lease
mid-cycle cancels its cycle the same way, so two replicas never scan at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError

from ocscan.agent.http import HealthServer
from ocscan.agent.leader import LeaderElector
from ocscan.agent.metrics import AgentMetrics
from ocscan.agent.schedule import next_run
from ocscan.config import Config
from ocscan.cycle import run_cycle
from ocscan.errors import OcscanError
from ocscan.report.model import CycleReport
from ocscan.tasks import completes_first

log = logging.getLogger(__name__)

Deliver = Callable[[CycleReport], Coroutine[Any, Any, object]]


def default_identity() -> str:
    """The pod name in a cluster (its hostname), plus the PID to tell local runs apart."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"


class _Leadership(Protocol):
    @property
    def is_leader(self) -> bool: ...

    async def wait_until_leader(self) -> None: ...

    async def wait_until_not_leader(self) -> None: ...


class _AlwaysLeader:
    """Leader election turned off: this replica always scans."""

    is_leader = True

    async def wait_until_leader(self) -> None:
        return None

    async def wait_until_not_leader(self) -> None:
        await asyncio.Event().wait()  # never


class Agent:
    """Runs cycles on the configured schedule while it holds the lease.

    ``cycles_run`` counts the cycles that ended and were delivered. ``http_port`` is the
    port of the HTTP endpoints once :meth:`run` has started them.
    """

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
        self.http_port: int | None = None
        self._running = False
        self._stopping = False

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the endpoints and run cycles until ``stop`` is set."""
        agent = self._config.agent
        http = HealthServer(
            self.metrics.registry,
            host=agent.listen_host,
            port=agent.listen_port,
            alive=lambda: self._running,
            ready=lambda: self._running and not self._stopping,
        )
        http.start()
        self.http_port = http.port
        log.info(
            "serving /metrics, /healthz and /readyz on %s:%d",
            agent.listen_host,
            http.port,
            extra={"host": agent.listen_host, "port": http.port},
        )
        self._running = True
        watcher = asyncio.create_task(self._note_stop(stop))
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
                    on_change=lambda leading: self.metrics.leader.set(int(leading)),
                )
                async with elector:
                    await self._loop(elector, stop)
            else:
                self.metrics.leader.set(1)
                await self._loop(_AlwaysLeader(), stop)
        finally:
            watcher.cancel()
            self._running = False
            self.metrics.leader.set(0)
            http.stop()
            log.info("agent %s stopped", self.identity)

    async def _note_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping = True  # /readyz fails from now on

    async def _loop(self, leadership: _Leadership, stop: asyncio.Event) -> None:
        first = True
        while not stop.is_set():
            if not await completes_first(leadership.wait_until_leader(), stop):
                return
            if not (first and self._config.agent.run_at_start):
                when = next_run(self._config.agent.schedule, datetime.now(UTC))
                log.info("next cycle at %s", when.isoformat())
                # Again if woken early: the loop's monotonic clock is not the wall clock.
                while (delay := (when - datetime.now(UTC)).total_seconds()) > 0:
                    if not await completes_first(asyncio.sleep(delay), stop):
                        return
            first = False
            if leadership.is_leader:
                await self._run_one_cycle(leadership, stop)

    async def _run_one_cycle(self, leadership: _Leadership, stop: asyncio.Event) -> None:
        log.info("cycle started")
        cycle = asyncio.create_task(
            run_cycle(self._client, self._config, observer=self.metrics), name="ocscan-cycle"
        )
        lost = leadership.wait_until_not_leader()
        if not await completes_first(cycle, stop, lost, cancel_first=False):
            why = "stopping" if stop.is_set() else "lost the lease"
            log.warning("%s: cancelling the running cycle", why)
            await self._end_within_grace(cycle, cancel=True)
            return
        try:
            report = cycle.result()
        except (ApiError, OcscanError) as error:  # said in the API's or ocscan's own words
            log.error("the cycle failed: %s", _reason(error))
            return
        except Exception:
            log.exception("the cycle failed")
            return
        self.metrics.observe_cycle(report)
        cycle_summary = report.cycle
        log.info(
            "cycle finished: %d workloads, %d containers, %d images, %d scans, %.1fs; by status %s",
            cycle_summary.workloads,
            cycle_summary.containers,
            cycle_summary.images,
            cycle_summary.scans,
            cycle_summary.duration_seconds,
            cycle_summary.by_status,
        )
        delivery = asyncio.create_task(self._deliver(report), name="ocscan-deliver")
        if not await completes_first(delivery, stop, cancel_first=False):
            log.warning("stopping: letting delivery finish within the grace period")
            await self._end_within_grace(delivery, cancel=False)
            return
        try:
            delivery.result()
        except (ApiError, OcscanError) as error:
            log.error("delivering the cycle's results failed: %s", _reason(error))
        except Exception:
            log.exception("delivering the cycle's results failed")
        self.cycles_run += 1

    async def _end_within_grace(self, task: asyncio.Task[Any], *, cancel: bool) -> None:
        """Cancel ``task`` now (a cycle cleans up when cancelled) or let it finish; after the
        grace period it is cancelled regardless."""
        grace = self._config.agent.shutdown_grace_seconds
        if cancel:
            task.cancel()
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            log.error(
                "%s did not end within the grace period of %gs; the next cycle's sweep removes"
                " what it left",
                task.get_name(),
                grace,
            )
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as error:
            log.error("%s failed while stopping: %s", task.get_name(), error)


def _reason(error: Exception) -> str:
    if isinstance(error, ApiError):
        return error.status.message or f"HTTP {error.status.code}"
    return str(error)
