"""The configuration file, as typed models. Every key is documented here and in the README.

Unknown keys are errors (``extra="forbid"``) so that a typo never silently falls back to a
default; :func:`load_config` reports the key's path.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from ocscan.agent.schedule import schedule_problem
from ocscan.errors import OcscanError
from ocscan.kube.quantity import QuantityError, parse_quantity
from ocscan.kube.selector import parse_label_selector


class ConfigError(OcscanError):
    """The configuration file cannot be used. The message names each bad key's path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Toleration(_Strict):
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    tolerationSeconds: int | None = None


DEFAULT_REQUESTS = {"cpu": "100m", "memory": "256Mi", "ephemeral-storage": "512Mi"}


class ScannerConfig(_Strict):
    """How scanner pods run."""

    namespace: str = Field(
        "ocscan",
        description="The agent's namespace: scanner pods and their temporary Secrets live here.",
    )
    image: str = Field(
        "aquasec/trivy:0.76.0",
        description="The scanner image (Trivy, with /bin/sh, gzip, base64 and sha256sum).",
    )
    service_account: str = Field(
        "ocscan-scanner", description="Service account of scanner pods; its token is never mounted."
    )
    trivy_server: str = Field(
        "http://trivy.ocscan.svc:4954",
        description="URL of the shared Trivy server the scanners are clients of.",
    )
    trivy_token_secret: str | None = Field(
        "ocscan-trivy-token",
        description="Secret in the agent namespace holding the Trivy server token"
        " under the key `token`;"
        " null for no token.",
    )
    timeout_seconds: int = Field(
        300, ge=10, le=6 * 3600, description="Trivy's own timeout for one scan."
    )
    start_timeout_seconds: int = Field(
        300,
        ge=5,
        description="How long a scanner pod may wait to start (scheduling, image pull);"
        " image pull errors fail at once.",
    )
    deadline_margin_seconds: int = Field(
        60,
        ge=5,
        description="activeDeadlineSeconds of a scanner pod is the timeout plus this margin.",
    )
    concurrency: int = Field(10, ge=1, le=500, description="Scanner pods running at once.")
    report_cap_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Largest Trivy JSON report accepted;"
        " above it the scan fails with report_too_large.",
    )
    log_max_bytes: int = Field(
        10 * 1024 * 1024,
        ge=4096,
        description="The kubelet's containerLogMaxSize on the nodes scanner pods run on"
        " (10Mi unless changed): a report whose log would not fit one log file fails as"
        " report_too_large instead of being cut by the log rotation.",
    )
    keep_failed_pods: bool = Field(
        False,
        description="Keep the Jobs and pods of failed scans for debugging"
        " (their Secret is still deleted at once).",
    )
    requests: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_REQUESTS),
        description="Resource requests of the scanner container; when only limits are set,"
        " a default request above its limit is lowered to it.",
    )
    limits: dict[str, str] = Field(
        default_factory=lambda: {"memory": "1Gi", "ephemeral-storage": "4Gi"},
        description="Resource limits of the scanner container.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector of scanner pods."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations of scanner pods."
    )
    priority_class: str | None = Field(None, description="priorityClassName of scanner pods.")
    registry_ca_configmap: str | None = Field(
        None,
        description="ConfigMap in the agent namespace whose `ca.crt` is trusted for registries.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_requests_within_limits(cls, data: Any) -> Any:
        """Lower a default request above a limit the user set (a request the user wrote is
        checked, not changed): Kubernetes refuses a pod whose request exceeds its limit."""
        if not isinstance(data, dict) or "requests" in data:
            return data
        limits = data.get("limits")
        if not isinstance(limits, dict):
            return data
        requests = dict(DEFAULT_REQUESTS)
        for resource, limit in limits.items():
            with contextlib.suppress(QuantityError, TypeError):  # the field says what is wrong
                if resource in requests and _value(requests[resource]) > _value(limit):
                    requests[resource] = str(limit)
        return {**data, "requests": requests}

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, value: dict[str, str]) -> dict[str, str]:
        for resource, quantity in value.items():
            try:
                parse_quantity(quantity)
            except QuantityError as error:
                raise ValueError(f"{resource}: {quantity!r} is not a quantity ({error})") from None
        return value

    @field_validator("limits")
    @classmethod
    def _requests_within_limits(
        cls, limits: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        requests = info.data.get("requests") or {}
        for resource, limit in limits.items():
            request = requests.get(resource)
            if request is not None and _value(request) > _value(limit):
                raise ValueError(
                    f"the {resource} request ({request}) is above its limit ({limit}):"
                    " Kubernetes would refuse every scanner pod"
                )
        return limits


def _value(quantity: object) -> Any:
    return parse_quantity(str(quantity))


class TargetsConfig(_Strict):
    """Which workloads a cycle scans."""

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to scan; empty means all."
    )
    exclude_namespaces: list[str] = Field(
        default_factory=list, description="Namespaces never scanned."
    )
    label_selector: str | None = Field(
        None, description="Only pods matching this label selector (kubectl syntax)."
    )

    @field_validator("label_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None:
            parse_label_selector(value)  # raises with the reason
        return value


class CycleConfig(_Strict):
    deadline_seconds: int = Field(
        3600,
        ge=60,
        description="A cycle that runs longer is cancelled; unfinished targets get status timeout.",
    )
    page_size: int = Field(500, ge=10, le=5000, description="Objects per page when listing.")


class LeaderElectionConfig(_Strict):
    """Which replica scans: the one holding a coordination.k8s.io/v1 Lease."""

    enabled: bool = Field(True, description="Only the replica holding the Lease scans.")
    lease_name: str = Field("ocscan-leader", description="Lease in the agent namespace.")
    lease_duration_seconds: int = Field(
        15,
        ge=1,
        description="A lease its holder has not renewed for this long is taken over by another"
        " replica; a replica that stopped gracefully hands it over at once.",
    )
    renew_seconds: float = Field(
        2.0,
        gt=0,
        description="How often the holder renews the lease (and candidates try to take it)."
        " The holder keeps leading through failed renewals only while no other replica can"
        " have taken over, so this must be well below lease_duration_seconds.",
    )

    @field_validator("renew_seconds")
    @classmethod
    def _renew_within_lease(cls, value: float, info: ValidationInfo) -> float:
        duration = info.data.get("lease_duration_seconds")
        if duration is not None and value * 2 > duration:
            raise ValueError(
                f"{value:g} is more than half of lease_duration_seconds ({duration}):"
                " a holder could lose the lease between two renewals"
            )
        return value


class GitLabConfig(_Strict):
    """The GitLab agent API (self-managed GitLab)."""

    url: str = Field(description="GitLab base URL, e.g. https://gitlab.example.com.")
    agent_id: str = Field(description="The GitLab agent's id.")
    token_file: Path = Field(description="File holding the agent token.")
    kas_secret_file: Path = Field(description="File holding GitLab's KAS shared secret (base64).")


class SinksConfig(_Strict):
    """Where each cycle's results go."""

    json_file: Path | None = Field(None, description="Write the cycle report (JSON) here.")
    gitlab_report_file: Path | None = Field(
        None, description="Write a GitLab container-scanning report here."
    )
    vulnerability_reports: bool = Field(True, description="Write VulnerabilityReport resources.")
    gitlab: GitLabConfig | None = Field(None, description="Send findings to the GitLab agent API.")


class AgentConfig(_Strict):
    """The long-running agent (``ocscan agent``)."""

    schedule: str = Field(
        "0 */6 * * *",
        description="When cycles run, in UTC: five cron fields (minute hour day month weekday),"
        " or six with seconds first (second minute hour day month weekday,"
        " e.g. `*/30 * * * * *`).",
    )
    run_at_start: bool = Field(
        True, description="Run one cycle as soon as this replica leads, then follow the schedule."
    )
    listen_host: str = Field("0.0.0.0", description="Address of /metrics, /healthz and /readyz.")  # noqa: S104
    listen_port: int = Field(
        8080, ge=0, le=65535, description="Port of those endpoints; 0 picks a free port (logged)."
    )
    shutdown_grace_seconds: float = Field(
        25.0,
        gt=0,
        description="On SIGTERM, time to cancel running scans and delete their pods and Secrets"
        " (keep it below the pod's terminationGracePeriodSeconds).",
    )
    log_level: str = Field(
        "INFO",
        pattern="^(DEBUG|INFO|WARNING|ERROR)$",
        description="Level of the JSON log lines on standard error.",
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = schedule_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class Config(_Strict):
    """The whole configuration file."""

    targets: TargetsConfig = Field(default_factory=TargetsConfig)
    scanner: ScannerConfig = Field(default_factory=ScannerConfig)
    cycle: CycleConfig = Field(default_factory=CycleConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    leader_election: LeaderElectionConfig = Field(default_factory=LeaderElectionConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)


def _error_path(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def _message(error: ErrorDetails) -> str:
    # Our validators' own words, without pydantic's "Value error, " in front.
    return error["msg"].removeprefix("Value error, ")


def parse_config(document: Any, *, source: str = "config") -> Config:
    """Validate a parsed YAML document; the error lists every bad key by its path."""
    if document is None:
        document = {}
    try:
        return Config.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{_error_path(e)}: {_message(e)}" for e in error.errors())
        raise ConfigError(f"{source}: {problems}") from None


def load_config(path: Path | None) -> Config:
    """The configuration in ``path``, or the defaults when there is none."""
    if path is None:
        return Config()
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    return parse_config(document, source=str(path))
