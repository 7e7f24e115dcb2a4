"""Scanner Job and temporary Secret manifests: hardened, owned, and free of credentials."""

from __future__ import annotations

import base64
import json
from typing import Any

import kubernetes_validate
import pytest

from ocscan.config import ScannerConfig, Toleration
from ocscan.registry.credential import RegistryCredential
from ocscan.scan.podspec import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SCAN_LABEL,
    SCANNER_CONTAINER,
    credential_secret,
    scanner_job,
)
from ocscan.scan.trivy_command import ClientServer, TrivyCommand, build_trivy_command

CANARY = "canary-Pa55word-7f3e"
IMAGE = "registry.example.com:5000/team/app@sha256:" + "ab" * 32


def command(password: str | None) -> TrivyCommand:
    credential = RegistryCredential.of("robot", password) if password is not None else None
    return build_trivy_command(IMAGE, ClientServer("http://trivy:4954"), credential=credential)


def job_for(password: str | None, config: ScannerConfig | None = None) -> dict[str, Any]:
    return scanner_job(
        name="ocscan-scan-x",
        target_key="k",
        image_ref=IMAGE,
        command=command(password),
        config=config or ScannerConfig(),
    )


def build(password: str | None, config: ScannerConfig | None = None) -> dict[str, Any]:
    """The scanner pod: the Job's template."""
    template: dict[str, Any] = job_for(password, config)["spec"]["template"]
    return template


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}


def test_credentials_only_through_secret_key_refs() -> None:
    pod = build(CANARY)
    assert CANARY not in json.dumps(pod)
    assert "robot" not in json.dumps(pod)
    env = env_of(pod)
    for variable in ("TRIVY_USERNAME", "TRIVY_PASSWORD"):
        ref = env[variable]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "ocscan-scan-x", "key": variable}
    assert env["TRIVY_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ocscan-trivy-token"


def test_hardening() -> None:
    config = ScannerConfig(timeout_seconds=120, deadline_margin_seconds=30)
    spec = build(CANARY, config)["spec"]
    container = spec["containers"][0]
    assert spec["automountServiceAccountToken"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 150
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/scratch"}
    assert "--skip-db-update" in container["command"]
    assert "--skip-java-db-update" in container["command"]
    assert "--skip-check-update" in container["command"]


def test_scheduling_options_reach_the_pod() -> None:
    config = ScannerConfig(
        node_selector={"pool": "scan"},
        tolerations=[
            Toleration(key="dedicated", operator="Equal", value="scan", effect="NoSchedule")
        ],
        priority_class="low",
        image="mirror.local/trivy:0.76.0",
        limits={"memory": "2Gi", "ephemeral-storage": "8Gi"},
    )
    spec = build(None, config)["spec"]
    assert spec["nodeSelector"] == {"pool": "scan"}
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "scan", "effect": "NoSchedule"}
    ]
    assert spec["priorityClassName"] == "low"
    assert spec["containers"][0]["image"] == "mirror.local/trivy:0.76.0"
    assert spec["containers"][0]["resources"]["limits"]["ephemeral-storage"] == "8Gi"


def test_anonymous_scan_references_no_credential_secret() -> None:
    env = env_of(build(None))
    assert "TRIVY_USERNAME" not in env and "TRIVY_PASSWORD" not in env


@pytest.mark.parametrize("password", ["with,comma", " leading-space"])
def test_password_that_cannot_travel_in_env_is_mounted_as_config_json(password: str) -> None:
    pod = build(password)
    assert password not in json.dumps(pod)
    env = env_of(pod)
    assert "TRIVY_PASSWORD" not in env
    assert env["DOCKER_CONFIG"]["value"] == "/var/run/ocscan/auth"
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "auth")
    assert volume["secret"]["secretName"] == "ocscan-scan-x"


def secret_for(password: str) -> dict[str, Any]:
    owner = {"metadata": {"name": "ocscan-scan-x", "uid": "1234-uid"}}
    return credential_secret(
        name="ocscan-scan-x",
        namespace="ocscan",
        target_key="k",
        owner_job=owner,
        command=command(password),
    )


@pytest.mark.parametrize("password", [CANARY, "a,b"])
def test_a_job_that_needs_a_secret_starts_suspended(password: str) -> None:
    job = job_for(password)
    assert job["spec"]["suspend"] is True
    assert password not in json.dumps(job)


def test_a_job_without_credentials_starts_at_once_and_runs_one_pod_once() -> None:
    spec = job_for(None)["spec"]
    assert spec["suspend"] is False
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 0)
    assert spec["template"]["metadata"]["labels"][SCAN_LABEL] == "ocscan-scan-x"
    assert spec["ttlSecondsAfterFinished"] > 0


def test_kept_failed_jobs_are_not_removed_by_a_ttl() -> None:
    assert (
        "ttlSecondsAfterFinished" not in job_for(None, ScannerConfig(keep_failed_pods=True))["spec"]
    )


def test_secret_is_owned_by_its_job_and_holds_one_registry() -> None:
    secret = secret_for(CANARY)
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["apiVersion"], owner["kind"]) == ("batch/v1", "Job")
    assert owner["uid"] == "1234-uid" and owner["controller"]
    assert secret["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {"TRIVY_USERNAME": "robot", "TRIVY_PASSWORD": CANARY}


def test_config_json_secret_holds_only_that_registry() -> None:
    secret = secret_for("a,b")
    document = json.loads(base64.b64decode(secret["data"]["config.json"]))
    assert list(document["auths"]) == ["registry.example.com:5000"]


@pytest.mark.parametrize("password", [CANARY, "a,b", None])
def test_manifests_validate_against_the_kubernetes_schema(password: str | None) -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(job_for(password), version, strict=True)
    if password is not None:
        kubernetes_validate.validate(secret_for(password), version, strict=True)


def test_container_name_is_stable() -> None:
    assert build(None)["spec"]["containers"][0]["name"] == SCANNER_CONTAINER
