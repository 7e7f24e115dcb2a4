"""What a user gets against ``ocscan sandbox up``: an agent cycle delivering a schema-valid
GitLab report, VulnerabilityReports kubectl reads and metrics that match the cycle; and
``ocscan scan`` whose machine formats keep stdout clean, whose table ends with the summary
and which shows a progress bar on a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from agent_support import AgentProcess, Metrics, write_yaml

from ocscan.report.gitlab_report import validate_gitlab_report
from ocscan.sandbox.processes import ProcessRecord, stop_pid
from ocscan.scan.report import Severity
from prerequisites import require_binary

SAMPLE_STATUSES = {"auth": 1, "scanned": 3, "secret_missing": 1}


@dataclass(frozen=True)
class SandboxUp:
    directory: Path
    kubeconfig: Path
    config_file: Path
    info: dict[str, Any]


def ocscan(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocscan", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def sandbox_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxUp]:
    for binary in ("docker-registry", "htpasswd"):
        require_binary(binary)
    directory = tmp_path_factory.mktemp("up") / "sandbox"
    pid_file = directory / "sandbox.pid"
    try:
        started = ocscan("sandbox", "up", "--dir", str(directory))
        assert started.returncode == 0, started.stderr + started.stdout
        info = json.loads((directory / "sandbox.json").read_text())
        yield SandboxUp(directory, Path(info["kubeconfig"]), Path(info["config_file"]), info)
    finally:
        if pid_file.exists():
            record = ProcessRecord.read(pid_file)
            ocscan("sandbox", "down", "--dir", str(directory))
            if record.is_running():
                stop_pid(record)


def test_an_agent_cycle_delivers_a_gitlab_report_vulnerability_reports_and_metrics(
    sandbox_up: SandboxUp, kubectl: str, tmp_path: Path
) -> None:
    document = yaml.safe_load(sandbox_up.config_file.read_text())
    document["agent"] = {"schedule": "0 0 1 1 *", "listen_host": "127.0.0.1", "listen_port": 0}
    document["sinks"] = {
        "json_file": str(tmp_path / "cycle.json"),
        "gitlab_report_file": str(tmp_path / "gl-container-scanning-report.json"),
        "vulnerability_reports": True,
    }
    config_file = write_yaml(tmp_path / "agent.yaml", document)

    with AgentProcess(config_file, sandbox_up.kubeconfig) as agent:
        port = agent.port
        agent.wait_for_entry(lambda e: e["message"].startswith("VulnerabilityReports:"),
                             "the VulnerabilityReports")  # fmt: skip
        metrics = Metrics(httpx_get(port, "/metrics"))
        agent.signal(signal.SIGTERM)
        assert agent.wait(10) == 0
    assert [e for e in agent.entries() if e["level"] == "ERROR"] == []

    cycle = json.loads((tmp_path / "cycle.json").read_text())
    summary = cycle["cycle"]
    assert summary["by_status"] == SAMPLE_STATUSES
    # The GitLab report: valid, and honest that the shop namespace was not fully scanned.
    report = json.loads((tmp_path / "gl-container-scanning-report.json").read_text())
    validate_gitlab_report(report)
    assert report["scan"]["status"] == "failure"
    assert len(report["scan"]["messages"]) == 2
    assert len(report["vulnerabilities"]) == sum(summary["by_severity"].values())
    # VulnerabilityReports for every scanned container, none for the failed ones.
    listed = subprocess.run(
        [kubectl, "--kubeconfig", str(sandbox_up.kubeconfig), "get", "vulnerabilityreports",
         "-A", "-o", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    items = json.loads(listed.stdout)["items"]
    names = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items}
    assert names == {
        ("shop", "deployment-web-app"),
        ("shop", "deployment-api-app"),
        ("batch", "cronjob-nightly-report-report"),
    }
    counted: dict[str, int] = {}
    for item in items:
        for key, count in item["report"]["summary"].items():
            counted[key] = counted.get(key, 0) + count
    for severity in Severity:
        key = f"{severity.value.lower()}Count"
        assert counted[key] == summary["by_severity"].get(severity.value, 0)
    table = subprocess.run(
        [kubectl, "--kubeconfig", str(sandbox_up.kubeconfig), "get", "vulnerabilityreports", "-A"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "deployment-web-app" in table and "cronjob-nightly-report-report" in table
    # Metrics: the cycle's summary.
    assert metrics.by_label("ocscan_scans_total", "result") == summary["by_status"]
    assert metrics.by_label("ocscan_vulnerabilities", "severity") == {
        s.value: summary["by_severity"].get(s.value, 0) for s in Severity
    }
    assert metrics.value("ocscan_last_successful_cycle_timestamp_seconds") == 0
    assert metrics.value("ocscan_temporary_secrets") == 0


def httpx_get(port: int, path: str) -> str:
    response = httpx.get(f"http://127.0.0.1:{port}{path}")
    response.raise_for_status()
    return response.text


def scan(sandbox_up: SandboxUp, *args: str) -> subprocess.CompletedProcess[str]:
    return ocscan("scan", "--kubeconfig", str(sandbox_up.kubeconfig),
                  "--config", str(sandbox_up.config_file), *args)  # fmt: skip


def test_json_and_gitlab_formats_keep_stdout_machine_clean(sandbox_up: SandboxUp) -> None:
    as_json = scan(sandbox_up, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)  # the whole of stdout, nothing else
    assert document["cycle"]["by_status"] == SAMPLE_STATUSES
    assert "scan failed" in as_json.stderr  # warnings go to stderr

    as_gitlab = scan(sandbox_up, "--format", "gitlab")
    assert as_gitlab.returncode == 0, as_gitlab.stderr
    report = json.loads(as_gitlab.stdout)
    validate_gitlab_report(report)
    assert report["scan"]["status"] == "failure"


def test_the_table_ends_with_the_summary_by_severity_and_by_failure_kind(
    sandbox_up: SandboxUp,
) -> None:
    expected = json.loads(scan(sandbox_up, "--format", "json").stdout)["cycle"]
    done = scan(sandbox_up)
    assert done.returncode == 0, done.stderr
    lines = [line.rstrip() for line in done.stdout.rstrip("\n").splitlines()]
    # Two-column rows belong to the summary tables: "│ HIGH │ 3 │".
    rows = [m.groups() for m in (re.match(r"^│ (\w+) +│ +(\d+) │$", ln) for ln in lines) if m]
    severities = {name: int(n) for name, n in rows if name in {s.value for s in Severity}}
    statuses = {name: int(n) for name, n in rows if name not in severities}
    assert severities == {s.value: expected["by_severity"].get(s.value, 0) for s in Severity}
    assert statuses == expected["by_status"] == SAMPLE_STATUSES
    summary_rows = [i for i, ln in enumerate(lines) if re.match(r"^│ \w+ +│ +\d+ │$", ln)]
    assert lines.index("Workloads") < summary_rows[0]
    # After the last summary row: the table's bottom border and the one-line totals.
    tail = lines[summary_rows[-1] + 1 :]
    assert len(tail) == 2 and tail[0].startswith("└"), tail
    assert tail[1].startswith("5 workloads, 5 containers"), tail


def test_a_terminal_shows_a_progress_bar_on_stderr(sandbox_up: SandboxUp) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "ocscan", "scan", "--kubeconfig", str(sandbox_up.kubeconfig),
         "--config", str(sandbox_up.config_file)],
        stdout=subprocess.PIPE, stderr=terminal, env={**os.environ, "TERM": "xterm"},
    )  # fmt: skip
    os.close(terminal)
    try:
        shown = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        stdout, _ = process.communicate(timeout=30)
    finally:
        os.close(controller)
        if process.poll() is None:
            process.kill()
            process.wait()
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", shown).decode(errors="replace")
    assert process.returncode == 0, text
    assert "scanning images" in text
    # Targets done of total, scanner pods running, failures so far: here the last frame.
    assert "5/5 0 scanner pods running, 2 failed" in text, text
    assert "Workloads" in stdout.decode()  # the report itself is not on the terminal
