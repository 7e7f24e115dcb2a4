"""Leader election with a coordination.k8s.io/v1 Lease: only the leader scans.

The holder renews the lease every ``renew_seconds``. A candidate takes it over when the lease
record has not changed for ``lease_duration_seconds`` as measured on the candidate's own
monotonic clock (as client-go does), so clock skew between replicas never shortens a lease.
Every write carries the resourceVersion it read, so two candidates can never both win (the
API answers 409 to the loser). A holder whose renewals fail keeps leading only while no
other replica can have taken over yet, then steps down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

from ocscan.errors import OcscanError
from ocscan.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_Record = tuple[str | None, datetime | None, str | None]
"""What identifies one version of the lease: holder, renew time, resourceVersion."""


def _micro_time() -> datetime:
    """Now, never on a whole second: a MicroTime must carry its six digits, and a datetime
    without microseconds is written without them."""
    now = datetime.now(UTC)
    return now if now.microsecond else now.replace(microsecond=1)


class LeaderElector:
    """Keeps trying to hold the lease; :attr:`is_leader` says whether it does right now.

    ``on_change`` is called with True or False whenever leadership changes.
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration_seconds: int = 15,
        renew_seconds: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._duration = lease_duration_seconds
        self._renew = renew_seconds
        self._on_change = on_change
        self._leading = asyncio.Event()
        self._not_leading = asyncio.Event()
        self._not_leading.set()
        self._renewed_at = 0.0  # monotonic start of the last successful round
        self._observed: _Record | None = None
        self._observed_at = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_until_leader(self) -> None:
        await self._leading.wait()

    async def wait_until_not_leader(self) -> None:
        await self._not_leading.wait()

    async def __aenter__(self) -> LeaderElector:
        self._task = asyncio.create_task(self._loop(), name="ocscan-leader-election")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        if self.is_leader:
            await self._release()

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                # A round that outlasts the renew period proves nothing: count it as failed.
                async with asyncio.timeout(self._renew):
                    leading = await self.try_acquire_or_renew()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                reason = "no answer in time" if isinstance(error, TimeoutError) else error
                log.warning("leader election: lease %s: %s", self._name, reason)
                leading = self.is_leader and self._can_wait_for_next_round()
            else:
                if leading:
                    self._renewed_at = started
            self._set_leading(leading)
            await asyncio.sleep(self._renew)

    def _can_wait_for_next_round(self) -> bool:
        """Whether the next round ends before anyone else may take the lease over."""
        next_round_ends = time.monotonic() + 2 * self._renew
        return next_round_ends < self._renewed_at + self._duration

    def _set_leading(self, leading: bool, *, how: str | None = None) -> None:
        if leading == self.is_leader:
            return
        log.info(
            "%s %s the lease %s/%s",
            self.identity,
            how or ("acquired" if leading else "lost"),
            self._namespace,
            self._name,
        )
        if leading:
            self._not_leading.clear()
            self._leading.set()
        else:
            self._leading.clear()
            self._not_leading.set()
        if self._on_change is not None:
            self._on_change(leading)

    def _expired(self, lease: Lease, spec: LeaseSpec) -> bool:
        """Whether the lease record has stayed unchanged for its whole duration."""
        now = time.monotonic()
        version = lease.metadata.resourceVersion if lease.metadata else None
        record = (spec.holderIdentity, spec.renewTime, version)
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = spec.leaseDurationSeconds or self._duration
        return now > self._observed_at + duration

    async def acquire_once(self) -> bool:
        """One round now; when it wins, this candidate leads (and releases on exit)."""
        started = time.monotonic()
        if not await self.try_acquire_or_renew():
            return False
        self._renewed_at = started
        self._set_leading(True)
        return True

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this candidate holds the lease afterwards."""
        now = _micro_time()
        try:
            lease = await self._client.get(Lease, self._name, namespace=self._namespace)
        except ApiError as error:
            if error.status.code != 404:
                raise
            return await self._create(now)
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity
        if holder not in (None, "", self.identity) and not self._expired(lease, spec):
            return False
        if holder != self.identity:
            spec.acquireTime = now
            spec.leaseTransitions = (spec.leaseTransitions or 0) + 1
        spec.holderIdentity = self.identity
        spec.renewTime = now
        spec.leaseDurationSeconds = self._duration
        lease.spec = spec
        try:
            await self._client.replace(lease)
        except ApiError as error:
            if error.status.code == 409:  # someone else wrote first
                return False
            raise
        return True

    async def _create(self, now: datetime) -> bool:
        lease = Lease(
            metadata=ObjectMeta(name=self._name, namespace=self._namespace),
            spec=LeaseSpec(
                holderIdentity=self.identity,
                acquireTime=now,
                renewTime=now,
                leaseDurationSeconds=self._duration,
                leaseTransitions=0,
            ),
        )
        try:
            await self._client.create(lease)
        except ApiError as error:
            if error.status.code == 409:
                return False
            raise
        return True

    async def _release(self) -> None:
        """Hand the lease over at once on shutdown instead of letting it expire."""
        self._set_leading(False, how="is releasing")
        try:
            lease = await self._client.get(Lease, self._name, namespace=self._namespace)
            if lease.spec and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                lease.spec.renewTime = None
                await self._client.replace(lease)
        except Exception as error:  # the lease then expires on its own
            log.warning("could not release the lease %s/%s: %s", self._namespace, self._name, error)


class LeaseHeldError(OcscanError):
    """Another holder keeps the lease: a cycle runs already (an agent, or another scan)."""

    def __init__(self, namespace: str, name: str, holder: str | None) -> None:
        self.holder = holder
        super().__init__(
            f"another ocscan cycle holds the lease {namespace}/{name} ({holder or 'unknown'}): "
            "an agent leading there already scans this cluster and delivers to its sinks; "
            "wait for it, or scan with another scanner.namespace"
        )


class LeaseLostError(OcscanError):
    """The lease was lost during a cycle (renewals failed long enough): the cycle stopped."""


@contextlib.asynccontextmanager
async def exclusive_lease(
    client: AsyncClient,
    *,
    namespace: str,
    name: str,
    identity: str,
    lease_duration_seconds: int,
    renew_seconds: float,
) -> AsyncIterator[LeaderElector]:
    """Hold the lease for the body, renewed meanwhile and released at the end.

    A lease that stays unchanged (its holder crashed) is waited out; one that its holder
    renews raises :class:`LeaseHeldError` at once, so cycles never overlap.
    """
    elector = LeaderElector(
        client,
        namespace=namespace,
        name=name,
        identity=identity,
        lease_duration_seconds=lease_duration_seconds,
        renew_seconds=renew_seconds,
    )
    seen: _Record | None = None
    while not await elector.acquire_once():
        lease = await client.get(Lease, name, namespace=namespace)
        spec = lease.spec or LeaseSpec()
        version = lease.metadata.resourceVersion if lease.metadata else None
        record = (spec.holderIdentity, spec.renewTime, version)
        if seen is not None and record != seen:
            raise LeaseHeldError(namespace, name, spec.holderIdentity)
        if seen is None:
            log.info("waiting for the lease %s/%s held by %s", namespace, name, spec.holderIdentity)
        seen = record
        await asyncio.sleep(renew_seconds)
    async with elector:
        yield elector
