"""A Trivy vulnerability DB (trivy-db schema 2) built from a list of advisories.

Trivy cannot download its DB here, so the sandbox writes one: ``<cache>/db/trivy.db`` (bbolt)
and ``<cache>/db/metadata.json``. Buckets, as Trivy reads them:

- ``"alpine 3.19"`` -> one bucket per *source* package (apk origin) -> vulnerability id ->
  ``{"FixedVersion": ...}`` (empty when no fix exists);
- ``"data-source"`` -> ``"alpine 3.19"`` -> ``{"ID", "Name", "URL"}``;
- ``"vulnerability"`` -> vulnerability id -> details (title, severity, references, ...).

:data:`SAMPLE_ADVISORIES` and :data:`SAMPLE_IMAGES` go together: each sample image lists its
packages and, written out by hand, the findings Trivy must report for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from ocscan.sandbox.bbolt import Bucket, write_bbolt
from ocscan.sandbox.oci import ApkPackage

SCHEMA_VERSION = 2
Severity = Literal["UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
_SEVERITY_NUMBER = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
_OS_PATTERN = re.compile(r"^[a-z][a-z-]* \d+(\.\d+)?$")
_DATA_SOURCES = {
    "alpine": {"ID": "alpine", "Name": "Alpine Secdb", "URL": "https://secdb.alpinelinux.org/"},
}
_PUBLISHED = "2024-01-01T00:00:00Z"


class Advisory(BaseModel):
    """One vulnerability of one source package in one OS release."""

    model_config = ConfigDict(frozen=True)

    os: str = "alpine 3.19"
    """OS family and major.minor release, as Trivy names the bucket: ``alpine 3.19``."""
    package: str
    """The *source* package (apk origin): ``openssl`` covers ``libcrypto3`` and ``libssl3``."""
    id: str
    fixed_version: str = ""
    """The first fixed version; empty when there is no fix yet."""
    severity: Severity = "MEDIUM"
    title: str | None = None
    description: str | None = None

    @field_validator("os")
    @classmethod
    def _os_format(cls, value: str) -> str:
        if not _OS_PATTERN.match(value):
            raise ValueError(f"{value!r} is not 'family major.minor' (e.g. 'alpine 3.19')")
        return value

    @property
    def family(self) -> str:
        return self.os.split(" ", 1)[0]

    def details(self) -> dict[str, Any]:
        """The ``vulnerability`` bucket entry."""
        details: dict[str, Any] = {
            "Severity": self.severity,
            "VendorSeverity": {"nvd": _SEVERITY_NUMBER[self.severity]},
            "References": [f"https://nvd.nist.gov/vuln/detail/{self.id}"],
            "PublishedDate": _PUBLISHED,
            "LastModifiedDate": _PUBLISHED,
        }
        if self.title is not None:
            details["Title"] = self.title
        if self.description is not None:
            details["Description"] = self.description
        return details


def _json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def trivy_db_bucket(advisories: Sequence[Advisory]) -> Bucket:
    """The root bucket of a Trivy DB holding ``advisories``."""
    root = Bucket()
    data_sources = root.bucket(b"data-source")
    vulnerabilities = root.bucket(b"vulnerability")  # Trivy reads it without a nil check
    seen: dict[tuple[str, str, str], Advisory] = {}
    for advisory in advisories:
        key = (advisory.os, advisory.package, advisory.id)
        if key in seen and seen[key] != advisory:
            raise ValueError(f"conflicting advisories for {advisory.id} in {advisory.os}")
        seen[key] = advisory
        os_bucket = root.bucket(advisory.os.encode())
        os_bucket.bucket(advisory.package.encode()).put(
            advisory.id.encode(), _json({"FixedVersion": advisory.fixed_version})
        )
        source = _DATA_SOURCES.get(advisory.family) or {
            "ID": advisory.family,
            "Name": f"{advisory.family} (ocscan sandbox)",
            "URL": "https://example.invalid/",
        }
        data_sources.put(advisory.os.encode(), _json(source))
        vulnerabilities.put(advisory.id.encode(), _json(advisory.details()))
    return root


def _go_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_trivy_db(cache_dir: Path, advisories: Sequence[Advisory]) -> None:
    """Write a Trivy DB with ``advisories`` into ``cache_dir`` (``trivy --cache-dir``)."""
    db_dir = cache_dir / "db"
    write_bbolt(db_dir / "trivy.db", trivy_db_bucket(advisories))
    now = datetime.now(UTC)
    metadata = {
        "Version": SCHEMA_VERSION,
        "NextUpdate": _go_time(now + timedelta(days=1)),
        "UpdatedAt": _go_time(now),
        "DownloadedAt": _go_time(now),
    }
    (db_dir / "metadata.json").write_text(json.dumps(metadata) + "\n")


@dataclass(frozen=True)
class SampleImageSpec:
    """A sample image: its repository name, packages, and the findings Trivy must report."""

    repository: str
    packages: tuple[ApkPackage, ...]
    expected_findings: frozenset[tuple[str, str]]
    """``(installed package name, vulnerability id)`` pairs."""

    @property
    def expected_ids(self) -> frozenset[str]:
        return frozenset(vulnerability for _, vulnerability in self.expected_findings)


SAMPLE_OS = "alpine 3.19"
SAMPLE_ALPINE_VERSION = "3.19.1"

SAMPLE_ADVISORIES: tuple[Advisory, ...] = (
    Advisory(package="openssl", id="CVE-2024-0727", fixed_version="3.1.4-r5", severity="MEDIUM",
             title="openssl: denial of service via null dereference in PKCS12"),
    Advisory(package="openssl", id="CVE-2024-2511", fixed_version="3.1.4-r6", severity="LOW",
             title="openssl: unbounded memory growth with session handling in TLSv1.3"),
    # Fixed in exactly the installed version: must NOT be reported.
    Advisory(package="openssl", id="CVE-2023-5678", fixed_version="3.1.4-r1", severity="MEDIUM",
             title="openssl: excessive time spent in DH check / generation"),
    Advisory(package="busybox", id="CVE-2023-42363", fixed_version="1.36.1-r16", severity="MEDIUM",
             title="busybox: use-after-free in awk"),
    Advisory(package="musl", id="CVE-2025-26519", fixed_version="1.2.4_git20230717-r5",
             severity="HIGH", title="musl: out-of-bounds write in iconv EUC-KR decoder",
             description="musl libc iconv may write past the end of its output buffer."),
    # No fix yet: reported with an empty fixed version.
    Advisory(package="zlib", id="CVE-2023-45853", severity="CRITICAL",
             title="zlib: integer overflow in zipOpenNewFileInZip4_6"),
    # Fixed long before the installed zlib 1.3.1: must NOT be reported.
    Advisory(package="zlib", id="CVE-2022-37434", fixed_version="1.2.12-r2", severity="CRITICAL",
             title="zlib: heap-based buffer over-read in inflate"),
    # A package no sample image installs.
    Advisory(package="libxml2", id="CVE-2024-25062", fixed_version="2.11.7-r0", severity="HIGH",
             title="libxml2: use-after-free in XMLReader"),
    # Another release: must NOT apply to alpine 3.19 images.
    Advisory(os="alpine 3.18", package="musl", id="CVE-2018-99999", fixed_version="9.9.9-r0",
             severity="CRITICAL", title="musl: sample advisory of another release"),
)  # fmt: skip


def _pkg(name: str, version: str, origin: str | None = None) -> ApkPackage:
    return ApkPackage(name=name, version=version, origin=origin)


SAMPLE_APP = SampleImageSpec(
    repository="team/app",
    packages=(
        _pkg("alpine-baselayout", "3.4.3-r2"),
        _pkg("apk-tools", "2.14.0-r5"),
        _pkg("busybox", "1.36.1-r15"),
        _pkg("busybox-binsh", "1.36.1-r15", "busybox"),
        _pkg("ca-certificates-bundle", "20230506-r0", "ca-certificates"),
        _pkg("libcrypto3", "3.1.4-r1", "openssl"),
        _pkg("libssl3", "3.1.4-r1", "openssl"),
        _pkg("musl", "1.2.4_git20230717-r4"),
        _pkg("musl-utils", "1.2.4_git20230717-r4", "musl"),
        _pkg("ssl_client", "1.36.1-r15", "busybox"),
        _pkg("zlib", "1.3.1-r0"),
    ),
    expected_findings=frozenset(
        {
            ("libcrypto3", "CVE-2024-0727"),
            ("libssl3", "CVE-2024-0727"),
            ("libcrypto3", "CVE-2024-2511"),
            ("libssl3", "CVE-2024-2511"),
            ("busybox", "CVE-2023-42363"),
            ("busybox-binsh", "CVE-2023-42363"),
            ("ssl_client", "CVE-2023-42363"),
            ("musl", "CVE-2025-26519"),
            ("musl-utils", "CVE-2025-26519"),
            ("zlib", "CVE-2023-45853"),
        }
    ),
)
"""Vulnerable in every severity, fixed and unfixed."""

SAMPLE_MINIMAL = SampleImageSpec(
    repository="team/minimal",
    packages=(_pkg("musl", "1.2.4_git20230717-r4"), _pkg("busybox", "1.36.1-r16")),
    expected_findings=frozenset({("musl", "CVE-2025-26519")}),
)
"""One HIGH finding; busybox is already at the fixed version."""

SAMPLE_CLEAN = SampleImageSpec(
    repository="team/clean",
    packages=(
        _pkg("alpine-baselayout", "3.4.3-r2"),
        _pkg("libcrypto3", "3.1.4-r6", "openssl"),
        _pkg("musl", "1.2.4_git20230717-r5"),
    ),
    expected_findings=frozenset(),
)
"""Every package at or past its fixed version: no findings."""

SAMPLE_IMAGES: tuple[SampleImageSpec, ...] = (SAMPLE_APP, SAMPLE_MINIMAL, SAMPLE_CLEAN)
