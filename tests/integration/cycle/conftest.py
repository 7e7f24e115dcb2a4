"""One sandbox per test session (per xdist worker): the real registry, Trivy server, the
Kubernetes emulator and its process kubelet. Every object version the API stores is
recorded, so tests can prove what never appeared in any of them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest
from cycle_support import ObjectRecorder

from ocscan.sandbox.stack import Sandbox
from sandbox_session import running_sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("sandbox"), samples=False) as stack:
        assert stack.kube is not None
        recorder = ObjectRecorder()
        stack.kube.store.subscribe(recorder)
        stack.recorder = recorder  # type: ignore[attr-defined]
        stack.create_samples()
        yield stack


@pytest.fixture(scope="session")
def recorder(sandbox: Sandbox) -> ObjectRecorder:
    return sandbox.recorder  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def scratch_namespace(sandbox: Sandbox, request: pytest.FixtureRequest) -> str:
    """A namespace of its own for one test, with the sandbox's pull secret."""
    readable = re.sub(r"[^a-z0-9-]+", "-", request.node.name.replace("_", "-").lower())
    unique = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]  # parameters too
    name = f"{readable[:33].strip('-')}-{unique}"
    sandbox.namespace(name)
    sandbox.pull_secret("registry-pull", name)
    return name
