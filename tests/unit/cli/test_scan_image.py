"""``ocscan scan-image``: usage errors, the failure output, and the table layout.

Scans against a real registry and Trivy are in tests/integration/scan/test_scan_image_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ocscan.cli import app
from ocscan.report.table import print_findings
from ocscan.scan import Finding, ImageInfo, OperatingSystem, ScanResult, Severity

IMAGE = "127.0.0.1:5000/team/app:1.0"


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["scan-image", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def docker_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": "YWxpY2U6cHc="}}}))
    return path


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["Not A Valid/Image"], "invalid image reference 'Not A Valid/Image'"),
        (["--docker-config", "/nonexistent/config.json", IMAGE], "cannot read"),
        (["--username", "alice", IMAGE], "--username and --password-stdin go together"),
        (["--password-stdin", IMAGE], "--username and --password-stdin go together"),
        (["--trivy-token-file", "/t", IMAGE], "--trivy-token-file needs --trivy-server"),
        (["--trivy-server", "127.0.0.1:4954", IMAGE], "expected an http:// or https:// URL"),
        (
            ["--trivy-server", "http://127.0.0.1:1", "--cache-dir", "/c", IMAGE],
            "--cache-dir applies to standalone scans",
        ),
        (["--ca-file", "/nonexistent/ca.pem", IMAGE], "--ca-file /nonexistent/ca.pem"),
        (["--timeout", "0", IMAGE], "--timeout must be positive"),
        (["--format", "yaml", IMAGE], "'yaml' is not one of"),
    ],
)
def test_bad_usage_exits_2_with_a_reason(args: list[str], reason: str) -> None:
    code, stdout, stderr = invoke(*args)

    assert code == 2
    assert reason in stderr
    assert stdout == ""


def test_docker_config_and_username_exclude_each_other(docker_config: Path) -> None:
    code, _, stderr = invoke(
        "--docker-config", str(docker_config), "--username", "alice", "--password-stdin", IMAGE,
        stdin="pw\n",
    )  # fmt: skip

    assert code == 2
    assert "--docker-config and --username/--password-stdin exclude each other" in stderr


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("{not json", "malformed pull secret"),
        ('{"auths": {"127.0.0.1:5000": {"auth": "%%%"}}}', "malformed pull secret"),
        ('{"auths": []}', "'auths' is not an object"),
    ],
)
def test_a_malformed_docker_config_exits_2_naming_the_file(
    tmp_path: Path, document: str, reason: str
) -> None:
    path = tmp_path / "config.json"
    path.write_text(document)

    code, _, stderr = invoke("--docker-config", str(path), IMAGE)

    assert code == 2
    assert str(path) in stderr
    assert reason in stderr


def test_an_empty_password_on_stdin_is_bad_usage() -> None:
    code, _, stderr = invoke("--username", "alice", "--password-stdin", IMAGE, stdin="\n")

    assert code == 2
    assert "no password on stdin" in stderr


def test_an_empty_token_file_is_bad_usage(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n")

    code, _, stderr = invoke(
        "--trivy-server", "http://127.0.0.1:1", "--trivy-token-file", str(token), IMAGE
    )

    assert code == 2
    assert "is empty" in stderr


def test_an_unscannable_image_exits_3_with_a_json_error(tmp_path: Path) -> None:
    # An empty cache has no vulnerability DB: the scan fails before Trivy starts.
    code, stdout, _ = invoke("--cache-dir", str(tmp_path), "--format", "json", IMAGE)

    assert code == 3
    assert json.loads(stdout) == {
        "error": {
            "kind": "scanner_error",
            "message": f"no vulnerability DB at {tmp_path}/db/trivy.db "
            "(ocscan never downloads one)",
        }
    }


def test_an_unscannable_image_in_table_format_explains_on_stderr(tmp_path: Path) -> None:
    code, stdout, stderr = invoke("--cache-dir", str(tmp_path), IMAGE)

    assert code == 3
    assert stdout == ""
    assert f"scan of {IMAGE} failed (scanner_error): no vulnerability DB" in stderr


def finding(vulnerability_id: str, severity: Severity, package: str = "musl") -> Finding:
    return Finding(
        vulnerability_id=vulnerability_id,
        package_name=package,
        installed_version="1.0-r0",
        fixed_version="1.0-r1" if severity is not Severity.LOW else None,
        severity=severity,
        title=f"title of {vulnerability_id}",
    )


def test_table_lists_findings_most_severe_first_with_a_count_line() -> None:
    result = ScanResult(
        image=ImageInfo(
            reference=IMAGE,
            digest="sha256:" + "a" * 64,
            os=OperatingSystem(family="alpine", name="3.19.1"),
        ),
        findings=(
            finding("CVE-1", Severity.LOW),
            finding("CVE-2", Severity.CRITICAL),
            finding("CVE-3", Severity.MEDIUM),
            finding("CVE-4", Severity.CRITICAL, "zlib"),
        ),
    )
    console = Console(record=True, width=120)

    print_findings(result, console)

    text = console.export_text()
    lines = text.splitlines()
    assert f"Image: {IMAGE}" in lines
    assert "Digest: sha256:" + "a" * 64 in lines
    assert "OS: alpine 3.19.1" in lines
    order = [cve for line in lines for cve in ("CVE-1", "CVE-2", "CVE-3", "CVE-4") if cve in line]
    assert order == ["CVE-2", "CVE-4", "CVE-3", "CVE-1"]
    assert lines[-1] == "Total: 4 (CRITICAL: 2, HIGH: 0, MEDIUM: 1, LOW: 1, UNKNOWN: 0)"


def test_table_of_a_clean_image() -> None:
    console = Console(record=True, width=120)

    print_findings(ScanResult(image=ImageInfo(reference=IMAGE)), console)

    assert console.export_text().splitlines() == [
        f"Image: {IMAGE}",
        "Digest: unknown",
        "OS: not detected",
        "Total: 0 (CRITICAL: 0, HIGH: 0, MEDIUM: 0, LOW: 0, UNKNOWN: 0)",
    ]
