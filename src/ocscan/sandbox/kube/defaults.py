"""Defaulting, as the API server does it before storing an object.

Only the defaults clients and controllers commonly rely on are filled in (pod spec basics,
replicas, strategies, Job selectors, Service cluster IPs, Secret type, Namespace finalizers).
"""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.jsondata import JsonObject, metadata
from ocscan.sandbox.kube.resources import ResourceType

_cluster_ips = (str(ipaddress.IPv4Address("10.96.0.10") + i) for i in itertools.count())


_NO_GENERATION_GROUPS = ("", "rbac.authorization.k8s.io", "coordination.k8s.io",
                         "authorization.k8s.io")  # fmt: skip


def tracks_generation(rtype: ResourceType) -> bool:
    """Whether ``metadata.generation`` counts spec changes of this type (workloads, policies,
    CRDs and custom resources do; core objects, RBAC and leases don't)."""
    return rtype.is_custom or rtype.group not in _NO_GENERATION_GROUPS


def allows_unconditional_update(rtype: ResourceType) -> bool:
    """Whether a PUT without ``metadata.resourceVersion`` is allowed (the strategy's
    ``AllowUnconditionalUpdate``): not for custom resources, nor for Leases, whose writers
    must always say which version they read."""
    return not rtype.is_custom and rtype != r.LEASES


def reset_status(rtype: ResourceType, obj: JsonObject) -> None:
    """Replace a new object's status with what the API server starts it with."""
    if rtype == r.NODES:
        return  # kubelets register nodes with their status
    if rtype == r.PODS:
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj.get("spec") or {})}
    elif rtype == r.NAMESPACES:
        obj["status"] = {"phase": "Active"}
    elif rtype.is_custom:
        obj.pop("status", None)
    elif rtype == r.SERVICES:
        obj["status"] = {"loadBalancer": {}}
    elif rtype in (r.REPLICA_SETS, r.REPLICATION_CONTROLLERS, r.STATEFUL_SETS):
        obj["status"] = {"replicas": 0}  # a required field of their status
    elif rtype == r.DAEMON_SETS:
        obj["status"] = dict.fromkeys(
            ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled",
             "numberReady"), 0)  # fmt: skip
    else:
        obj["status"] = {}


def apply_defaults(rtype: ResourceType, obj: JsonObject, old: JsonObject | None) -> None:
    """Fill in defaulted fields of ``obj`` in place (``old`` is the stored version on update)."""
    spec = obj.get("spec")
    meta = metadata(obj)
    if rtype == r.NAMESPACES:
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif rtype == r.SECRETS:
        obj.setdefault("type", "Opaque")
    elif not isinstance(spec, dict):
        return
    elif rtype == r.PODS:
        default_pod_spec(spec)
    elif rtype in (
        r.DEPLOYMENTS,
        r.REPLICA_SETS,
        r.STATEFUL_SETS,
        r.DAEMON_SETS,
        r.REPLICATION_CONTROLLERS,
    ):
        _default_workload(rtype, spec)
    elif rtype == r.JOBS:
        _default_job(obj, spec, old)
    elif rtype == r.CRON_JOBS:
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job_spec = (spec.get("jobTemplate") or {}).get("spec")
        if isinstance(job_spec, dict):
            _default_job_spec(job_spec)
    elif rtype == r.SERVICES:
        _default_service(spec, old)


def default_pod_spec(spec: dict[str, Any]) -> None:
    """Pod spec defaults: restart and DNS policy, scheduler, grace period, container fields."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(group) or []:
            if not isinstance(container, dict):
                continue
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("resources", {})
            image = container.get("image")
            if isinstance(image, str) and "imagePullPolicy" not in container:
                container["imagePullPolicy"] = _pull_policy(image)
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def _pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` or untagged images without a digest, else ``IfNotPresent``."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rpartition("/")[2]
    tag = last.partition(":")[2] if ":" in last else ""
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def _default_template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])


def _default_workload(rtype: ResourceType, spec: dict[str, Any]) -> None:
    if rtype != r.DAEMON_SETS:
        spec.setdefault("replicas", 1)
    if rtype != r.REPLICATION_CONTROLLERS and rtype != r.REPLICA_SETS:
        spec.setdefault("revisionHistoryLimit", 10)
    if rtype == r.DEPLOYMENTS:
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        if strategy.setdefault("type", "RollingUpdate") == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
    elif rtype == r.STATEFUL_SETS:
        spec.setdefault("podManagementPolicy", "OrderedReady")
        strategy = spec.setdefault("updateStrategy", {})
        if strategy.setdefault("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {"partition": 0})
    elif rtype == r.DAEMON_SETS:
        strategy = spec.setdefault("updateStrategy", {})
        if strategy.setdefault("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {"maxUnavailable": 1, "maxSurge": 0})
    elif rtype == r.REPLICATION_CONTROLLERS:
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
        if labels and not spec.get("selector"):
            spec["selector"] = dict(labels)
    _default_template(spec)


def _default_job_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    _default_template(spec)


def _default_job(obj: JsonObject, spec: dict[str, Any], old: JsonObject | None) -> None:
    """Job defaults, including the generated ``controller-uid`` selector and pod labels."""
    _default_job_spec(spec)
    if spec.get("manualSelector") or old is not None:
        return
    uid = metadata(obj).get("uid", "")
    name = metadata(obj).get("name", "")
    generated = {"batch.kubernetes.io/controller-uid": uid}
    spec.setdefault("selector", {"matchLabels": generated})
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    labels.update(
        {
            "controller-uid": uid,
            "job-name": name,
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
        }
    )


def _default_service(spec: dict[str, Any], old: JsonObject | None) -> None:
    service_type = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
    if service_type != "ExternalName" and not spec.get("clusterIP"):
        spec["clusterIP"] = old_ip or next(_cluster_ips)
        spec["clusterIPs"] = [spec["clusterIP"]]
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])


def _qos_class(spec: dict[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' requests and limits."""
    containers = [
        c
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        if isinstance(c, dict)
    ]
    resources = [c.get("resources") or {} for c in containers]
    if not any(res.get("requests") or res.get("limits") for res in resources):
        return "BestEffort"
    for res in resources:
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                return "Burstable"
    return "Guaranteed"
