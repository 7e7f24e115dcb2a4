"""Waiting for the emulator to converge, as the controller and kubelet tests do."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest


async def eventually(
    probe: Callable[[], Awaitable[Any]], check: Callable[[Any], bool], within: float = 15
) -> Any:
    """Poll ``probe`` until ``check`` accepts its result; fail showing the last result."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met in {within}s; last value: {value!r}")
        await asyncio.sleep(0.05)
