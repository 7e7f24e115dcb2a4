"""Fixtures for the Kubernetes emulator's tests: a running emulator and two real clients.

- ``kube``: a started :class:`KubeEmulator` (stopped after the test, also on failure).
- ``kubeconfig``: an admin kubeconfig file for it.
- ``client``: a ``lightkube.AsyncClient`` built from that file with ``KubeConfig.from_file``.
- ``kubectl``: runs the machine's ``kubectl`` against it (``--kubeconfig``, own cache dir).
  Missing kubectl: skipped locally, a failure under CI=true.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kube_support import Kubectl
from lightkube import AsyncClient, KubeConfig

from ocscan.sandbox.kube.server import KubeEmulator
from prerequisites import require_binary


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator(history_limit=1000) as emulator:
        yield emulator


@pytest.fixture
def kubeconfig(kube: KubeEmulator, tmp_path: Path) -> Path:
    return kube.write_kubeconfig(tmp_path / "admin.kubeconfig")


@pytest.fixture
async def client(kubeconfig: Path) -> AsyncIterator[AsyncClient]:
    api = AsyncClient(config=KubeConfig.from_file(kubeconfig))
    try:
        yield api
    finally:
        await api.close()


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    home = tmp_path / "kubectl-home"
    home.mkdir()
    return Kubectl(require_binary("kubectl"), kubeconfig, home)
