"""Trivy's JSON report (schema version 2), parsed into ocscan's own typed result.

Trivy's field names and nesting stay in this module: the rest of ocscan sees
:class:`ScanResult`. Fields Trivy adds in later versions are ignored.
"""

from __future__ import annotations

import json
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ocscan.errors import OcscanError

SCHEMA_VERSION = 2


class ReportError(OcscanError):
    """Trivy's output for an image is not a report ocscan can read."""

    def __init__(self, image: str, reason: str) -> None:
        self.image = image
        self.reason = reason
        super().__init__(f"unreadable Trivy report for {image}: {reason}")


class Severity(StrEnum):
    """Trivy's severities; :attr:`rank` orders them, most severe first."""

    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"
    UNKNOWN = "UNKNOWN"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Cvss(BaseModel):
    """One source's CVSS vectors and scores."""

    model_config = ConfigDict(frozen=True)

    v2_vector: str | None = None
    v2_score: float | None = None
    v3_vector: str | None = None
    v3_score: float | None = None
    v40_vector: str | None = None
    v40_score: float | None = None


class Finding(BaseModel):
    """One vulnerability of one installed package."""

    model_config = ConfigDict(frozen=True)

    vulnerability_id: str
    package_name: str
    installed_version: str
    fixed_version: str | None = None
    severity: Severity
    title: str | None = None
    description: str | None = None
    primary_url: str | None = None
    references: tuple[str, ...] = ()
    cvss: dict[str, Cvss] = Field(default_factory=dict)
    """CVSS data keyed by source (``nvd``, ``redhat``, ...)."""
    layer_digest: str | None = None


class OperatingSystem(BaseModel):
    model_config = ConfigDict(frozen=True)

    family: str
    name: str


class ImageInfo(BaseModel):
    """The scanned image: the reference asked for, the manifest digest found, its OS, and
    the platform its config says (``linux/arm64``)."""

    model_config = ConfigDict(frozen=True)

    reference: str
    digest: str | None = None
    os: OperatingSystem | None = None
    platform: str | None = None


class ScanResult(BaseModel):
    """The outcome of one completed scan; findings sorted most severe first."""

    model_config = ConfigDict(frozen=True)

    image: ImageInfo
    findings: tuple[Finding, ...] = ()


def parse_report(output: bytes | str, *, image: str) -> ScanResult:
    """Parse Trivy's ``--format json`` output of a scan of ``image``."""
    try:
        data = json.loads(output)
    except ValueError as exc:
        raise ReportError(image, f"not JSON ({exc}); output starts {_start(output)!r}") from None
    try:
        report = _Report.model_validate(data)
    except ValidationError as exc:
        raise ReportError(image, f"not a Trivy report: {_first_error(exc)}") from None
    if report.schema_version not in (None, SCHEMA_VERSION):
        raise ReportError(
            image, f"schema version {report.schema_version}, expected {SCHEMA_VERSION}"
        )
    return report.to_result(image)


def _start(output: bytes | str) -> str:
    text = output.decode(errors="replace") if isinstance(output, bytes) else output
    return text.strip()[:60]


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"]) or "top level"
    return f"{where}: {error['msg']}"


# Trivy's JSON, as far as ocscan reads it. Go omits empty fields, hence the defaults.


class _TrivyModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Cvss(_TrivyModel):
    v2_vector: str | None = Field(None, alias="V2Vector")
    v2_score: float | None = Field(None, alias="V2Score")
    v3_vector: str | None = Field(None, alias="V3Vector")
    v3_score: float | None = Field(None, alias="V3Score")
    v40_vector: str | None = Field(None, alias="V40Vector")
    v40_score: float | None = Field(None, alias="V40Score")


class _Layer(_TrivyModel):
    digest: str | None = Field(None, alias="Digest")


class _Vulnerability(_TrivyModel):
    vulnerability_id: str = Field(alias="VulnerabilityID")
    package_name: str = Field(alias="PkgName")
    installed_version: str = Field("", alias="InstalledVersion")
    fixed_version: str | None = Field(None, alias="FixedVersion")
    severity: Severity = Field(Severity.UNKNOWN, alias="Severity")
    title: str | None = Field(None, alias="Title")
    description: str | None = Field(None, alias="Description")
    primary_url: str | None = Field(None, alias="PrimaryURL")
    references: list[str] | None = Field(None, alias="References")
    cvss: dict[str, _Cvss] | None = Field(None, alias="CVSS")
    layer: _Layer | None = Field(None, alias="Layer")

    @field_validator("severity", mode="before")
    @classmethod
    def _known_severity(cls, value: object) -> object:
        # A severity Trivy adds later must not make the whole report unreadable.
        return value if value in Severity.__members__ else Severity.UNKNOWN

    def to_finding(self) -> Finding:
        return Finding(
            vulnerability_id=self.vulnerability_id,
            package_name=self.package_name,
            installed_version=self.installed_version,
            fixed_version=self.fixed_version or None,
            severity=self.severity,
            title=self.title or None,
            description=self.description or None,
            primary_url=self.primary_url or None,
            references=tuple(self.references or ()),
            cvss={
                source: Cvss.model_validate(c.model_dump())
                for source, c in (self.cvss or {}).items()
            },
            layer_digest=self.layer.digest if self.layer and self.layer.digest else None,
        )


class _Result(_TrivyModel):
    vulnerabilities: list[_Vulnerability] | None = Field(None, alias="Vulnerabilities")


class _OS(_TrivyModel):
    family: str = Field(alias="Family")
    name: str = Field("", alias="Name")


class _ImageConfig(_TrivyModel):
    os: str = ""
    architecture: str = ""
    variant: str = ""

    @property
    def platform(self) -> str | None:
        parts = [self.os, self.architecture, self.variant]
        return "/".join(part for part in parts if part) if self.os and self.architecture else None


class _Metadata(_TrivyModel):
    os: _OS | None = Field(None, alias="OS")
    repo_digests: list[str] | None = Field(None, alias="RepoDigests")
    image_config: _ImageConfig = Field(default_factory=_ImageConfig, alias="ImageConfig")


class _Report(_TrivyModel):
    schema_version: int | None = Field(None, alias="SchemaVersion")
    artifact_name: str = Field(alias="ArtifactName")
    metadata: _Metadata = Field(default_factory=_Metadata, alias="Metadata")
    results: list[_Result] | None = Field(None, alias="Results")

    def to_result(self, image: str) -> ScanResult:
        os = self.metadata.os
        findings = [v.to_finding() for r in self.results or () for v in r.vulnerabilities or ()]
        findings.sort(
            key=lambda f: (f.severity.rank, f.vulnerability_id, f.package_name, f.installed_version)
        )
        return ScanResult(
            image=ImageInfo(
                reference=image,
                digest=_manifest_digest(self.metadata.repo_digests or [], image),
                os=OperatingSystem(family=os.family, name=os.name) if os else None,
                platform=self.metadata.image_config.platform,
            ),
            findings=tuple(findings),
        )


def _manifest_digest(repo_digests: list[str], image: str) -> str | None:
    """The digest of the manifest Trivy scanned, from ``repo@sha256:...`` entries."""
    repository = image.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    digests = [entry.rsplit("@", 1) for entry in repo_digests if "@" in entry]
    for repo, digest in digests:
        if repo == repository:
            return digest
    return digests[0][1] if digests else None
