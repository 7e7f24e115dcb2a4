"""Leader election with a coordination.k8s.io/v1 Lease: only the leader scans.

The holder renews the lease every ``renew_seconds``; a candidate takes it over when it has
not been renewed for ``lease_duration_seconds``. Every write carries the resourceVersion
it read, so two candidates can never both win (the API answers 409 to the loser).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.coordination_v1 import LeaseSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease

log = logging.getLogger(__name__)


class LeaderElector:
    """Keeps trying to hold the lease; :attr:`is_leader` says whether it does right now."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration_seconds: int = 15,
        renew_seconds: float = 5.0,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._name = name
        self.identity = identity
        self._duration = lease_duration_seconds
        self._renew = renew_seconds
        self._leading = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    async def wait_until_leader(self) -> None:
        await self._leading.wait()

    async def __aenter__(self) -> LeaderElector:
        self._task = asyncio.create_task(self._loop(), name="ocscan-leader-election")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.is_leader:
            await self._release()

    async def _loop(self) -> None:
        while True:
            try:
                leading = await self.try_acquire_or_renew()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # API trouble: we cannot prove we still lead
                log.warning("leader election: %s", error)
                leading = False
            if leading != self.is_leader:
                log.info(
                    "%s %s the lease %s",
                    self.identity,
                    "acquired" if leading else "lost",
                    self._name,
                )
            if leading:
                self._leading.set()
            else:
                self._leading.clear()
            await asyncio.sleep(self._renew)

    async def try_acquire_or_renew(self) -> bool:
        """One round: True when this candidate holds the lease afterwards."""
        now = datetime.now(UTC)
        try:
            lease = await self._client.get(Lease, self._name, namespace=self._namespace)
        except ApiError as error:
            if error.status.code != 404:
                raise
            return await self._create(now)
        spec = lease.spec or LeaseSpec()
        holder = spec.holderIdentity
        renewed = spec.renewTime or spec.acquireTime
        duration = spec.leaseDurationSeconds or self._duration
        expired = renewed is None or renewed + timedelta(seconds=duration) < now
        if holder not in (None, "", self.identity) and not expired:
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
        with contextlib.suppress(Exception):
            lease = await self._client.get(Lease, self._name, namespace=self._namespace)
            if lease.spec and lease.spec.holderIdentity == self.identity:
                lease.spec.holderIdentity = None
                lease.spec.renewTime = None
                await self._client.replace(lease)
        self._leading.clear()
