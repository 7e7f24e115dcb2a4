"""`make demo` keeps working: it runs scripts/demo.sh, which this test runs as it is."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ocscan.report.gitlab_report import validate_gitlab_report

ROOT = Path(__file__).parents[3]


@pytest.mark.timeout(360)  # longer than the script's own limit: its trap must run
def test_demo_writes_its_outputs_and_explains_them(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        env={**os.environ, "OCSCAN_DEMO_OUTPUT": str(out)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "scan.json").read_text())
    statuses = sorted(c["status"] for w in report["workloads"] for c in w["containers"])
    assert statuses == ["auth", "scanned", "scanned", "scanned", "secret_missing"]
    validate_gitlab_report(json.loads((out / "gl-container-scanning-report.json").read_text()))
    summary = (out / "summary.txt").read_text()
    assert "Not scanned" in summary and "shop/stale-pull" in summary
    assert "What just happened" in done.stdout and str(out) in done.stdout
    assert "ocscan-scan-" not in done.stdout  # no temporary Secret or scanner pod left
