"""asyncio helpers the agent, the CLI and the scanner pod watch share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, its cancellation swallowed."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def completes_first(
    awaitable: Awaitable[object],
    *stoppers: asyncio.Event | Awaitable[object],
    cancel_first: bool = True,
) -> bool:
    """Await ``awaitable`` unless one of ``stoppers`` comes first; True if it completed.

    An Event among ``stoppers`` stops when it is set. The losers are cancelled, ``awaitable``
    only when ``cancel_first`` (a task passed with False keeps running).
    """
    task = asyncio.ensure_future(awaitable)
    others = {
        asyncio.ensure_future(s.wait() if isinstance(s, asyncio.Event) else s) for s in stoppers
    }
    try:
        await asyncio.wait({task, *others}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, *others):
            if not pending.done() and (pending is not task or cancel_first):
                await cancel_and_wait(pending)
    return task.done() and not task.cancelled()
