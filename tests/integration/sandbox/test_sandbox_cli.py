"""``ocscan sandbox up``/``down`` as a user runs them, with kubectl and ``ocscan scan``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocscan.sandbox.processes import ProcessRecord
from prerequisites import require_binary


def ocscan(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocscan", *args],
        capture_output=True, text=True, input=stdin, timeout=300, check=False,
    )  # fmt: skip


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("kubectl")
    return subprocess.run(
        [binary, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(cmdline)
    return found


@pytest.fixture
def sandbox_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "sandbox"
    try:
        yield directory
    finally:
        if (directory / "sandbox.pid").exists():
            ocscan("sandbox", "down", "--dir", str(directory))


def test_up_scan_down(sandbox_dir: Path) -> None:
    started = ocscan("sandbox", "up", "--dir", str(sandbox_dir))
    assert started.returncode == 0, started.stderr + started.stdout
    info = json.loads((sandbox_dir / "sandbox.json").read_text())
    kubeconfig = Path(info["kubeconfig"])
    assert info["agent_namespace"] == "ocscan"
    assert Path(info["trivy"]["token_file"]).read_text().strip()
    assert info["registry"]["username"] and info["registry"]["password"]

    pods = json.loads(kubectl(kubeconfig, "get", "pods", "-A", "-o", "json").stdout)["items"]
    phases = {p["metadata"]["name"].rsplit("-", 2)[0]: p["status"]["phase"] for p in pods}
    assert phases == {
        "web": "Running",
        "api": "Running",
        "legacy": "Running",
        "orphan": "Running",
        "nightly-report-manual": "Running",
    }
    table = kubectl(kubeconfig, "get", "pods", "-A")
    assert table.returncode == 0 and "Running" in table.stdout

    scanned = ocscan("scan", "--kubeconfig", str(kubeconfig), "--format", "json")
    assert scanned.returncode == 0, scanned.stderr
    report = json.loads(scanned.stdout)
    statuses = {
        (w["namespace"], w["kind"], w["name"]): w["containers"][0]["status"]
        for w in report["workloads"]
    }
    assert statuses == {
        ("batch", "CronJob", "nightly-report"): "scanned",
        ("shop", "Deployment", "api"): "scanned",
        ("shop", "Deployment", "legacy"): "auth",
        ("shop", "Deployment", "orphan"): "secret_missing",
        ("shop", "Deployment", "web"): "scanned",
    }
    assert info["registry"]["password"] not in scanned.stdout + scanned.stderr
    secrets = json.loads(kubectl(kubeconfig, "get", "secrets", "-n", "ocscan", "-o", "json").stdout)
    assert [s["metadata"]["name"] for s in secrets["items"]] == ["ocscan-trivy-token"]

    record = ProcessRecord.read(sandbox_dir / "sandbox.pid")
    assert record.is_running()
    assert processes_mentioning(str(sandbox_dir))  # the registry and Trivy server run there
    stopped = ocscan("sandbox", "down", "--dir", str(sandbox_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert not record.is_running()
    assert processes_mentioning(str(sandbox_dir)) == []
    assert not (sandbox_dir / "sandbox.json").exists()


def test_up_refuses_bad_advisories(tmp_path: Path, sandbox_dir: Path) -> None:
    advisories = tmp_path / "advisories.json"
    advisories.write_text(json.dumps([{"os": "alpine", "package": "openssl", "id": "CVE-1"}]))
    started = ocscan("sandbox", "up", "--dir", str(sandbox_dir), "--advisories", str(advisories))
    assert started.returncode == 1
    assert "--advisories" in started.stderr and "alpine" in started.stderr
    assert not (sandbox_dir / "sandbox.pid").exists()


def test_down_without_a_sandbox_says_so(sandbox_dir: Path) -> None:
    stopped = ocscan("sandbox", "down", "--dir", str(sandbox_dir))
    assert stopped.returncode == 1
    assert "no sandbox runs" in stopped.stderr
