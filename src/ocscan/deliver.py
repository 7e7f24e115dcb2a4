"""Delivering a cycle's report to every configured sink; one failing sink never stops the others."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from lightkube import AsyncClient

from ocscan import __version__
from ocscan.config import Config, ConfigError, SinksConfig
from ocscan.errors import OcscanError
from ocscan.kube.vulnerabilityreports import write_reports
from ocscan.registry.reference import parse_reference
from ocscan.report.gitlab_api import (
    GitLabAgentSink,
    GitLabConfigError,
    read_agent_token,
    read_kas_secret,
)
from ocscan.report.gitlab_report import gitlab_report, validate_gitlab_report
from ocscan.report.model import CycleReport
from ocscan.report.vulnerabilityreport import VulnerabilityReportError, workload_reports

log = logging.getLogger(__name__)

Sink = Callable[[CycleReport], Awaitable[None]]


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step, so readers never see half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def scanner_version(config: Config) -> str:
    """Trivy's version, from the scanner image tag (``aquasec/trivy:0.76.0`` -> ``0.76.0``)."""
    try:
        tag = parse_reference(config.scanner.image).tag
    except OcscanError:
        tag = None
    return (tag or "unknown").removeprefix("v")


def gitlab_report_json(report: CycleReport, config: Config) -> str:
    """The GitLab container-scanning report, validated against its schema."""
    document = gitlab_report(
        report, scanner_version=scanner_version(config), analyzer_version=__version__
    )
    validate_gitlab_report(document)
    return json.dumps(document, indent=2) + "\n"


class Delivery:
    """The sinks of one agent, built once from the configuration."""

    def __init__(self, client: AsyncClient, config: Config) -> None:
        self._client = client
        self._config = config

    @staticmethod
    def check(sinks: SinksConfig) -> None:
        """Fail at start-up, not at the first cycle, when a sink cannot work."""
        files = {"json_file": sinks.json_file, "gitlab_report_file": sinks.gitlab_report_file}
        for key, path in files.items():
            if path is not None and not path.parent.is_dir():
                raise ConfigError(f"sinks.{key}: folder {path.parent} does not exist")
        if sinks.gitlab is not None:
            try:
                read_agent_token(sinks.gitlab.token_file)
                read_kas_secret(sinks.gitlab.kas_secret_file)
            except GitLabConfigError as error:
                raise ConfigError(f"sinks.gitlab: {error}") from None

    async def deliver(self, report: CycleReport) -> dict[str, bool]:
        """Send ``report`` to each sink; returns which sinks succeeded."""
        results: dict[str, bool] = {}
        for name, sink in self._enabled():
            try:
                await sink(report)
            except OcscanError as error:  # already explained: no traceback needed
                log.error("delivery to %s failed: %s", name, error)
                results[name] = False
            except Exception:
                log.exception("delivery to %s failed", name)
                results[name] = False
            else:
                results[name] = True
        return results

    def _enabled(self) -> list[tuple[str, Sink]]:
        sinks = self._config.sinks
        enabled: list[tuple[str, Sink]] = []
        if sinks.json_file is not None:
            enabled.append(("json_file", self._write_json))
        if sinks.gitlab_report_file is not None:
            enabled.append(("gitlab_report_file", self._write_gitlab_report))
        if sinks.vulnerability_reports:
            enabled.append(("vulnerability_reports", self._write_vulnerability_reports))
        if sinks.gitlab is not None:
            enabled.append(("gitlab", self._send_to_gitlab))
        return enabled

    async def _write_json(self, report: CycleReport) -> None:
        assert self._config.sinks.json_file is not None
        write_atomically(self._config.sinks.json_file, report.model_dump_json(indent=2) + "\n")

    async def _write_gitlab_report(self, report: CycleReport) -> None:
        assert self._config.sinks.gitlab_report_file is not None
        write_atomically(
            self._config.sinks.gitlab_report_file, gitlab_report_json(report, self._config)
        )

    async def _write_vulnerability_reports(self, report: CycleReport) -> None:
        documents = []
        for workload in report.workloads:
            try:
                documents += workload_reports(
                    workload,
                    scanner_version=scanner_version(self._config),
                    updated_at=report.cycle.finished_at,
                )
            except VulnerabilityReportError as error:
                log.warning("%s", error)
        complete = [ns for ns, full in report.cycle.namespaces.items() if full]
        summary = await write_reports(self._client, documents, prune_namespaces=complete)
        log.info(
            "VulnerabilityReports: %d written, %d pruned, %d errors",
            summary.written,
            summary.pruned,
            len(summary.errors),
        )
        if summary.errors:
            raise OcscanError(
                f"{len(summary.errors)} VulnerabilityReports not written: "
                + "; ".join(summary.errors[:3])
            )

    async def _send_to_gitlab(self, report: CycleReport) -> None:
        gitlab = self._config.sinks.gitlab
        assert gitlab is not None
        sink = GitLabAgentSink.from_files(
            gitlab.url,
            gitlab.agent_id,
            token_file=gitlab.token_file,
            kas_secret_file=gitlab.kas_secret_file,
            scanner_version=scanner_version(self._config),
        )
        async with sink:
            result = await sink.deliver(report)
        log.info(
            "GitLab: %d findings uploaded, resolution %s (%s)",
            result.uploaded,
            result.resolution,
            result.reason,
        )
        # Leaving old findings open after an incomplete scan is by design, not a failure.
        if result.failures or result.not_attempted or result.resolution == "failed":
            raise OcscanError(f"GitLab delivery incomplete: {result.reason}")
