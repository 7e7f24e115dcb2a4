"""The scanner Job and its temporary credential Secret, as Kubernetes manifests. Pure.

Each scan is a Job of one pod. A scan with credentials starts suspended: its Secret is
created, owned by the Job, before the Job controller may create the pod, so the pod never
waits for it (a kubelet retries a missing ``secretKeyRef`` only after a 10-15 s back-off),
and the Secret is never without an owner. The pod reads the registry credentials only
through ``secretKeyRef`` (or a mounted single-registry ``config.json``), so no credential
ever appears in a pod spec. It is hardened: no service-account token, non-root, read-only
root filesystem, no capabilities, RuntimeDefault seccomp, and an ``activeDeadlineSeconds``
beyond Trivy's own timeout.
"""

from __future__ import annotations

import base64
from typing import Any

from ocscan.config import ScannerConfig
from ocscan.scan.transport import SCANNER_SCRIPT
from ocscan.scan.trivy_command import TOKEN_ENV, TrivyCommand

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "ocscan"
COMPONENT_LABEL = "app.kubernetes.io/component"
TARGET_LABEL = "ocscan.io/target"
SCAN_LABEL = "ocscan.io/scan"  # on a scanner pod: the name of its Job and Secret
MANAGED_SELECTOR: dict[str, Any] = {MANAGED_BY_LABEL: MANAGED_BY}
SCANNER_SELECTOR: dict[str, Any] = {**MANAGED_SELECTOR, COMPONENT_LABEL: "scanner"}

SCANNER_CONTAINER = "scanner"
SCRATCH_PATH = "/scratch"
AUTH_PATH = "/var/run/ocscan/auth"
RUN_AS_USER = 65532
ORPHAN_TTL_SECONDS = 3600  # a finished Job the agent could not delete


def _labels(component: str, target_key: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: component, TARGET_LABEL: target_key}


def _secret_env(name: str, secret: str, key: str, *, optional: bool = False) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret, "key": key}
    if optional:
        ref["optional"] = True
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}


def scanner_job(
    *,
    name: str,
    target_key: str,
    image_ref: str,
    command: TrivyCommand,
    config: ScannerConfig,
) -> dict[str, Any]:
    """The Job whose one pod runs ``command``; its secrets come from the Secret ``name``.

    Each of ``command.secret_env`` becomes a ``secretKeyRef`` to the key of that name, and
    ``command.docker_config`` a mounted ``config.json``: the values live only in the
    Secret (:func:`credential_secret`). The Job is suspended when ``command`` carries
    credentials: resume it once the Secret exists. ``target_key`` is a short label-safe
    target id.
    """
    dockerconfig = command.docker_config is not None
    env: list[dict[str, Any]] = [
        {"name": "OCSCAN_SCRATCH", "value": SCRATCH_PATH},
        {"name": "OCSCAN_REPORT_CAP", "value": str(config.report_cap_bytes)},
        {"name": "OCSCAN_LOG_MAX", "value": str(config.log_max_bytes)},
        {"name": "HOME", "value": f"{SCRATCH_PATH}/home"},
        {"name": "TMPDIR", "value": SCRATCH_PATH},
        {"name": "TRIVY_CACHE_DIR", "value": f"{SCRATCH_PATH}/cache"},
        # An empty folder unless the credentials are mounted there: no stray login applies.
        {"name": "DOCKER_CONFIG", "value": AUTH_PATH if dockerconfig else SCRATCH_PATH},
    ]
    if config.trivy_token_secret:
        # Optional: a server started without a token accepts clients without one.
        env.append(_secret_env(TOKEN_ENV, config.trivy_token_secret, "token", optional=True))
    env.extend(_secret_env(variable, name, variable) for variable in sorted(command.secret_env))
    volume_mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": SCRATCH_PATH}]
    scratch_size = config.limits.get("ephemeral-storage", "4Gi")  # image layers land here
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {"sizeLimit": scratch_size}}]
    if dockerconfig:
        volume_mounts.append({"name": "auth", "mountPath": AUTH_PATH, "readOnly": True})
        volumes.append(
            {
                "name": "auth",
                "secret": {
                    "secretName": name,
                    "items": [{"key": "config.json", "path": "config.json"}],
                    "defaultMode": 0o400,
                },
            }
        )
    if config.registry_ca_configmap:
        env.append({"name": "SSL_CERT_FILE", "value": "/etc/ocscan/ca/ca.crt"})
        volume_mounts.append({"name": "ca", "mountPath": "/etc/ocscan/ca", "readOnly": True})
        volumes.append({"name": "ca", "configMap": {"name": config.registry_ca_configmap}})
    container: dict[str, Any] = {
        "name": SCANNER_CONTAINER,
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", SCANNER_SCRIPT, "ocscan-scanner", *command.argv],
        "env": env,
        "volumeMounts": volume_mounts,
        "resources": {"requests": dict(config.requests), "limits": dict(config.limits)},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": config.service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "activeDeadlineSeconds": config.timeout_seconds + config.deadline_margin_seconds,
        "terminationGracePeriodSeconds": 5,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if config.node_selector:
        spec["nodeSelector"] = dict(config.node_selector)
    if config.tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in config.tolerations]
    if config.priority_class:
        spec["priorityClassName"] = config.priority_class
    annotations = {"ocscan.io/image": image_ref}
    job_spec: dict[str, Any] = {
        "suspend": command.needs_secret,
        "completions": 1,
        "parallelism": 1,
        # One try: a failed scan is reported, not retried behind the agent's back.
        "backoffLimit": 0,
        "template": {
            "metadata": {
                "labels": {**_labels("scanner", target_key), SCAN_LABEL: name},
                "annotations": annotations,
            },
            "spec": spec,
        },
    }
    if not config.keep_failed_pods:
        # A safety net only: the agent deletes each Job as soon as its scan ends.
        job_spec["ttlSecondsAfterFinished"] = ORPHAN_TTL_SECONDS
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": _labels("scanner", target_key),
            "annotations": annotations,
        },
        "spec": job_spec,
    }


def credential_secret(
    *,
    name: str,
    namespace: str,
    target_key: str,
    owner_job: dict[str, Any],
    command: TrivyCommand,
) -> dict[str, Any]:
    """The temporary Secret for one scan, owned by its scanner Job from the moment it exists.

    It holds exactly what ``command`` carries, one registry's credentials: the
    ``TRIVY_USERNAME``/``TRIVY_PASSWORD`` values, or a ``config.json`` with that single
    registry when the password cannot travel in env vars.
    """
    data = {key: value.get_secret_value() for key, value in command.secret_env.items()}
    if command.docker_config is not None:
        data["config.json"] = command.docker_config.get_secret_value()
    owner_meta = owner_job["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": _labels("credentials", target_key),
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": owner_meta["name"],
                    "uid": owner_meta["uid"],
                    "controller": True,
                    # True would need update on jobs/finalizers where the API enforces
                    # owner-reference permissions (OpenShift); the GC deletes it either way.
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
