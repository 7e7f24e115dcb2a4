"""Fixtures of the agent tests: one sandbox per session (per xdist worker) with the real
registry, Trivy server, Kubernetes emulator and process kubelet; a GitLab agent API emulator
per test. Helpers are in ``agent_support``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_support import AGENT_ID, AGENT_TOKEN, KAS_SECRET, GitLabFiles

from ocscan.sandbox.gitlab import GitLabEmulator
from ocscan.sandbox.stack import PULL_SECRET, Sandbox
from prerequisites import require_binary
from sandbox_session import running_sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("sandbox"), samples=False) as stack:
        yield stack


@pytest.fixture
def kubectl() -> str:
    return require_binary("kubectl")


@pytest.fixture
def namespace(sandbox: Sandbox, request: pytest.FixtureRequest) -> str:
    """A namespace of the test's own, holding the sandbox's pull secret ``registry-pull``."""
    name = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:50].strip("-")
    sandbox.namespace(name)
    sandbox.pull_secret(PULL_SECRET, name)
    return name


@pytest.fixture
def gitlab(tmp_path: Path) -> Iterator[GitLabFiles]:
    """A GitLab emulator knowing agent ``AGENT_ID``, and the agent's token and KAS files."""
    with GitLabEmulator({AGENT_TOKEN: AGENT_ID}, kas_secret=KAS_SECRET) as emulator:
        token_file = tmp_path / "agent-token"
        token_file.write_text(AGENT_TOKEN + "\n")
        kas_file = tmp_path / "kas-secret"
        kas_file.write_text(emulator.kas_secret_file_content)
        yield GitLabFiles(emulator, token_file, kas_file)
