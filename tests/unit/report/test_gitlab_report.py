"""The GitLab container-scanning report, validated against the shipped schema 15.2.1."""

from __future__ import annotations

import copy
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from jsonschema import Draft7Validator

from ocscan.report.gitlab_report import (
    SCHEMA_VERSION,
    GitLabReportError,
    gitlab_report,
    gitlab_schema,
    identifier,
    validate_gitlab_report,
)
from ocscan.report.records import records
from ocscan.scan.report import Cvss, Severity

VERSIONS = {"scanner_version": "0.76.0", "analyzer_version": "0.1.0"}
TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def valid(document: dict[str, Any]) -> dict[str, Any]:
    """``document``, after checking it with jsonschema directly and with the product check."""
    errors = list(Draft7Validator(gitlab_schema()).iter_errors(document))
    assert errors == [], [e.message for e in errors]
    validate_gitlab_report(document)
    return document


def test_the_shipped_schema_is_the_version_written() -> None:
    schema = gitlab_schema()
    assert schema["self"]["version"] == SCHEMA_VERSION == "15.2.1"
    Draft7Validator.check_schema(schema)


def test_a_clean_cluster_is_a_successful_scan_without_findings(build: Any) -> None:
    report = build.report(build.workload(build.container("app", [])))

    document = valid(gitlab_report(report, **VERSIONS))

    assert document["version"] == "15.2.1"
    assert document["vulnerabilities"] == []
    scan = document["scan"]
    assert scan["type"] == "container_scanning"
    assert scan["status"] == "success"
    assert "messages" not in scan
    assert scan["scanner"] == {
        "id": "trivy",
        "name": "Trivy",
        "url": "https://github.com/aquasecurity/trivy",
        "vendor": {"name": "Aqua Security"},
        "version": "0.76.0",
    }
    assert scan["analyzer"]["version"] == "0.1.0"
    assert scan["start_time"] == "2026-11-27T02:00:00"
    assert scan["end_time"] == "2026-11-27T02:00:42"


def test_an_empty_cycle_is_valid(build: Any) -> None:
    document = valid(gitlab_report(build.report(), **VERSIONS))
    assert document["scan"]["status"] == "success"


def test_times_are_utc_without_fraction_or_zone(build: Any) -> None:
    cest = timezone(timedelta(hours=2))
    report = build.report(started=datetime(2026, 7, 1, 23, 59, 59, 999999, tzinfo=cest))

    scan = valid(gitlab_report(report, **VERSIONS))["scan"]

    assert scan["start_time"] == "2026-07-01T21:59:59"
    assert scan["end_time"] == "2026-07-01T22:00:42"
    assert TIME.match(scan["start_time"]) and TIME.match(scan["end_time"])


def test_failed_containers_make_a_failed_scan_with_messages(build: Any) -> None:
    report = build.report(
        build.workload(build.container("app", [build.finding()]), build.failed("private")),
        build.workload(
            build.failed("job", "not_found", "MANIFEST_UNKNOWN: manifest unknown"),
            namespace="batch",
            kind="CronJob",
            name="nightly",
        ),
    )

    document = valid(gitlab_report(report, **VERSIONS))

    assert document["scan"]["status"] == "failure"
    messages = document["scan"]["messages"]
    assert [m["level"] for m in messages] == ["warn", "warn"]
    assert messages[0]["value"] == (
        "shop/Deployment/web container private (registry.example.com/team/private:2.0) "
        "not scanned, auth: registry.example.com refused the credentials of team/pull"
    )
    assert "batch/CronJob/nightly container job" in messages[1]["value"]
    assert "MANIFEST_UNKNOWN" in messages[1]["value"]
    # The scanned container's findings are delivered all the same.
    assert len(document["vulnerabilities"]) == 1


def test_many_findings_validate_with_stable_unique_ids(build: Any) -> None:
    severities = list(Severity)
    workloads = [
        build.workload(
            *(
                build.container(
                    container,
                    [
                        build.finding(
                            f"CVE-2024-{n:05d}",
                            f"pkg-{n % 7}",
                            severity=severities[n % 5],
                            fixed=None if n % 4 == 0 else "9.9",
                            cvss={"nvd": Cvss(v3_vector=NVD_V3, v3_score=9.8)} if n % 2 else {},
                        )
                        for n in range(60)
                    ],
                )
                for container in ("app", "sidecar")
            ),
            namespace=namespace,
            name=f"web-{namespace}",
        )
        for namespace in ("shop", "billing", "ops")
    ]
    report = build.report(*workloads)

    document = valid(gitlab_report(report, **VERSIONS))
    again = gitlab_report(report, **VERSIONS)

    vulnerabilities = document["vulnerabilities"]
    assert len(vulnerabilities) == 3 * 2 * 60
    ids = [v["id"] for v in vulnerabilities]
    assert len(set(ids)) == len(ids)
    assert ids == [r.uuid for r in records(report)]
    assert ids == [v["id"] for v in again["vulnerabilities"]]
    assert all(uuid.UUID(i).version == 5 for i in ids)
    counted = {s: 0 for s in ("Critical", "High", "Medium", "Low", "Unknown")}
    for v in vulnerabilities:
        counted[v["severity"]] += 1
    assert counted == dict.fromkeys(counted, 3 * 2 * 12)


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.CRITICAL, "Critical"),
        (Severity.HIGH, "High"),
        (Severity.MEDIUM, "Medium"),
        (Severity.LOW, "Low"),
        (Severity.UNKNOWN, "Unknown"),
    ],
)
def test_severities_map_to_gitlab_names(build: Any, severity: Severity, expected: str) -> None:
    report = build.report(
        build.workload(build.container("app", [build.finding(severity=severity)]))
    )
    [entry] = valid(gitlab_report(report, **VERSIONS))["vulnerabilities"]
    assert entry["severity"] == expected


def test_an_entry_carries_location_resource_links_and_solution(build: Any) -> None:
    finding = build.finding(
        "CVE-2024-0727",
        "openssl",
        references=(
            "https://avd.aquasec.com/nvd/cve-2024-0727",  # the primary URL again
            "https://www.openssl.org/news/secadv/20240125.txt",
            "not a url",
        ),
    )
    report = build.report(
        build.workload(build.container("app", [finding]), namespace="shop", name="web")
    )

    [entry] = valid(gitlab_report(report, **VERSIONS))["vulnerabilities"]

    assert entry["name"] == "openssl: flaw tracked as CVE-2024-0727"
    assert entry["description"] == "A flaw in openssl lets an attacker do harm."
    assert entry["solution"] == "Upgrade openssl from 3.1.4-r5 to 3.1.4-r6"
    assert entry["identifiers"] == [
        {
            "type": "cve",
            "name": "CVE-2024-0727",
            "value": "CVE-2024-0727",
            "url": "https://avd.aquasec.com/nvd/cve-2024-0727",
        }
    ]
    assert entry["links"] == [
        {"url": "https://avd.aquasec.com/nvd/cve-2024-0727"},
        {"url": "https://www.openssl.org/news/secadv/20240125.txt"},
    ]
    assert entry["location"] == {
        "dependency": {"package": {"name": "openssl"}, "version": "3.1.4-r5"},
        "operating_system": "alpine 3.19.1",
        "image": "registry.example.com/team/app:1.0",
    }
    resource = entry["details"]["kubernetes_resource"]
    assert resource["type"] == "named-list"
    assert {key: item["value"] for key, item in resource["items"].items()} == {
        "namespace": "shop",
        "kind": "Deployment",
        "name": "web",
        "container_name": "app",
    }
    assert entry["details"]["image_digest"]["value"].startswith("sha256:")
    assert "image_platform" not in entry["details"]  # the scanner's default: not known here


def test_an_entry_says_which_platform_was_scanned(build: Any) -> None:
    finding = build.finding("CVE-2025-26519", "musl")
    container = build.container("app", [finding], platform="linux/arm64")
    report = build.report(build.workload(container))

    [entry] = valid(gitlab_report(report, **VERSIONS))["vulnerabilities"]

    platform = entry["details"]["image_platform"]
    assert platform == {"name": "Image platform", "type": "text", "value": "linux/arm64"}


def test_sparse_findings_still_validate(build: Any) -> None:
    """No title, description, URL, fix, OS or digest: every required field is still there."""
    finding = build.finding(
        "TEMP-0841856-B18BAF",
        "libc6",
        fixed=None,
        title=None,
        description=None,
        primary_url=None,
        references=(),
    )
    container = build.container("app", [finding], os=None, digest=None)
    report = build.report(build.workload(container))

    [entry] = valid(gitlab_report(report, **VERSIONS))["vulnerabilities"]

    assert entry["name"] == "TEMP-0841856-B18BAF in libc6"
    assert entry["location"]["operating_system"] == "Unknown"
    assert entry["identifiers"] == [
        {"type": "temp", "name": "TEMP-0841856-B18BAF", "value": "TEMP-0841856-B18BAF"}
    ]
    for absent in ("description", "solution", "links", "cvss_vectors"):
        assert absent not in entry
    assert set(entry["details"]) == {"kubernetes_resource"}


@pytest.mark.parametrize(
    ("vulnerability_id", "primary_url", "expected"),
    [
        ("CVE-2024-0727", None, ("cve", "https://nvd.nist.gov/vuln/detail/CVE-2024-0727")),
        (
            "GHSA-jfh8-c2jp-5v3q",
            None,
            ("ghsa", "https://github.com/advisories/GHSA-jfh8-c2jp-5v3q"),
        ),
        ("ALAS2-2023-2345", "https://alas.aws.amazon.com/AL2/ALAS-2023-2345.html", ("alas2", None)),
        ("GO-2024-2687", "https://pkg.go.dev/vuln/GO-2024-2687", ("go", None)),
        ("DLA-3682-1", "file:///etc/passwd", ("dla", "")),
        ("NSWG-ECO-428", None, ("nswg", "")),
        ("RHSA2024", None, ("trivy", "")),
    ],
)
def test_identifier_type_and_url(
    vulnerability_id: str, primary_url: str | None, expected: tuple[str, str | None]
) -> None:
    kind, url = expected
    entry = identifier(vulnerability_id, primary_url)
    assert entry["type"] == kind
    assert (entry["name"], entry["value"]) == (vulnerability_id, vulnerability_id)
    if url is None:  # the primary URL is the link
        assert entry["url"] == primary_url
    elif url:
        assert entry["url"] == url
    else:  # no usable URL
        assert "url" not in entry


def test_cvss_vectors_nvd_first_and_only_what_the_schema_accepts(build: Any) -> None:
    cvss = {
        "redhat": Cvss(v3_vector="CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", v3_score=5.9),
        "nvd": Cvss(v3_vector=NVD_V3, v2_vector="AV:N/AC:L/Au:N/C:P/I:P/A:P"),
        "ghsa": Cvss(
            v40_vector="CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            v3_vector="not a vector",
        ),
    }
    report = build.report(build.workload(build.container("app", [build.finding(cvss=cvss)])))

    [entry] = valid(gitlab_report(report, **VERSIONS))["vulnerabilities"]

    assert entry["cvss_vectors"] == [
        {"vendor": "nvd", "vector": NVD_V3},
        {"vendor": "nvd", "vector": "AV:N/AC:L/Au:N/C:P/I:P/A:P"},
        {"vendor": "redhat", "vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N"},
    ]


def test_overlong_texts_are_shortened_to_the_schema_limits(build: Any) -> None:
    finding = build.finding(title="t" * 400, description="d" * 1_100_000)
    report = build.report(build.workload(build.container("app", [finding])))

    [entry] = valid(gitlab_report(report, **VERSIONS))["vulnerabilities"]

    assert len(entry["name"]) == 255 and entry["name"].endswith("…")
    assert len(entry["description"]) == 1_048_576


def test_validation_names_where_a_document_is_wrong(build: Any) -> None:
    report = build.report(build.workload(build.container("app", [build.finding()])))
    good = gitlab_report(report, **VERSIONS)

    broken = copy.deepcopy(good)
    broken["scan"]["start_time"] = "2026-11-27T02:00:00.123Z"
    del broken["vulnerabilities"][0]["identifiers"]
    with pytest.raises(GitLabReportError) as caught:
        validate_gitlab_report(broken)

    message = str(caught.value)
    assert "$.scan.start_time" in message
    assert "$.vulnerabilities[0]" in message and "'identifiers' is a required property" in message
    assert len(caught.value.problems) == 2

    no_status = copy.deepcopy(good)
    no_status["scan"]["status"] = "partial"
    with pytest.raises(GitLabReportError, match=r"\$\.scan\.status"):
        validate_gitlab_report(no_status)


def test_each_entrys_details_are_validated(build: Any) -> None:
    """Details repeat per container and are checked once per distinct value: none is skipped."""
    findings = [build.finding(f"CVE-2024-{n:04d}") for n in range(4)]
    report = build.report(
        build.workload(build.container("app", findings), build.container("sidecar", findings))
    )
    document = valid(gitlab_report(report, **VERSIONS))

    broken = copy.deepcopy(document)
    resource = broken["vulnerabilities"][6]["details"]["kubernetes_resource"]
    resource["items"]["namespace"]["type"] = "texte"
    assert not Draft7Validator(gitlab_schema()).is_valid(broken)
    with pytest.raises(GitLabReportError) as caught:
        validate_gitlab_report(broken)
    assert caught.value.problems[0].startswith("$.vulnerabilities[6].details.kubernetes_resource")

    not_text = copy.deepcopy(document)
    not_text["vulnerabilities"][3]["details"]["image_digest"]["value"] = 42
    with pytest.raises(GitLabReportError, match=r"\$\.vulnerabilities\[3\]\.details\.image_digest"):
        validate_gitlab_report(not_text)


NVD_V3 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
