"""A direct ``trivy image`` call for the sandbox's own tests (the product has its runner)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.trivy import isolated_env


@dataclass(frozen=True)
class TrivyRun:
    returncode: int
    stdout: str
    stderr: str

    def findings(self) -> set[tuple[str, str]]:
        """``(installed package, vulnerability id)`` pairs of a successful JSON report."""
        assert self.returncode == 0, self.stderr
        report = json.loads(self.stdout)
        return {
            (vulnerability["PkgName"], vulnerability["VulnerabilityID"])
            for result in report.get("Results", [])
            for vulnerability in result.get("Vulnerabilities") or []
        }

    def report(self) -> dict[str, object]:
        assert self.returncode == 0, self.stderr
        document: dict[str, object] = json.loads(self.stdout)
        return document


ScanImage = Callable[..., TrivyRun]


@pytest.fixture
def scan_image(trivy_binary: Path, trivy_cache: Path, tmp_path: Path) -> ScanImage:
    """Run ``trivy image`` (standalone, or as client of ``server``) in an isolated env."""

    def scan(
        reference: str,
        *,
        credential: RegistryCredential | None = None,
        ca_file: Path | None = None,
        cache_dir: Path | None = None,
        server: str | None = None,
        token: str | None = None,
    ) -> TrivyRun:
        extra: dict[str, str] = {}
        if credential is not None:
            extra["TRIVY_USERNAME"], extra["TRIVY_PASSWORD"] = credential.reveal()
        if token is not None:
            extra["TRIVY_TOKEN"] = token
        argv = [
            str(trivy_binary), "image",
            "--skip-db-update", "--skip-java-db-update", "--skip-check-update",
            "--skip-version-check", "--disable-telemetry", "--image-src", "remote",
            "--scanners", "vuln", "--format", "json", "--quiet",
            "--cache-dir", str(cache_dir or trivy_cache), "--cache-backend", "memory",
        ]  # fmt: skip
        if ca_file is not None:
            argv += ["--cacert", str(ca_file)]
        if server is not None:
            argv += ["--server", server]
        argv.append(reference)
        home = tmp_path / "trivy-home"
        result = subprocess.run(
            argv, env=isolated_env(home, extra), capture_output=True, text=True, timeout=60
        )
        return TrivyRun(result.returncode, result.stdout, result.stderr)

    return scan
