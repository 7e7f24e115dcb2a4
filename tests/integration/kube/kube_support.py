"""Helpers shared by the emulator's tests (import as ``from kube_support import ...``)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ocscan.sandbox.kube.server import KubeEmulator


def admin_http(kube: KubeEmulator) -> httpx.Client:
    """A raw HTTP client with the admin token, for checks below any client library."""
    return httpx.Client(
        base_url=kube.url, headers={"Authorization": f"Bearer {kube.auth.admin_token}"}
    )


@dataclass
class Kubectl:
    """The real kubectl, pointed at one emulator."""

    binary: str
    kubeconfig: Path
    home: Path

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl <args>``; with ``check``, a non-zero exit fails the test with stderr."""
        command = [
            self.binary,
            "--kubeconfig",
            str(kubeconfig or self.kubeconfig),
            "--cache-dir",
            str(self.home / "cache"),
            *args,
        ]
        env = {"HOME": str(self.home), "PATH": os.environ.get("PATH", "")}
        result = subprocess.run(
            command, input=stdin, capture_output=True, text=True, env=env, timeout=60
        )
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result
