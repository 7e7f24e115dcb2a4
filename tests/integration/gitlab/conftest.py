"""Fixtures: ``gitlab``, a running GitLab agent API emulator on 127.0.0.1 that knows agent
``AGENT_ID`` by ``AGENT_TOKEN``; ``sink``, a :class:`GitLabAgentSink` for it with fast retries.
Constants and report builders are in ``gitlab_support``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from gitlab_support import AGENT_ID, AGENT_TOKEN, KAS_SECRET, make_sink

from ocscan.report.gitlab_api import GitLabAgentSink
from ocscan.sandbox.gitlab import GitLabEmulator


@pytest.fixture
def gitlab() -> Iterator[GitLabEmulator]:
    with GitLabEmulator({AGENT_TOKEN: AGENT_ID}, kas_secret=KAS_SECRET) as emulator:
        yield emulator


@pytest.fixture
async def sink(gitlab: GitLabEmulator) -> AsyncIterator[GitLabAgentSink]:
    async with make_sink(gitlab, scanner_version="0.76.0") as agent_sink:
        yield agent_sink
