"""Trivy really reads the sandbox DB and really pulls sample images from the registries."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.samples import SampleImage
from ocscan.sandbox.trivy import TrivyServer

ScanImage = Callable[..., Any]  # the scan_image fixture (tests/integration/sandbox/conftest.py)


def test_standalone_scan_reports_exactly_the_expected_findings(
    scan_image: ScanImage, sample_image: SampleImage
) -> None:
    run = scan_image(sample_image.reference, credential=sample_image.credential)

    assert run.findings() == sample_image.expected_findings
    report = run.report()
    assert report["Metadata"]["OS"]["Family"] == "alpine"  # type: ignore[index]


def test_scan_shows_fixed_version_severity_and_title_from_the_db(
    scan_image: ScanImage, sample_image: SampleImage
) -> None:
    report = scan_image(sample_image.reference, credential=sample_image.credential).report()

    by_key = {
        (v["PkgName"], v["VulnerabilityID"]): v
        for result in report["Results"]  # type: ignore[attr-defined]
        for v in result.get("Vulnerabilities") or []
    }
    musl = by_key[("musl", "CVE-2025-26519")]
    assert musl["Severity"] == "HIGH"
    assert musl["FixedVersion"] == "1.2.4_git20230717-r5"
    assert musl["InstalledVersion"] == "1.2.4_git20230717-r4"
    assert musl["Title"] == "musl: out-of-bounds write in iconv EUC-KR decoder"
    zlib = by_key[("zlib", "CVE-2023-45853")]
    assert zlib["Severity"] == "CRITICAL"
    assert zlib.get("FixedVersion", "") == ""
    assert by_key[("libssl3", "CVE-2024-2511")]["Severity"] == "LOW"


def test_clean_image_has_no_findings(scan_image: ScanImage, clean_image: SampleImage) -> None:
    run = scan_image(clean_image.reference, credential=clean_image.credential)

    assert run.findings() == set()
    assert len(run.report()["Results"]) == 1  # type: ignore[arg-type]  # the OS was detected


def test_scan_by_digest(scan_image: ScanImage, sample_image_b: SampleImage) -> None:
    run = scan_image(sample_image_b.digest_reference, credential=sample_image_b.credential)

    assert run.findings() == {("musl", "CVE-2025-26519")}
    assert sample_image_b.digest in json.dumps(run.report()["Metadata"])


def test_scan_without_credentials_is_refused_by_the_registry(
    scan_image: ScanImage, sample_image: SampleImage
) -> None:
    run = scan_image(sample_image.reference)

    assert run.returncode == 1
    assert "UNAUTHORIZED" in run.stderr


def test_scan_with_another_registrys_credential_is_refused(
    scan_image: ScanImage, sample_image: SampleImage, bob_credential: RegistryCredential
) -> None:
    run = scan_image(sample_image.reference, credential=bob_credential)

    assert run.returncode == 1
    assert "UNAUTHORIZED" in run.stderr
    assert "bob" in sample_image.registry.failed_login_users()


def test_tls_registry_scan_with_its_ca(
    scan_image: ScanImage, tls_sample_image: SampleImage
) -> None:
    assert tls_sample_image.ca_file is not None
    run = scan_image(
        tls_sample_image.reference,
        credential=tls_sample_image.credential,
        ca_file=tls_sample_image.ca_file,
    )

    assert run.findings() == tls_sample_image.expected_findings


def test_tls_registry_scan_without_its_ca_fails_verification(
    scan_image: ScanImage, tls_sample_image: SampleImage
) -> None:
    run = scan_image(tls_sample_image.reference, credential=tls_sample_image.credential)

    assert run.returncode == 1
    assert "certificate signed by unknown authority" in run.stderr


def test_trivy_server_answers_health_and_scans_as_server(
    scan_image: ScanImage, trivy_server: TrivyServer, sample_image: SampleImage, tmp_path: Path
) -> None:
    assert httpx.get(f"{trivy_server.url}/healthz", trust_env=False).text == "ok"

    # An empty cache dir on the client: the findings can only come from the server's DB.
    run = scan_image(
        sample_image.reference,
        credential=sample_image.credential,
        server=trivy_server.url,
        token=trivy_server.token,
        cache_dir=tmp_path / "client-cache",
    )

    assert run.findings() == sample_image.expected_findings


def test_trivy_server_rejects_a_wrong_token(
    scan_image: ScanImage, trivy_server: TrivyServer, sample_image: SampleImage, tmp_path: Path
) -> None:
    run = scan_image(
        sample_image.reference,
        credential=sample_image.credential,
        server=trivy_server.url,
        token="not-the-token",
        cache_dir=tmp_path / "client-cache",
    )

    assert run.returncode == 1
    assert "invalid token" in run.stderr
