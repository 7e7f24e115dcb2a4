"""Fixtures for scan tests, on top of the shared stack in tests/integration/conftest.py.

- ``odd_registry``: a registry whose users have passwords that cannot travel in
  ``TRIVY_PASSWORD`` (a comma, a leading space) or hold a plain canary; all contain
  ``canary``. ``odd_credentials`` are theirs; ``odd_image`` is SAMPLE_MINIMAL pushed there.
- ``recording_trivy``: the real Trivy behind a shim that records, per run, the argv it got,
  its environment and the mode of its private folder, so tests can inspect what a running
  scan really saw.
"""

from __future__ import annotations

import base64
import json
import stat
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.registry import RegistryServer
from ocscan.sandbox.samples import SampleImage, push_sample
from ocscan.sandbox.trivydb import SAMPLE_MINIMAL

CANARY = "canary-7Qx9-Zp2"
"""Part of every odd password: it must never show up anywhere."""

ODD_USERS = {
    "canary-user": f"{CANARY}-plain",
    "comma-user": f"{CANARY},with-comma",
    "space-user": f" {CANARY}-leading-space",
}


@pytest.fixture(scope="session")
def odd_registry(
    registry_binaries: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryServer]:
    server = RegistryServer.start(tmp_path_factory.mktemp("registry-odd"), ODD_USERS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def canary() -> str:
    return CANARY


@pytest.fixture(scope="session")
def odd_credentials() -> dict[str, RegistryCredential]:
    """``canary-user``, ``comma-user``, ``space-user``: their credentials on odd_registry."""
    return {user: RegistryCredential.of(user, password) for user, password in ODD_USERS.items()}


@pytest.fixture(scope="session")
def odd_image(
    odd_registry: RegistryServer, odd_credentials: dict[str, RegistryCredential]
) -> SampleImage:
    return push_sample(odd_registry, SAMPLE_MINIMAL, odd_credentials["canary-user"])


@dataclass(frozen=True)
class TrivyRecorder:
    """A shim in front of the real Trivy; each run appends one JSON line to ``log``."""

    path: Path
    log: Path

    def runs(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


_SHIM = """\
#!{python}
import json, os, stat, sys
home = os.environ.get("HOME", "")
workdir = os.path.dirname(home)
record = {{
    "argv": sys.argv[1:],
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "workdir": workdir,
    "workdir_mode": stat.S_IMODE(os.stat(workdir).st_mode) if workdir else None,
    "docker_config": sorted(os.listdir(os.environ["DOCKER_CONFIG"]))
        if os.path.isdir(os.environ.get("DOCKER_CONFIG", "")) else None,
}}
with open({log!r}, "a") as log:
    log.write(json.dumps(record) + "\\n")
os.execv({trivy!r}, [{trivy!r}, *sys.argv[1:]])
"""


@pytest.fixture
def recording_trivy(trivy_binary: Path, tmp_path: Path) -> TrivyRecorder:
    # Named trivy, so that putting its folder first on PATH also puts it under the CLI.
    (tmp_path / "shim-bin").mkdir()
    shim = tmp_path / "shim-bin" / "trivy"
    log = tmp_path / "trivy-runs.jsonl"
    shim.write_text(_SHIM.format(python=sys.executable, log=str(log), trivy=str(trivy_binary)))
    shim.chmod(stat.S_IRWXU)
    return TrivyRecorder(path=shim, log=log)


DockerConfigWriter = Callable[[dict[str, tuple[str, str]]], Path]


@pytest.fixture
def docker_config_file(tmp_path: Path) -> DockerConfigWriter:
    """Write a docker config with ``{key: (username, password)}`` and return its path."""

    def write(entries: dict[str, tuple[str, str]]) -> Path:
        auths = {
            key: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
            for key, (user, password) in entries.items()
        }
        path = tmp_path / "config.json"
        path.write_text(json.dumps({"auths": auths}))
        path.chmod(0o600)
        return path

    return write
