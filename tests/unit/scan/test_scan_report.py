"""Parsing Trivy's JSON report, on output recorded from real Trivy 0.76 scans.

trivy_reports/standalone.json and client_server.json are the same image scanned in both
modes (the server adds a ``Trivy.Server`` block); the integration tests parse live output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ocscan.errors import OcscanError
from ocscan.scan.report import (
    Cvss,
    ReportError,
    ScanResult,
    Severity,
    parse_report,
)

REPORTS = Path(__file__).parent / "trivy_reports"
IMAGE = "127.0.0.1:5501/team/app:1.0"
DIGEST = "sha256:8246839b9d5728cce93bf7e395eb76d117c48504a1a7fdd44af0c2c74dffb0e1"
LAYER = "sha256:aec42b5dc51451ea504ee195fc0553d4721be7df4fe97ea43d22997e9cdcf274"


def recorded(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REPORTS / f"{name}.json").read_text())
    return data


@pytest.mark.parametrize("name", ["standalone", "client_server"])
def test_recorded_reports_parse_to_image_and_findings(name: str) -> None:
    result = parse_report((REPORTS / f"{name}.json").read_bytes(), image=IMAGE)

    assert result.image.reference == IMAGE
    assert result.image.digest == DIGEST
    assert result.image.os is not None
    assert (result.image.os.family, result.image.os.name) == ("alpine", "3.19.1")
    assert result.image.platform == "linux/amd64"  # from the image's config
    assert [(f.severity, f.vulnerability_id, f.package_name) for f in result.findings] == [
        (Severity.HIGH, "CVE-2025-26519", "musl"),
        (Severity.MEDIUM, "CVE-2024-0727", "libcrypto3"),
    ]
    musl, libcrypto = result.findings
    assert libcrypto.installed_version == "3.1.4-r5"
    assert libcrypto.fixed_version == "3.1.4-r6"
    assert libcrypto.title == "t"
    assert libcrypto.description == "d"
    assert libcrypto.primary_url == "https://avd.aquasec.com/nvd/cve-2024-0727"
    assert libcrypto.references == ("https://nvd.nist.gov/vuln/detail/CVE-2024-0727",)
    assert libcrypto.layer_digest == LAYER
    assert musl.title is None


def test_both_modes_give_the_same_result() -> None:
    standalone = parse_report(json.dumps(recorded("standalone")), image=IMAGE)
    client_server = parse_report(json.dumps(recorded("client_server")), image=IMAGE)

    assert standalone == client_server


def test_cvss_per_source_is_kept() -> None:
    data = recorded("standalone")
    data["Results"][0]["Vulnerabilities"][0]["CVSS"] = {
        "nvd": {
            "V3Vector": "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:H",
            "V3Score": 5.5,
            "V40Vector": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N",
            "V40Score": 8.7,
        },
        "redhat": {"V2Vector": "AV:N/AC:L/Au:N/C:N/I:N/A:P", "V2Score": 5.0},
    }

    finding = next(
        f for f in parse_report(json.dumps(data), image=IMAGE).findings if f.package_name != "musl"
    )

    assert finding.cvss == {
        "nvd": Cvss(
            v3_vector="CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:H",
            v3_score=5.5,
            v40_vector="CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:H/SC:N/SI:N/SA:N",
            v40_score=8.7,
        ),
        "redhat": Cvss(v2_vector="AV:N/AC:L/Au:N/C:N/I:N/A:P", v2_score=5.0),
    }


def test_unknown_fields_and_severities_are_tolerated() -> None:
    data = recorded("standalone")
    data["SomethingNew"] = {"nested": [1, 2]}
    vulnerability = data["Results"][0]["Vulnerabilities"][1]
    vulnerability["Severity"] = "APOCALYPTIC"
    vulnerability["NewField"] = True

    result = parse_report(json.dumps(data), image=IMAGE)

    assert {f.vulnerability_id: f.severity for f in result.findings} == {
        "CVE-2024-0727": Severity.MEDIUM,
        "CVE-2025-26519": Severity.UNKNOWN,
    }


def test_findings_are_sorted_most_severe_first() -> None:
    data = recorded("standalone")
    template = data["Results"][0]["Vulnerabilities"][0]
    severities = ["LOW", "CRITICAL", "UNKNOWN", "HIGH", "MEDIUM"]
    data["Results"][0]["Vulnerabilities"] = [
        {**template, "VulnerabilityID": f"CVE-0-{i}", "Severity": s}
        for i, s in enumerate(severities)
    ]

    result = parse_report(json.dumps(data), image=IMAGE)

    assert [f.severity.value for f in result.findings] == [
        "CRITICAL",
        "HIGH",
        "MEDIUM",
        "LOW",
        "UNKNOWN",
    ]


def test_an_image_without_os_or_findings() -> None:
    report = {"SchemaVersion": 2, "ArtifactName": IMAGE, "ArtifactType": "container_image"}

    result = parse_report(json.dumps(report), image=IMAGE)

    assert result == ScanResult.model_validate({"image": {"reference": IMAGE}})


def test_digest_of_the_scanned_repository_is_preferred() -> None:
    data = recorded("standalone")
    data["Metadata"]["RepoDigests"] = [
        "mirror.example/team/app@sha256:" + "1" * 64,
        f"127.0.0.1:5501/team/app@{DIGEST}",
    ]

    assert parse_report(json.dumps(data), image=IMAGE).image.digest == DIGEST


def test_json_output_uses_ocscan_field_names() -> None:
    result = parse_report((REPORTS / "standalone.json").read_text(), image=IMAGE)

    dumped = result.model_dump(mode="json")

    assert set(dumped) == {"image", "findings"}
    assert dumped["image"] == {
        "reference": IMAGE,
        "digest": DIGEST,
        "os": {"family": "alpine", "name": "3.19.1"},
        "platform": "linux/amd64",
    }
    assert set(dumped["findings"][0]) == {
        "vulnerability_id",
        "package_name",
        "installed_version",
        "fixed_version",
        "severity",
        "title",
        "description",
        "primary_url",
        "references",
        "cvss",
        "layer_digest",
    }
    assert ScanResult.model_validate(dumped) == result


@pytest.mark.parametrize(
    ("output", "reason"),
    [
        (b"", "not JSON"),
        (b"2026-01-01T00:00:00Z\tFATAL\tsomething", "output starts '2026-01-01T00:00:00Z"),
        (b"[1, 2]", "not a Trivy report: top level: Input should be a valid dictionary"),
        (b'{"SchemaVersion": 2}', "not a Trivy report: ArtifactName: Field required"),
        (
            b'{"ArtifactName": "x", "Results": [{"Vulnerabilities": [{"PkgName": "p"}]}]}',
            "Results.0.Vulnerabilities.0.VulnerabilityID: Field required",
        ),
        (b'{"SchemaVersion": 3, "ArtifactName": "x"}', "schema version 3, expected 2"),
    ],
)
def test_unreadable_output_gives_a_clear_error(output: bytes, reason: str) -> None:
    with pytest.raises(ReportError) as caught:
        parse_report(output, image=IMAGE)

    assert isinstance(caught.value, OcscanError)
    assert str(caught.value).startswith(f"unreadable Trivy report for {IMAGE}: ")
    assert reason in str(caught.value)
