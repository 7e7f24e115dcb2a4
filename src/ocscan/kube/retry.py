"""Retrying Kubernetes API calls through transient failures (5xx, 429, timeouts, resets)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx2
from lightkube.core.exceptions import ApiError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 6
BASE_DELAY = 0.2
MAX_DELAY = 5.0


def is_transient(error: BaseException) -> bool:
    """A failure that the same request may not meet again.

    lightkube raises ``ApiError`` for a JSON Status body, but a bare ``HTTPStatusError``
    for any other body (a proxy's 502 page): both are judged by their status code.
    """
    if isinstance(error, ApiError):
        return error.status.code in RETRYABLE_STATUS
    if isinstance(error, httpx2.HTTPStatusError):
        return error.response.status_code in RETRYABLE_STATUS
    return isinstance(error, httpx2.TransportError)


async def retrying(call: Callable[[], Awaitable[T]], *, what: str, attempts: int = ATTEMPTS) -> T:
    """``await call()``, again after a transient failure, with exponential backoff and full
    jitter; the last failure is raised as it is."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except httpx2.HTTPError as error:
            if attempt == attempts or not is_transient(error):
                raise
            delay = random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt))  # noqa: S311
            log.info("%s failed (%s), retry %d in %.2fs", what, describe(error), attempt, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def describe(error: BaseException) -> str:
    """An API failure in the API's own words where it gave some; never a request body."""
    if isinstance(error, ApiError):
        return error.status.message or f"HTTP {error.status.code}"
    if isinstance(error, httpx2.HTTPStatusError):
        return f"HTTP {error.response.status_code} {error.response.reason_phrase}".strip()
    return type(error).__name__
