"""A cycle as a GitLab container-scanning security report (schema 15.2.1). Pure.

A CI job that writes this document and declares it as ``artifacts: reports:
container_scanning`` brings the findings into GitLab's vulnerability report, on any GitLab.

Schema 15.2.1 has no place for a Kubernetes resource in ``location`` (that was the cluster
image scanning format), so the namespace, workload and container of a finding go into its
``details`` as a named list, which GitLab shows on the vulnerability page. GitLab identifies a
container-scanning finding by its primary identifier, the image name without a version-like
tag and the package name, so one image run by several workloads yields one GitLab
vulnerability per CVE and package; each entry of this report still names its workload.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator

from ocscan.errors import OcscanError
from ocscan.report.model import CycleReport
from ocscan.report.records import VulnerabilityRecord, failures, records
from ocscan.scan.report import Severity

SCHEMA_VERSION = "15.2.1"
SCHEMA_URL = (
    "https://gitlab.com/gitlab-org/security-products/security-report-schemas/-/raw/"
    f"v{SCHEMA_VERSION}/dist/container-scanning-report-format.json"
)
_SCHEMA_RESOURCE = f"schemas/container-scanning-report-format-{SCHEMA_VERSION}.json"

SEVERITIES = {
    Severity.CRITICAL: "Critical",
    Severity.HIGH: "High",
    Severity.MEDIUM: "Medium",
    Severity.LOW: "Low",
    Severity.UNKNOWN: "Unknown",
}

# Where an identifier type has a canonical page, for ids Trivy gives no primary URL for.
_IDENTIFIER_URLS = {
    "cve": "https://nvd.nist.gov/vuln/detail/{id}",
    "ghsa": "https://github.com/advisories/{id}",
}
_URL = re.compile(r"^(https?|ftp)://.+")  # the schema's pattern for identifier and link URLs
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
_NAME_LIMIT = 255
_SOLUTION_LIMIT = 7000
_DESCRIPTION_LIMIT = 1_048_576
_CVSS_VECTOR_LIMIT = 10
_ERRORS_SHOWN = 5


class GitLabReportError(OcscanError):
    """A document is not a valid GitLab container-scanning report."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"not a valid GitLab container-scanning report (schema {SCHEMA_VERSION}): "
            + "; ".join(problems)
        )


@cache
def gitlab_schema() -> dict[str, Any]:
    """The container-scanning report schema this module writes, as shipped with ocscan."""
    text = resources.files("ocscan.report").joinpath(_SCHEMA_RESOURCE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _validator() -> Draft7Validator:
    return Draft7Validator(gitlab_schema())


@cache
def _details_validator() -> Draft7Validator:
    schema = gitlab_schema()
    details = schema["properties"]["vulnerabilities"]["items"]["properties"]["details"]
    return Draft7Validator({**details, "definitions": schema["definitions"]})


@cache
def _cvss_vector_validator() -> Draft7Validator:
    vulnerability = gitlab_schema()["properties"]["vulnerabilities"]["items"]
    return Draft7Validator(vulnerability["properties"]["cvss_vectors"]["items"])


def validate_gitlab_report(document: dict[str, Any]) -> None:
    """Raise :class:`GitLabReportError` naming where ``document`` breaks the schema."""
    # Matching ``details`` against the schema's many detail types is by far the slowest part,
    # and every finding of one container carries the same details: check each distinct one
    # once, the rest of the document as a whole.
    entries = document.get("vulnerabilities")
    details: dict[str, tuple[int, Any]] = {}
    if isinstance(entries, list):
        stripped = []
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and "details" in entry:
                key = json.dumps(entry["details"], sort_keys=True)
                details.setdefault(key, (index, entry["details"]))
                entry = {k: v for k, v in entry.items() if k != "details"}
            stripped.append(entry)
        document = {**document, "vulnerabilities": stripped}
    problems = [
        f"{e.json_path}: {shorten(e.message, 200)}" for e in _validator().iter_errors(document)
    ]
    for index, value in details.values():
        problems.extend(
            f"$.vulnerabilities[{index}].details{e.json_path[1:]}: {shorten(e.message, 200)}"
            for e in _details_validator().iter_errors(value)
        )
    if problems:
        shown = problems[:_ERRORS_SHOWN]
        if len(problems) > _ERRORS_SHOWN:
            shown.append(f"and {len(problems) - _ERRORS_SHOWN} more")
        raise GitLabReportError(shown)


def gitlab_report(
    report: CycleReport, *, scanner_version: str, analyzer_version: str
) -> dict[str, Any]:
    """The security report of ``report``: every finding, and a message per failed container.

    ``scan.status`` is ``success`` only when every targeted namespace was fully scanned.
    """
    cycle = report.cycle
    messages = [
        {
            "level": "warn",
            "value": f"{f.namespace}/{f.workload_kind}/{f.workload_name} container "
            f"{f.container} ({f.image}) not scanned, {f.kind}: {f.message}",
        }
        for f in failures(report)
    ]
    scan: dict[str, Any] = {
        "type": "container_scanning",
        "analyzer": {
            "id": "ocscan",
            "name": "ocscan",
            "vendor": {"name": "ocscan"},
            "version": analyzer_version,
        },
        "scanner": {
            "id": "trivy",
            "name": "Trivy",
            "url": "https://github.com/aquasecurity/trivy",
            "vendor": {"name": "Aqua Security"},
            "version": scanner_version,
        },
        "start_time": _timestamp(cycle.started_at),
        "end_time": _timestamp(cycle.finished_at),
        "status": "success" if cycle.complete else "failure",
    }
    if messages:
        scan["messages"] = messages
    return {
        "version": SCHEMA_VERSION,
        "schema": SCHEMA_URL,
        "scan": scan,
        "vulnerabilities": [vulnerability(record) for record in records(report)],
    }


def vulnerability(record: VulnerabilityRecord) -> dict[str, Any]:
    """One finding as a report entry; its ``id`` is the record's stable UUID."""
    entry: dict[str, Any] = {
        "id": record.uuid,
        "name": shorten(record.title or f"{record.vulnerability_id} in {record.package_name}"),
        "severity": SEVERITIES[record.severity],
        "identifiers": [identifier(record.vulnerability_id, record.primary_url)],
        "location": {
            "dependency": {
                "package": {"name": record.package_name},
                "version": record.installed_version,
            },
            "operating_system": f"{record.os.family} {record.os.name}".strip()
            if record.os
            else "Unknown",
            "image": record.image,
        },
        "details": _details(record),
    }
    if record.description:
        entry["description"] = shorten(record.description, _DESCRIPTION_LIMIT)
    if record.fixed_version:
        entry["solution"] = shorten(
            f"Upgrade {record.package_name} from {record.installed_version} "
            f"to {record.fixed_version}",
            _SOLUTION_LIMIT,
        )
    links = _links(record)
    if links:
        entry["links"] = links
    vectors = _cvss_vectors(record)
    if vectors:
        entry["cvss_vectors"] = vectors
    return entry


def identifier(vulnerability_id: str, primary_url: str | None = None) -> dict[str, str]:
    """The identifier of a vulnerability id, typed by the id's prefix, lower-cased.

    ``CVE-2024-0727`` is a ``cve``, ``GHSA-...`` a ``ghsa``, ``ALAS2-2023-2345`` an ``alas2``;
    an id without a dash is a ``trivy`` one. The URL is Trivy's primary URL when it is one,
    else the canonical page of CVE and GHSA ids.
    """
    prefix = vulnerability_id.split("-", 1)[0].lower()
    kind = prefix if prefix and prefix != vulnerability_id.lower() else "trivy"
    entry = {"type": kind, "name": vulnerability_id, "value": vulnerability_id}
    url = primary_url if primary_url and _is_url(primary_url) else None
    if url is None and kind in _IDENTIFIER_URLS:
        url = _IDENTIFIER_URLS[kind].format(id=vulnerability_id)
    if url:
        entry["url"] = url
    return entry


def _details(record: VulnerabilityRecord) -> dict[str, Any]:
    def text(name: str, value: str) -> dict[str, str]:
        return {"name": name, "type": "text", "value": value}

    resource = {
        "namespace": text("Namespace", record.namespace),
        "kind": text("Kind", record.workload_kind),
        "name": text("Name", record.workload_name),
        "container_name": text("Container", record.container),
    }
    details: dict[str, Any] = {
        "kubernetes_resource": {
            "name": "Kubernetes resource",
            "type": "named-list",
            "items": resource,
        }
    }
    if record.digest:
        details["image_digest"] = text("Image digest", record.digest)
    if record.platform:
        details["image_platform"] = text("Image platform", record.platform)
    return details


def _links(record: VulnerabilityRecord) -> list[dict[str, str]]:
    urls = [record.primary_url, *record.references]
    unique = dict.fromkeys(u for u in urls if u and _is_url(u))
    return [{"url": url} for url in unique]


def _cvss_vectors(record: VulnerabilityRecord) -> list[dict[str, str]]:
    """The vectors the schema accepts (v2, v3.x), NVD's first; v4 has no place in 15.2.1."""
    validator = _cvss_vector_validator()
    vectors: list[dict[str, str]] = []
    for source, cvss in sorted(record.cvss.items(), key=lambda i: (i[0] != "nvd", i[0])):
        for vector in (cvss.v3_vector, cvss.v2_vector):
            if vector and validator.is_valid(item := {"vendor": source, "vector": vector}):
                vectors.append(item)
    return vectors[:_CVSS_VECTOR_LIMIT]


def _is_url(text: str) -> bool:
    return _URL.match(text) is not None


def shorten(text: str, limit: int = _NAME_LIMIT) -> str:
    """``text`` within ``limit`` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _timestamp(moment: datetime) -> str:
    """UTC, seconds precision, no zone: the only form the schema accepts."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(_TIME_FORMAT)
