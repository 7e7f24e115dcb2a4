"""Records: one per (workload, container, package, vulnerability), with a stable identity."""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from datetime import timedelta
from typing import Any

import pytest

from ocscan.kube.workloads import WorkloadRef
from ocscan.report.records import failures, records
from ocscan.scan.report import Cvss, Severity


def test_one_record_per_finding_with_every_field(build: Any) -> None:
    finding = build.finding(
        "CVE-2024-0727",
        "openssl",
        severity=Severity.CRITICAL,
        cvss={"nvd": Cvss(v3_score=9.8)},
    )
    report = build.report(build.workload(build.container("app", [finding])))

    [record] = records(report)

    assert record.workload == WorkloadRef("shop", "Deployment", "web")
    assert (record.container, record.image) == ("app", "registry.example.com/team/app:1.0")
    assert record.digest == report.workloads[0].containers[0].digest
    assert record.os is not None and record.os.family == "alpine"
    assert (record.package_name, record.installed_version, record.fixed_version) == (
        "openssl",
        "3.1.4-r5",
        "3.1.4-r6",
    )
    assert (record.vulnerability_id, record.severity) == ("CVE-2024-0727", Severity.CRITICAL)
    assert record.title == finding.title
    assert record.description == finding.description
    assert record.primary_url == finding.primary_url
    assert record.references == finding.references
    assert record.score == 9.8


def test_fingerprint_is_sha256_of_the_identity(build: Any) -> None:
    report = build.report(build.workload(build.container("app", [build.finding()])))
    [record] = records(report)

    expected = hashlib.sha256(
        json.dumps(
            ["shop", "Deployment", "web", "app", "openssl", "CVE-2024-0727"],
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    assert record.fingerprint == expected
    parsed = uuid.UUID(record.uuid)
    assert parsed.version == 5
    assert str(parsed) == record.uuid


def test_identity_survives_a_new_cycle_image_and_versions(build: Any) -> None:
    """Fixed, then reintroduced in a rebuilt image at another version: the same finding."""
    first = build.report(
        build.workload(build.container("app", [build.finding(installed="3.1.4-r5")]))
    )
    later = build.report(
        build.workload(
            build.container(
                "app",
                [
                    build.finding(
                        installed="3.3.0-r0",
                        fixed="3.3.0-r2",
                        severity=Severity.MEDIUM,
                        title="reworded",
                    )
                ],
                image="registry.example.com/team/app:2.0",
                digest="sha256:" + "1f" * 32,
            )
        ),
        started=first.cycle.started_at + timedelta(days=30),
    )

    [before], [after] = records(first), records(later)

    assert (before.image, before.installed_version) != (after.image, after.installed_version)
    assert before.fingerprint == after.fingerprint
    assert before.uuid == after.uuid


@pytest.mark.parametrize(
    "change",
    [
        {"namespace": "billing"},
        {"kind": "StatefulSet"},
        {"name": "api"},
        {"container": "sidecar"},
        {"package": "libcrypto3"},
        {"vulnerability_id": "CVE-2023-5678"},
    ],
)
def test_each_part_of_the_identity_changes_the_fingerprint(
    build: Any, change: dict[str, str]
) -> None:
    def fingerprint(
        namespace: str = "shop",
        kind: str = "Deployment",
        name: str = "web",
        container: str = "app",
        package: str = "openssl",
        vulnerability_id: str = "CVE-2024-0727",
    ) -> str:
        finding = build.finding(vulnerability_id, package)
        workload = build.workload(
            build.container(container, [finding]), namespace=namespace, kind=kind, name=name
        )
        [record] = records(build.report(workload))
        return str(record.fingerprint)

    assert fingerprint(**change) != fingerprint()


def test_fingerprint_parts_cannot_run_into_each_other(build: Any) -> None:
    one = build.workload(build.container("app", [build.finding()]), namespace="a", name="b-c")
    other = build.workload(build.container("app", [build.finding()]), namespace="a-b", name="c")
    [first], [second] = records(build.report(one)), records(build.report(other))
    assert first.fingerprint != second.fingerprint


def test_duplicates_of_a_key_keep_the_most_severe(build: Any) -> None:
    """One package at two versions (two copies in the image), and a rollout's two digests."""
    old = build.container(
        "app",
        [build.finding(installed="1.0", severity=Severity.LOW)],
        digest="sha256:" + "0a" * 32,
    )
    new = build.container(
        "app",
        [
            build.finding(installed="1.1", severity=Severity.HIGH),
            build.finding(installed="1.2", severity=Severity.MEDIUM),
        ],
        digest="sha256:" + "0b" * 32,
    )
    report = build.report(build.workload(old, new))

    [record] = records(report)

    assert record.severity == Severity.HIGH
    assert record.installed_version == "1.1"
    assert record.digest == "sha256:" + "0b" * 32


def test_same_vulnerability_in_two_containers_is_two_records(build: Any) -> None:
    report = build.report(
        build.workload(
            build.container("app", [build.finding()]), build.container("init", [build.finding()])
        )
    )
    assert [r.container for r in records(report)] == ["app", "init"]


def test_order_is_deterministic_whatever_the_input_order(build: Any) -> None:
    severities = list(Severity)
    workloads = [
        build.workload(
            *(
                build.container(
                    container,
                    [
                        build.finding(
                            f"CVE-2024-{n:04d}", f"pkg{n % 3}", severity=severities[n % 5]
                        )
                        for n in range(12)
                    ],
                )
                for container in ("app", "metrics")
            ),
            namespace=namespace,
            name=name,
        )
        for namespace in ("shop", "billing")
        for name in ("web", "api")
    ]
    expected = records(build.report(*workloads))

    rng = random.Random(7)
    for _ in range(5):
        shuffled = []
        for workload in rng.sample(workloads, len(workloads)):
            containers = [
                c.model_copy(update={"vulnerabilities": rng.sample(c.vulnerabilities, 12)})
                for c in rng.sample(workload.containers, 2)
            ]
            shuffled.append(workload.model_copy(update={"containers": containers}))
        assert records(build.report(*shuffled)) == expected

    assert len(expected) == 2 * 2 * 2 * 12
    assert expected[0].namespace == "billing"
    first_container = [r for r in expected if r.workload == expected[0].workload][:12]
    ranks = [r.severity.rank for r in first_container]
    assert ranks == sorted(ranks)


def test_failed_containers_have_no_records_and_are_listed(build: Any) -> None:
    report = build.report(
        build.workload(build.container("app", [build.finding()]), build.failed("private")),
        build.workload(
            build.failed("job", "not_found", "MANIFEST_UNKNOWN: manifest unknown"),
            kind="CronJob",
            name="nightly",
        ),
    )

    assert [r.container for r in records(report)] == ["app"]
    listed = failures(report)
    assert [(f.workload, f.container, f.kind) for f in listed] == [
        (WorkloadRef("shop", "Deployment", "web"), "private", "auth"),
        (WorkloadRef("shop", "CronJob", "nightly"), "job", "not_found"),
    ]
    assert listed[1].message == "MANIFEST_UNKNOWN: manifest unknown"
    assert listed[0].image == "registry.example.com/team/private:2.0"


@pytest.mark.parametrize(
    ("cvss", "score"),
    [
        ({"redhat": Cvss(v3_score=7.0), "nvd": Cvss(v3_score=9.8)}, 9.8),
        ({"redhat": Cvss(v3_score=7.0), "ghsa": Cvss(v3_score=6.1)}, 6.1),
        ({"nvd": Cvss(v2_score=5.0), "redhat": Cvss(v40_score=8.7)}, 8.7),
        ({"nvd": Cvss(v2_score=5.0)}, 5.0),
        ({}, None),
    ],
)
def test_score_prefers_nvd_and_cvss_v3(
    build: Any, cvss: dict[str, Cvss], score: float | None
) -> None:
    report = build.report(build.workload(build.container("app", [build.finding(cvss=cvss)])))
    [record] = records(report)
    assert record.score == score


def test_records_are_hashable_and_compare_by_value(build: Any) -> None:
    report = build.report(build.workload(build.container("app", [build.finding()])))
    assert len({*records(report), *records(report)}) == 1
