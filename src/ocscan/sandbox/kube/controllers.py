"""The workload controllers of the emulator, as kube-controller-manager runs them.

* Deployment -> ReplicaSet ``<deployment>-<pod-template-hash>`` (the hash also labels the
  ReplicaSet and its pods); a changed template gets a new ReplicaSet, old ones scale to 0.
* ReplicaSet -> pods ``<replicaset>-<5 random chars>``; missing pods are created, surplus
  ones deleted; failed creations (e.g. admission) become ``FailedCreate`` events and retries.
* StatefulSet -> pods ``<name>-0 .. <name>-(n-1)`` (``OrderedReady``: one at a time, each
  after the previous one is Running and Ready; ``Parallel``: all at once).
* DaemonSet -> one pod per Node (pinned with a ``metadata.name`` node affinity).
* Job -> pods ``<job>-<5 random chars>`` up to ``parallelism`` until ``completions``
  succeeded; ``suspend`` (active pods deleted, none created); ``backoffLimit`` (a pod
  deleted by someone else before it succeeded counts as failed, as the real controller's
  tracking finalizers make it) and ``activeDeadlineSeconds``; status and conditions as the
  real job controller writes them.
* CronJob: :meth:`Controllers.trigger_cronjob` creates a Job from ``jobTemplate`` as
  ``kubectl create job --from=cronjob/<name>`` does; the controller keeps ``status.active``
  and ``lastSuccessfulTime`` and the history limits. Schedules do not fire on their own.
* ServiceAccount and root CA publisher: every namespace gets the ``default``
  ServiceAccount and the ``kube-root-ca.crt`` ConfigMap, recreated when deleted.

Every object a controller creates carries an ownerReference to its controller with
``controller: true`` and ``blockOwnerDeletion: true``; garbage collection is the store's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.errors import ApiError
from ocscan.sandbox.kube.events import NORMAL, WARNING, record_event
from ocscan.sandbox.kube.jsondata import JsonObject, clone
from ocscan.sandbox.kube.resources import ResourceType
from ocscan.sandbox.kube.store import ObjectStore, PatchType, WatchEvent
from ocscan.sandbox.kube.workqueue import Reconciler

_log = logging.getLogger(__name__)

Key = tuple[str, str]

POD_TEMPLATE_HASH = "pod-template-hash"
CONTROLLER_REVISION_HASH = "controller-revision-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_RETRY = 1.0
_COMPLETE_MESSAGE = "Reached expected number of succeeded pods"
_BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
_DEADLINE_MESSAGE = "Job was active longer than specified deadline"
_DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


# --- shared helpers -----------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def owner_reference(owner: JsonObject, block_owner_deletion: bool = True) -> JsonObject:
    """The controller ownerReference a controller puts on what it creates."""
    ref: JsonObject = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    if block_owner_deletion:
        ref["blockOwnerDeletion"] = True
    return ref


def controller_of(obj: JsonObject) -> JsonObject | None:
    """The ownerReference with ``controller: true``, if any."""
    for ref in obj.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def template_hash(template: JsonObject, collision_count: int = 0) -> str:
    """A pod-template hash in the controllers' alphabet (FNV-32a, safe-encoded).

    Like the real one it is stable for a template and changes with it; the value itself
    differs from a real cluster's (that one hashes Go's printing of the struct).
    """
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHABET[ord(ch) % len(_SAFE_ALPHABET)] for ch in str(value))


def _is_active(pod: JsonObject) -> bool:
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def _is_ready(pod: JsonObject) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _phase(pod: JsonObject) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _labels(obj: JsonObject) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def _set_condition(status: JsonObject, condition: JsonObject) -> None:
    """Add or replace a condition, keeping its transition time when the status is unchanged."""
    conditions = status.setdefault("conditions", [])
    for index, existing in enumerate(conditions):
        if existing.get("type") == condition["type"]:
            same = existing.get("status") == condition["status"]
            if same and "lastTransitionTime" in existing:
                condition["lastTransitionTime"] = existing["lastTransitionTime"]
            conditions[index] = condition
            return
    conditions.append(condition)


def _condition(kind: str, ok: bool, reason: str, message: str, probe: bool = True) -> JsonObject:
    now = _now()
    condition: JsonObject = {
        "type": kind,
        "status": "True" if ok else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    }
    if probe:
        condition["lastUpdateTime"] = now
    return condition


# --- the controller manager -----------------------------------------------------------------


class Controllers:
    """All controllers of the emulator over one store. :meth:`start` and :meth:`stop` them."""

    def __init__(self, store: ObjectStore, root_ca: str = "") -> None:
        self.store = store
        self.root_ca = root_ca
        self._deployments = Reconciler[Key]("deployment-controller", self._deployment)
        self._replicasets = Reconciler[Key]("replicaset-controller", self._replicaset, 2)
        self._statefulsets = Reconciler[Key]("statefulset-controller", self._statefulset)
        self._daemonsets = Reconciler[Key]("daemonset-controller", self._daemonset)
        self._jobs = Reconciler[Key]("job-controller", self._job, 2)
        self._cronjobs = Reconciler[Key]("cronjob-controller", self._cronjob)
        self._namespaces = Reconciler[Key]("serviceaccount-controller", self._namespace)
        self._all = [
            self._deployments,
            self._replicasets,
            self._statefulsets,
            self._daemonsets,
            self._jobs,
            self._cronjobs,
            self._namespaces,
        ]
        self._owners: dict[str, Reconciler[Key]] = {
            "Deployment": self._deployments,
            "ReplicaSet": self._replicasets,
            "StatefulSet": self._statefulsets,
            "DaemonSet": self._daemonsets,
            "Job": self._jobs,
            "CronJob": self._cronjobs,
        }
        self._unsubscribe: list[Callable[[], None]] = []
        # Per Job (key -> uid, its pods' last phases, pods that vanished unfinished): the
        # real controller counts a pod deleted before it succeeded as failed (its tracking
        # finalizer lets it see the deletion); pods it deletes itself do not count.
        self._job_pods: dict[Key, tuple[str, dict[str, str], set[str]]] = {}
        self._job_deletes: set[str] = set()

    def start(self) -> None:
        subscriptions: list[tuple[ResourceType, Reconciler[Key] | None]] = [
            (r.DEPLOYMENTS, self._deployments),
            (r.REPLICA_SETS, self._replicasets),
            (r.STATEFUL_SETS, self._statefulsets),
            (r.DAEMON_SETS, self._daemonsets),
            (r.JOBS, self._jobs),
            (r.CRON_JOBS, self._cronjobs),
            (r.PODS, None),
        ]
        for rtype, own in subscriptions:
            self._unsubscribe.append(self.store.subscribe(self._router(own), rtype))
        self._unsubscribe.append(self.store.subscribe(self._on_node, r.NODES))
        self._unsubscribe.append(self.store.subscribe(self._on_namespaced_default, r.NAMESPACES))
        for rtype in (r.SERVICE_ACCOUNTS, r.CONFIG_MAPS):
            self._unsubscribe.append(self.store.subscribe(self._on_namespaced_default, rtype))
        for reconciler in self._all:
            reconciler.start()
        for rtype, own in subscriptions:
            if own is not None:
                for obj in self.store.list(rtype):
                    own.queue.add(_key(obj))
        for namespace in self.store.list(r.NAMESPACES):
            self._namespaces.queue.add(("", namespace["metadata"]["name"]))

    def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        for reconciler in self._all:
            reconciler.stop()

    # -- event routing --

    def _router(self, own: Reconciler[Key] | None) -> Callable[[WatchEvent], None]:
        def route(event: WatchEvent) -> None:
            obj = event.object
            if own is not None:
                own.queue.add(_key(obj))
            for candidate in (obj, event.old_object):
                ref = controller_of(candidate) if candidate else None
                if ref is not None and ref.get("kind") in self._owners:
                    namespace = obj["metadata"].get("namespace", "")
                    self._owners[ref["kind"]].queue.add((namespace, ref["name"]))

        return route

    def _on_node(self, event: WatchEvent) -> None:
        for daemonset in self.store.list(r.DAEMON_SETS):
            self._daemonsets.queue.add(_key(daemonset))

    def _on_namespaced_default(self, event: WatchEvent) -> None:
        meta = event.object["metadata"]
        namespace = meta["name"] if event.resource.key == r.NAMESPACES.key else meta["namespace"]
        self._namespaces.queue.add(("", namespace))

    # -- helpers --

    def _event(self, obj: JsonObject, kind: str, reason: str, message: str, who: str) -> None:
        record_event(self.store, obj, kind, reason, message, who)

    def _get(self, rtype: ResourceType, key: Key) -> JsonObject | None:
        try:
            return self.store.get(rtype, *key)
        except ApiError:
            return None

    def _owned(self, rtype: ResourceType, owner: JsonObject) -> list[JsonObject]:
        meta = owner["metadata"]
        return [
            obj
            for obj in self.store.list(rtype, meta["namespace"])
            if (controller_of(obj) or {}).get("uid") == meta["uid"]
        ]

    def _write_status(self, rtype: ResourceType, obj: JsonObject, status: JsonObject) -> None:
        if status == obj.get("status"):
            return
        new = dict(obj, status=status)
        new["metadata"] = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}
        with contextlib.suppress(ApiError):
            self.store.update_status(rtype, obj["metadata"]["namespace"], new)

    def _create_pod(
        self,
        owner: JsonObject,
        template: JsonObject,
        who: str,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        spec_changes: JsonObject | None = None,
    ) -> JsonObject | None:
        """Create a pod from ``template`` owned by ``owner``; None (and an event) on failure."""
        meta = owner["metadata"]
        pod_meta = clone(template.get("metadata") or {})
        pod_meta["labels"] = dict(pod_meta.get("labels") or {}) | (labels or {})
        if name:
            pod_meta["name"] = name
        else:
            pod_meta["generateName"] = f"{meta['name']}-"
        pod_meta["ownerReferences"] = [owner_reference(owner)]
        spec = clone(template.get("spec") or {}) | (spec_changes or {})
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}
        try:
            created = self.store.create(r.PODS, meta["namespace"], pod)
        except ApiError as error:
            self._event(owner, WARNING, "FailedCreate", f"Error creating: {error.message}", who)
            return None
        self._event(
            owner, NORMAL, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", who
        )
        return created

    def _delete_pod(self, owner: JsonObject, pod: JsonObject, who: str) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(ApiError):
            self.store.delete(r.PODS, meta["namespace"], meta["name"], uid=meta["uid"])
            self._event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {meta['name']}", who)

    # -- Deployment --

    def _deployment(self, key: Key) -> float | None:
        deployment = self._get(r.DEPLOYMENTS, key)
        if deployment is None or deployment["metadata"].get("deletionTimestamp"):
            return None
        who = "deployment-controller"
        spec = deployment["spec"]
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        owned = self._owned(r.REPLICA_SETS, deployment)
        new_rs = next((rs for rs in owned if _same_template(rs, template)), None)
        revisions = [int(_annotation(rs, REVISION_ANNOTATION) or 0) for rs in owned]
        if new_rs is None:
            collisions = int((deployment.get("status") or {}).get("collisionCount") or 0)
            new_rs = self._new_replicaset(deployment, template, replicas, collisions, revisions)
            if new_rs is None:
                return _RETRY
            owned.append(new_rs)
        elif int(new_rs["spec"].get("replicas", 0)) != replicas:
            old_count = int(new_rs["spec"].get("replicas", 0))
            new_rs = self._scale(new_rs, replicas) or new_rs
            direction = "up" if replicas > old_count else "down"
            self._event(deployment, NORMAL, "ScalingReplicaSet",
                        f"Scaled {direction} replica set {new_rs['metadata']['name']} from "
                        f"{old_count} to {replicas}", who)  # fmt: skip
        for rs in owned:
            if rs is not new_rs and int(rs["spec"].get("replicas", 0)) > 0:
                old_count = int(rs["spec"].get("replicas", 0))
                self._scale(rs, 0)
                self._event(deployment, NORMAL, "ScalingReplicaSet",
                            f"Scaled down replica set {rs['metadata']['name']} from "
                            f"{old_count} to 0", who)  # fmt: skip
        self._prune_history(deployment, owned, new_rs)
        revision = _annotation(new_rs, REVISION_ANNOTATION)
        if revision and _annotation(deployment, REVISION_ANNOTATION) != revision:
            with contextlib.suppress(ApiError):
                patch = {"metadata": {"annotations": {REVISION_ANNOTATION: revision}}}
                self.store.patch(r.DEPLOYMENTS, *key, PatchType.MERGE, patch)
        self._deployment_status(deployment, owned, new_rs, replicas)
        return None

    def _new_replicaset(
        self,
        deployment: JsonObject,
        template: JsonObject,
        replicas: int,
        collisions: int,
        revisions: list[int],
    ) -> JsonObject | None:
        meta, spec = deployment["metadata"], deployment["spec"]
        hash_ = template_hash(template, collisions)
        rs_template = clone(template)
        rs_template.setdefault("metadata", {})
        rs_template["metadata"]["labels"] = _labels(template) | {POD_TEMPLATE_HASH: hash_}
        selector = clone(spec.get("selector") or {})
        selector["matchLabels"] = dict(selector.get("matchLabels") or {}) | {
            POD_TEMPLATE_HASH: hash_
        }
        max_surge = 1 if replicas else 0
        rs = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{hash_}",
                "namespace": meta["namespace"],
                "labels": rs_template["metadata"]["labels"],
                "annotations": {
                    "deployment.kubernetes.io/desired-replicas": str(replicas),
                    "deployment.kubernetes.io/max-replicas": str(replicas + max_surge),
                    REVISION_ANNOTATION: str(max(revisions, default=0) + 1),
                },
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": spec.get("minReadySeconds", 0),
                "selector": selector,
                "template": rs_template,
            },
        }
        try:
            created = self.store.create(r.REPLICA_SETS, meta["namespace"], rs)
        except ApiError as error:
            if error.code == 409:  # a hash collision: count it and try another name
                status = dict(deployment.get("status") or {}, collisionCount=collisions + 1)
                self._write_status(r.DEPLOYMENTS, deployment, status)
            else:
                message = f"Error creating: {error.message}"
                self._event(deployment, WARNING, "FailedCreate", message, "deployment-controller")
            return None
        self._event(deployment, NORMAL, "ScalingReplicaSet",
                    f"Scaled up replica set {created['metadata']['name']} from 0 to {replicas}",
                    "deployment-controller")  # fmt: skip
        return created

    def _scale(self, rs: JsonObject, replicas: int) -> JsonObject | None:
        meta = rs["metadata"]
        with contextlib.suppress(ApiError):
            return self.store.patch(
                r.REPLICA_SETS, meta["namespace"], meta["name"], PatchType.MERGE,
                {"metadata": {"annotations": {
                    "deployment.kubernetes.io/desired-replicas": str(replicas)}},
                 "spec": {"replicas": replicas}},
            )  # fmt: skip
        return None

    def _prune_history(
        self, deployment: JsonObject, owned: list[JsonObject], new_rs: JsonObject
    ) -> None:
        limit = int(deployment["spec"].get("revisionHistoryLimit", 10))
        old = [
            rs
            for rs in owned
            if rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
            and int(rs["spec"].get("replicas", 0)) == 0
            and int((rs.get("status") or {}).get("replicas", 0)) == 0
        ]
        old.sort(key=lambda rs: int(_annotation(rs, REVISION_ANNOTATION) or 0))
        for rs in old[: max(len(old) - limit, 0)]:
            with contextlib.suppress(ApiError):
                self.store.delete(r.REPLICA_SETS, rs["metadata"]["namespace"],
                                  rs["metadata"]["name"])  # fmt: skip

    def _deployment_status(
        self, deployment: JsonObject, owned: list[JsonObject], new_rs: JsonObject, replicas: int
    ) -> None:
        fresh = {rs["metadata"]["uid"]: rs for rs in self._owned(r.REPLICA_SETS, deployment)}
        current = [fresh.get(rs["metadata"]["uid"], rs) for rs in owned]
        new_status = (fresh.get(new_rs["metadata"]["uid"], new_rs).get("status")) or {}

        def total(field: str) -> int:
            return sum(int((rs.get("status") or {}).get(field, 0)) for rs in current)

        available = total("availableReplicas")
        status = clone(deployment.get("status") or {})
        status.update(
            observedGeneration=deployment["metadata"].get("generation", 1),
            replicas=total("replicas"),
            updatedReplicas=int(new_status.get("replicas", 0)),
            readyReplicas=total("readyReplicas"),
            availableReplicas=available,
        )
        unavailable = max(replicas - available, 0)
        if unavailable:
            status["unavailableReplicas"] = unavailable
        else:
            status.pop("unavailableReplicas", None)
        for field in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if not status[field]:
                del status[field]
        name = new_rs["metadata"]["name"]
        if available >= replicas:
            available_condition = _condition(
                "Available",
                True,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            available_condition = _condition(
                "Available",
                False,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        done = int(new_status.get("availableReplicas", 0)) >= replicas and available >= replicas
        progressing = _condition(
            "Progressing",
            True,
            "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
            f'ReplicaSet "{name}" has successfully progressed.'
            if done
            else f'ReplicaSet "{name}" is progressing.',
        )
        _set_condition(status, available_condition)
        _set_condition(status, progressing)
        self._write_status(r.DEPLOYMENTS, deployment, status)

    # -- ReplicaSet --

    def _replicaset(self, key: Key) -> float | None:
        rs = self._get(r.REPLICA_SETS, key)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return None
        who = "replicaset-controller"
        wanted = int(rs["spec"].get("replicas", 1))
        pods = self._owned(r.PODS, rs)
        active = [pod for pod in pods if _is_active(pod)]
        failure: str | None = None
        if len(active) < wanted:
            for _ in range(wanted - len(active)):
                created = self._create_pod(rs, rs["spec"].get("template") or {}, who)
                if created is None:
                    failure = "FailedCreate"
                    break
                active.append(created)
        elif len(active) > wanted:
            active.sort(key=_deletion_rank)
            for pod in active[: len(active) - wanted]:
                self._delete_pod(rs, pod, who)
            active = active[len(active) - wanted :]
        ready = [pod for pod in active if _is_ready(pod)]
        status = clone(rs.get("status") or {})
        status.update(
            replicas=len(active),
            fullyLabeledReplicas=len(active),
            readyReplicas=len(ready),
            availableReplicas=len(ready),
            observedGeneration=rs["metadata"].get("generation", 1),
        )
        if failure:
            message = "pods could not be created (see the FailedCreate events)"
            condition = _condition("ReplicaFailure", True, "FailedCreate", message, probe=False)
            _set_condition(status, condition)
        else:
            status["conditions"] = [
                c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"
            ]
            if not status["conditions"]:
                del status["conditions"]
        for field in ("readyReplicas", "availableReplicas"):
            if not status[field]:
                del status[field]
        self._write_status(r.REPLICA_SETS, rs, status)
        return _RETRY if failure else None

    # -- StatefulSet --

    def _statefulset(self, key: Key) -> float | None:
        sts = self._get(r.STATEFUL_SETS, key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return None
        who = "statefulset-controller"
        spec, name = sts["spec"], sts["metadata"]["name"]
        wanted = int(spec.get("replicas", 1))
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        template = spec.get("template") or {}
        revision = f"{name}-{template_hash(template)}"
        pods: dict[int, JsonObject] = {}
        for owned in self._owned(r.PODS, sts):
            index = _ordinal(name, owned["metadata"]["name"])
            if index is not None:
                pods[index] = owned
        failure = False
        for ordinal in range(wanted):
            existing = pods.get(ordinal)
            if existing is None:
                labels = {
                    CONTROLLER_REVISION_HASH: revision,
                    "statefulset.kubernetes.io/pod-name": f"{name}-{ordinal}",
                    "apps.kubernetes.io/pod-index": str(ordinal),
                }
                changes: JsonObject = {"hostname": f"{name}-{ordinal}"}
                if spec.get("serviceName"):
                    changes["subdomain"] = spec["serviceName"]
                created = self._create_pod(
                    sts, template, who, name=f"{name}-{ordinal}", labels=labels,
                    spec_changes=changes,
                )  # fmt: skip
                failure = created is None
                if created is not None:
                    pods[ordinal] = created
                if ordered or failure:
                    break
            elif _phase(existing) in ("Failed", "Succeeded"):
                self._delete_pod(sts, existing, who)  # recreated on the next pass
                if ordered:
                    break
            elif ordered and not (_phase(existing) == "Running" and _is_ready(existing)):
                break
        surplus = sorted((o for o in pods if o >= wanted), reverse=True)
        for ordinal in surplus[:1] if ordered else surplus:
            self._delete_pod(sts, pods.pop(ordinal), who)
        live = [pod for pod in pods.values() if not pod["metadata"].get("deletionTimestamp")]
        ready = [pod for pod in live if _is_ready(pod)]
        status = clone(sts.get("status") or {})
        status.update(
            observedGeneration=sts["metadata"].get("generation", 1),
            replicas=len(live),
            readyReplicas=len(ready),
            currentReplicas=len(live),
            updatedReplicas=len(live),
            availableReplicas=len(ready),
            currentRevision=revision,
            updateRevision=revision,
            collisionCount=0,
        )
        self._write_status(r.STATEFUL_SETS, sts, status)
        return _RETRY if failure else None

    # -- DaemonSet --

    def _daemonset(self, key: Key) -> float | None:
        ds = self._get(r.DAEMON_SETS, key)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return None
        who = "daemonset-controller"
        template = ds["spec"].get("template") or {}
        selector = (template.get("spec") or {}).get("nodeSelector") or {}
        nodes = [
            node["metadata"]["name"]
            for node in self.store.list(r.NODES)
            if all(_labels(node).get(k) == v for k, v in selector.items())
        ]
        revision = template_hash(template)
        generation = str(ds["metadata"].get("generation", 1))
        by_node: dict[str, list[JsonObject]] = {}
        for pod in self._owned(r.PODS, ds):
            if _is_active(pod):
                by_node.setdefault(_daemon_node(pod), []).append(pod)
        failure = False
        for node in nodes:
            if by_node.get(node):
                continue
            spec_changes: JsonObject = {
                "affinity": _pin_to_node(template, node),
                "tolerations": _daemon_tolerations(template),
            }
            labels = {CONTROLLER_REVISION_HASH: revision, "pod-template-generation": generation}
            created = self._create_pod(ds, template, who, labels=labels, spec_changes=spec_changes)
            if created is None:
                failure = True
                break
            by_node[node] = [created]
        for node, pods in by_node.items():
            for pod in pods if node not in nodes else pods[1:]:
                self._delete_pod(ds, pod, who)
        scheduled = [pods[0] for node, pods in by_node.items() if node in nodes and pods]
        ready = [pod for pod in scheduled if _is_ready(pod)]
        status = {
            "currentNumberScheduled": len(scheduled),
            "desiredNumberScheduled": len(nodes),
            "numberMisscheduled": 0,
            "numberReady": len(ready),
            "observedGeneration": ds["metadata"].get("generation", 1),
            "updatedNumberScheduled": len(scheduled),
            "numberAvailable": len(ready),
        }
        if len(nodes) - len(ready):
            status["numberUnavailable"] = len(nodes) - len(ready)
        if not ready:
            del status["numberAvailable"]
        self._write_status(r.DAEMON_SETS, ds, status)
        return _RETRY if failure else None

    # -- Job --

    def _job(self, key: Key) -> float | None:
        job = self._get(r.JOBS, key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            self._job_pods.pop(key, None)
            return None
        who = "job-controller"
        spec = job["spec"]
        status = clone(job.get("status") or {})
        if _finished(status):
            return None
        pods = self._owned(r.PODS, job)
        succeeded = sum(_phase(pod) == "Succeeded" for pod in pods)
        failed = self._failures(key, job, pods)
        active = [pod for pod in pods if _is_active(pod)]
        status.setdefault("startTime", _now())
        wake: float | None = None
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1))
        finish: tuple[str, str, str] | None = None
        deadline = spec.get("activeDeadlineSeconds")
        if spec.get("suspend"):
            for pod in active:
                self._job_deletes.add(pod["metadata"]["uid"])
                self._delete_pod(job, pod, who)
            active = []
        elif deadline is not None:
            elapsed = datetime.now(UTC) - _parse_time(status["startTime"])
            remaining = timedelta(seconds=int(deadline)) - elapsed
            if remaining.total_seconds() <= 0:
                finish = ("Failed", "DeadlineExceeded", _DEADLINE_MESSAGE)
            else:
                wake = remaining.total_seconds()
        if finish is None and failed > int(spec.get("backoffLimit", 6)):
            finish = ("Failed", "BackoffLimitExceeded", _BACKOFF_MESSAGE)
        if finish is None and not spec.get("suspend"):
            if completions is None:
                complete = succeeded > 0 and not active  # work-queue Job: any success ends it
            else:
                complete = succeeded >= int(completions)
            if complete:
                finish = ("Complete", "CompletionsReached", _COMPLETE_MESSAGE)
        if finish is None and not spec.get("suspend"):
            remaining_work = parallelism
            if completions is not None:
                remaining_work = min(parallelism, int(completions) - succeeded)
            elif succeeded:
                remaining_work = 0
            for _ in range(max(remaining_work - len(active), 0)):
                created = self._create_pod(job, spec.get("template") or {}, who)
                if created is None:
                    wake = _RETRY
                    break
                active.append(created)
        status.update(
            active=len(active),
            succeeded=succeeded,
            failed=failed,
            ready=sum(_is_ready(pod) for pod in active),
            terminating=sum(bool(pod["metadata"].get("deletionTimestamp")) for pod in pods),
            uncountedTerminatedPods={},
        )
        if finish is not None:
            kind, reason, message = finish
            if kind == "Failed":
                for pod in active:
                    self._delete_pod(job, pod, who)
                status["active"] = 0
                _set_condition(status, _job_condition("FailureTarget", reason, message))
                _set_condition(status, _job_condition("Failed", reason, message))
                self._event(job, WARNING, reason, message, who)
            else:
                status["completionTime"] = _now()
                _set_condition(status, _job_condition("SuccessCriteriaMet", reason, message))
                _set_condition(status, _job_condition("Complete", reason, message))
                self._event(job, NORMAL, "Completed", "Job completed", who)
            wake = None
        for field in ("active", "succeeded", "failed"):
            if not status[field]:
                del status[field]
        self._write_status(r.JOBS, job, status)
        return wake

    def _failures(self, key: Key, job: JsonObject, pods: list[JsonObject]) -> int:
        """The Job's failed pods: those Failed, and those deleted (terminating, or gone
        already) before they succeeded, except the ones it deleted itself on suspend."""
        uid = job["metadata"]["uid"]
        known_uid, before, lost = self._job_pods.get(key, (uid, {}, set()))
        if known_uid != uid:  # a new Job of the same name
            before, lost = {}, set()
        now = {pod["metadata"]["uid"]: _phase(pod) for pod in pods}
        for pod_uid in before.keys() - now.keys():
            if before[pod_uid] != "Succeeded" and pod_uid not in self._job_deletes:
                lost.add(pod_uid)
            self._job_deletes.discard(pod_uid)
        self._job_pods[key] = (uid, now, lost)
        failing = [
            pod
            for pod in pods
            if pod["metadata"]["uid"] not in self._job_deletes
            and (
                _phase(pod) == "Failed"
                or (pod["metadata"].get("deletionTimestamp") and _phase(pod) != "Succeeded")
            )
        ]
        return len(failing) + len(lost)

    # -- CronJob --

    def trigger_cronjob(self, namespace: str, name: str, job_name: str | None = None) -> JsonObject:
        """Create a Job from the CronJob's ``jobTemplate`` now, as ``kubectl create job
        --from=cronjob/<name>`` does (``job_name`` defaults to ``<name>-manual-<5 chars>``).

        Raises :class:`ApiError` (404 when the CronJob does not exist).
        """
        cronjob = self.store.get(r.CRON_JOBS, namespace, name)
        template = cronjob["spec"].get("jobTemplate") or {}
        template_meta = template.get("metadata") or {}
        suffix = "".join(secrets.choice(_SAFE_ALPHABET) for _ in range(5))
        annotations = {"cronjob.kubernetes.io/instantiate": "manual"}
        annotations |= dict(template_meta.get("annotations") or {})
        job = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": job_name or f"{name}-manual-{suffix}",
                "namespace": namespace,
                "annotations": annotations,
                "labels": dict(template_meta.get("labels") or {}),
                # kubectl sets controller but not blockOwnerDeletion on a manual Job.
                "ownerReferences": [owner_reference(cronjob, block_owner_deletion=False)],
            },
            "spec": clone(template.get("spec") or {}),
        }
        return self.store.create(r.JOBS, namespace, job)

    def _cronjob(self, key: Key) -> float | None:
        cronjob = self._get(r.CRON_JOBS, key)
        if cronjob is None or cronjob["metadata"].get("deletionTimestamp"):
            return None
        spec = cronjob["spec"]
        jobs = self._owned(r.JOBS, cronjob)
        jobs.sort(key=lambda job: job["metadata"].get("creationTimestamp", ""))
        status = clone(cronjob.get("status") or {})
        active = [job for job in jobs if not _finished(job.get("status") or {})]
        if active:
            status["active"] = [_object_reference(job) for job in active]
        else:
            status.pop("active", None)
        successful = [job for job in jobs if _job_succeeded(job)]
        failed = [job for job in jobs if _finished(job.get("status") or {})
                  and not _job_succeeded(job)]  # fmt: skip
        if successful:
            times = [(job.get("status") or {}).get("completionTime") or "" for job in successful]
            status["lastSuccessfulTime"] = max(times)
        if jobs:
            status["lastScheduleTime"] = max(
                job["metadata"].get("creationTimestamp", "") for job in jobs
            )
        for finished, limit in (
            (successful, int(spec.get("successfulJobsHistoryLimit", 3))),
            (failed, int(spec.get("failedJobsHistoryLimit", 1))),
        ):
            for job in finished[: max(len(finished) - limit, 0)]:
                with contextlib.suppress(ApiError):
                    meta = job["metadata"]
                    self.store.delete(
                        r.JOBS, meta["namespace"], meta["name"], propagation="Background"
                    )
        self._write_status(r.CRON_JOBS, cronjob, status)
        return None

    # -- ServiceAccounts and the root CA --

    def _namespace(self, key: Key) -> float | None:
        namespace = key[1]
        ns = self._get(r.NAMESPACES, ("", namespace))
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return None
        if self._get(r.SERVICE_ACCOUNTS, (namespace, "default")) is None:
            with contextlib.suppress(ApiError):
                self.store.create(
                    r.SERVICE_ACCOUNTS, namespace,
                    {"metadata": {"name": "default", "namespace": namespace}},
                )  # fmt: skip
        configmap = self._get(r.CONFIG_MAPS, (namespace, ROOT_CA_CONFIGMAP))
        wanted = {"ca.crt": self.root_ca}
        if configmap is None:
            with contextlib.suppress(ApiError):
                self.store.create(
                    r.CONFIG_MAPS, namespace,
                    {"metadata": {"name": ROOT_CA_CONFIGMAP, "namespace": namespace,
                                  "annotations": {"kubernetes.io/description": (
                                      "Contains a CA bundle that can be used to verify the "
                                      "kube-apiserver when using internal endpoints such as "
                                      "the internal service IP or kubernetes.default.svc. No "
                                      "other usage is guaranteed across distributions of "
                                      "Kubernetes clusters.")}},
                     "data": wanted},
                )  # fmt: skip
        elif configmap.get("data") != wanted:
            configmap["data"] = wanted
            configmap["metadata"].pop("resourceVersion", None)
            with contextlib.suppress(ApiError):
                self.store.update(r.CONFIG_MAPS, namespace, configmap)
        return None


# --- more helpers -----------------------------------------------------------------------------


def _key(obj: JsonObject) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _annotation(obj: JsonObject, name: str) -> str | None:
    value = (obj.get("metadata", {}).get("annotations") or {}).get(name)
    return None if value is None else str(value)


def _same_template(rs: JsonObject, template: JsonObject) -> bool:
    """Whether the ReplicaSet's template is the Deployment's (ignoring the hash label)."""
    ours = clone((rs.get("spec") or {}).get("template") or {})
    labels = (ours.get("metadata") or {}).get("labels") or {}
    labels.pop(POD_TEMPLATE_HASH, None)
    theirs = clone(template)
    for candidate in (ours, theirs):
        meta = candidate.setdefault("metadata", {})
        if not meta.get("labels"):
            meta.pop("labels", None)
        if not meta:
            candidate.pop("metadata")
    return bool(ours == theirs)


def _deletion_rank(pod: JsonObject) -> tuple[Any, ...]:
    """Which pods a ReplicaSet deletes first: unscheduled, pending, unready, newest."""
    return (
        bool(pod["spec"].get("nodeName")),
        {"Pending": 0, "Unknown": 1, "Running": 2}.get(_phase(pod), 0),
        _is_ready(pod),
        _negated(pod["metadata"].get("creationTimestamp", "")),
    )


def _negated(text: str) -> tuple[int, ...]:
    return tuple(-ord(ch) for ch in text)


def _ordinal(set_name: str, pod_name: str) -> int | None:
    prefix = f"{set_name}-"
    if pod_name.startswith(prefix) and pod_name[len(prefix) :].isdigit():
        return int(pod_name[len(prefix) :])
    return None


def _pin_to_node(template: JsonObject, node: str) -> JsonObject:
    """The pod template's affinity with the DaemonSet's ``metadata.name`` node term."""
    affinity = clone((template.get("spec") or {}).get("affinity") or {})
    required = affinity.setdefault("nodeAffinity", {}).setdefault(
        "requiredDuringSchedulingIgnoredDuringExecution", {}
    )
    required["nodeSelectorTerms"] = [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    ]
    return affinity


def _daemon_node(pod: JsonObject) -> str:
    spec = pod.get("spec") or {}
    terms = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution", {}
    ).get("nodeSelectorTerms") or []
    for term in terms:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return str(spec.get("nodeName") or "")


def _daemon_tolerations(template: JsonObject) -> list[JsonObject]:
    tolerations = list((template.get("spec") or {}).get("tolerations") or [])
    for toleration in _DAEMON_TOLERATIONS:
        if toleration not in tolerations:
            tolerations.append(dict(toleration))
    return tolerations


def _job_condition(kind: str, reason: str, message: str) -> JsonObject:
    now = _now()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def _finished(status: JsonObject) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _job_succeeded(job: JsonObject) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _object_reference(obj: JsonObject) -> JsonObject:
    meta = obj["metadata"]
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "uid": meta["uid"],
        "resourceVersion": meta.get("resourceVersion"),
    }
