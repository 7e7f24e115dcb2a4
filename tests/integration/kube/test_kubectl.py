"""The machine's kubectl against the emulator: apply, get, logs, delete, create secret."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

from kube_support import Kubectl, admin_http

from ocscan.sandbox.kube import resources as r
from ocscan.sandbox.kube.server import KubeEmulator

# A typical deploy bundle: every kind an agent's manifests carry.
DEPLOY = """
apiVersion: v1
kind: Namespace
metadata: {name: ocscan-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: agent, namespace: ocscan-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: ocscan-reader}
rules:
- apiGroups: [""]
  resources: [pods, namespaces]
  verbs: [get, list, watch]
- apiGroups: [apps, batch]
  resources: [replicasets, deployments, statefulsets, daemonsets, jobs, cronjobs]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ocscan-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ocscan-reader}
subjects: [{kind: ServiceAccount, name: agent, namespace: ocscan-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: scanner, namespace: ocscan-system}
rules:
- apiGroups: [""]
  resources: [pods, secrets]
  verbs: [create, delete, get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: scanner, namespace: ocscan-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: scanner}
subjects: [{kind: ServiceAccount, name: agent}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: agent-config, namespace: ocscan-system}
data: {config.yaml: "interval: 1h\\n"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: agent, namespace: ocscan-system, labels: {app: agent}}
spec:
  replicas: 1
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      serviceAccountName: agent
      containers:
      - name: agent
        image: registry.example.com/ocscan:0.1.0
        args: [agent, --config, /etc/ocscan/config.yaml]
        volumeMounts: [{name: config, mountPath: /etc/ocscan}]
        resources: {limits: {memory: 256Mi}, requests: {cpu: 50m, memory: 128Mi}}
      volumes: [{name: config, configMap: {name: agent-config}}]
---
apiVersion: v1
kind: Service
metadata: {name: trivy, namespace: ocscan-system}
spec:
  selector: {app: trivy}
  ports: [{name: http, port: 4954, targetPort: 4954}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: trivy, namespace: ocscan-system}
spec:
  podSelector: {matchLabels: {app: trivy}}
  policyTypes: [Ingress]
  ingress: [{ports: [{port: 4954}]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: sweep, namespace: ocscan-system}
spec:
  schedule: "*/5 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers: [{name: sweep, image: registry.example.com/ocscan:0.1.0}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: agent, namespace: ocscan-system}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: agent}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: ocscan-leader, namespace: ocscan-system}
spec: {holderIdentity: nobody, leaseDurationSeconds: 15}
"""

KINDS = [
    "namespace/ocscan-system",
    "serviceaccount/agent",
    "clusterrole.rbac.authorization.k8s.io/ocscan-reader",
    "clusterrolebinding.rbac.authorization.k8s.io/ocscan-reader",
    "role.rbac.authorization.k8s.io/scanner",
    "rolebinding.rbac.authorization.k8s.io/scanner",
    "configmap/agent-config",
    "deployment.apps/agent",
    "service/trivy",
    "networkpolicy.networking.k8s.io/trivy",
    "cronjob.batch/sweep",
    "poddisruptionbudget.policy/agent",
    "lease.coordination.k8s.io/ocscan-leader",
]


def test_apply_a_deploy_bundle_then_reapply_and_delete(
    kubectl: Kubectl, kube: KubeEmulator
) -> None:
    created = kubectl.run("apply", "-f", "-", stdin=DEPLOY)
    assert created.stdout.splitlines() == [f"{kind} created" for kind in KINDS]
    deployment = kube.store.get(r.DEPLOYMENTS, "ocscan-system", "agent")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "agent"

    again = kubectl.run("apply", "-f", "-", stdin=DEPLOY)
    # kubectl always patches a PDB's selector: its patch strategy is "replace"
    assert again.stdout.splitlines() == [
        f"{kind} {'configured' if kind.startswith('poddisruptionbudget') else 'unchanged'}"
        for kind in KINDS
    ]

    changed = kubectl.run(
        "apply", "-f", "-", stdin=DEPLOY.replace(":0.1.0\n        args", ":0.2.0\n        args")
    )
    assert "deployment.apps/agent configured" in changed.stdout.splitlines()
    container = kube.store.get(r.DEPLOYMENTS, "ocscan-system", "agent")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == "registry.example.com/ocscan:0.2.0"
    assert container["volumeMounts"] == [{"name": "config", "mountPath": "/etc/ocscan"}]

    # The namespace comes first: its controller must leave its content to kubectl for a while
    # (kubectl's client-side rate limit spaces the 13 deletes out).
    kube.store.namespace_deletion_delay = 2
    deleted = kubectl.run("delete", "--wait=false", "-f", "-", stdin=DEPLOY)
    quoted = [kind.split("/")[0] + ' "' + kind.split("/")[1] + '"' for kind in KINDS]
    assert deleted.stdout.splitlines() == [f"{kind} deleted" for kind in quoted]
    assert kube.store.list(r.DEPLOYMENTS) == []
    assert kube.store.list(r.CLUSTER_ROLES, field_selector="metadata.name=ocscan-reader") == []
    deadline = time.monotonic() + 10
    while kube.store.list(r.NAMESPACES, field_selector="metadata.name=ocscan-system"):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_apply_removes_fields_dropped_from_the_manifest(
    kubectl: Kubectl, kube: KubeEmulator
) -> None:
    first = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default, labels: {a: "1", b: "2"}}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "web:1", env: [{name: XA, value: "1"}, {name: YB, value: "2"}]}
      - {name: side, image: "side:1"}
"""
    second = first.replace(', b: "2"', "").replace(', {name: YB, value: "2"}', "")
    second = second.replace('      - {name: side, image: "side:1"}\n', "")
    kubectl.run("apply", "-f", "-", stdin=first)
    kubectl.run("apply", "-f", "-", stdin=second)
    stored = kube.store.get(r.DEPLOYMENTS, "default", "web")
    assert stored["metadata"]["labels"] == {"a": "1"}
    containers = stored["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["env"]) for c in containers] == [("web", [{"name": "XA", "value": "1"}])]


def test_get_json(kubectl: Kubectl, kube: KubeEmulator) -> None:
    kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": "one"}, "data": {"k": "v"}})
    one = json.loads(kubectl.run("get", "configmap", "one", "-n", "default", "-o", "json").stdout)
    assert one["data"] == {"k": "v"}
    assert (
        one["metadata"]["uid"] == kube.store.get(r.CONFIG_MAPS, "default", "one")["metadata"]["uid"]
    )
    listed = json.loads(kubectl.run("get", "cm", "-A", "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["one"]
    missing = kubectl.run("get", "cm", "nope", "-n", "default", check=False)
    assert missing.returncode == 1
    assert 'Error from server (NotFound): configmaps "nope" not found' in missing.stderr


def test_get_human_readable_tables(kubectl: Kubectl, kube: KubeEmulator) -> None:
    kube.store.create(
        r.PODS,
        "default",
        {"metadata": {"name": "web-1"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    )
    table = kubectl.run("get", "pods", "-n", "default").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert table[1].split()[:4] == ["web-1", "0/1", "Pending", "0"]
    wide = kubectl.run("get", "namespaces").stdout.splitlines()
    assert wide[0].split() == ["NAME", "STATUS", "AGE"]
    assert wide[1].split()[:2] == ["default", "Active"]


def test_logs_come_from_the_log_provider(kubectl: Kubectl, kube: KubeEmulator) -> None:
    calls: list[tuple[str, str, str | None, bool]] = []

    def provider(namespace: str, pod: str, container: str | None, follow: bool) -> Iterator[bytes]:
        calls.append((namespace, pod, container, follow))
        yield b"first line\n"
        yield b"second line\nthird line\n"

    kube.register_log_provider(provider)
    kube.store.create(
        r.PODS,
        "default",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"},
                                                            {"name": "d", "image": "i"}]}},
    )  # fmt: skip
    assert kubectl.run("logs", "p", "-c", "d", "-n", "default").stdout == (
        "first line\nsecond line\nthird line\n"
    )
    assert kubectl.run("logs", "p", "-c", "c", "--tail=1", "-n", "default").stdout == "third line\n"
    assert kubectl.run("logs", "-f", "p", "-c", "c", "-n", "default").stdout.count("line") == 3
    assert calls == [("default", "p", "d", False), ("default", "p", "c", False),
                     ("default", "p", "c", True)]  # fmt: skip

    with admin_http(kube) as http:
        ambiguous = http.get("/api/v1/namespaces/default/pods/p/log")
    assert ambiguous.status_code == 400
    assert ambiguous.json()["message"] == (
        "a container name must be specified for pod p, choose one of: [c d]"
    )


def test_create_secret_docker_registry(kubectl: Kubectl, kube: KubeEmulator) -> None:
    canary = "canary-Pa55w0rd!"
    kubectl.run(
        "create", "secret", "docker-registry", "pull", "-n", "default",
        "--docker-server=registry.example.com:5000", "--docker-username=alice",
        f"--docker-password={canary}",
    )  # fmt: skip
    secret = kube.store.get(r.SECRETS, "default", "pull")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    entry = config["auths"]["registry.example.com:5000"]
    assert entry["username"] == "alice" and entry["password"] == canary
    assert base64.b64decode(entry["auth"]).decode() == f"alice:{canary}"
    assert all(canary not in rec.path + rec.query for rec in kube.request_log.records())


def test_broken_dockerconfigjson_is_rejected_without_echoing_it(
    kubectl: Kubectl, kube: KubeEmulator
) -> None:
    canary = "canary-Pa55w0rd!"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "broken", "namespace": "default"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": '{"auths": {"r": {"password": "' + canary + '"'},
    }
    result = kubectl.run("create", "-f", "-", stdin=json.dumps(secret), check=False)
    assert result.returncode != 0
    assert "data[.dockerconfigjson]" in result.stderr
    assert canary not in result.stderr + result.stdout


def test_get_watch_prints_rows(kubectl: Kubectl, kube: KubeEmulator) -> None:
    kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": "before"}})
    later = threading.Timer(
        0.7,
        lambda: kube.store.create(r.CONFIG_MAPS, "default", {"metadata": {"name": "after"}}),
    )
    later.start()
    try:
        watched = kubectl.run("get", "cm", "-n", "default", "-w", "--request-timeout=2s")
    finally:
        later.cancel()
    rows = [line.split()[:2] for line in watched.stdout.splitlines()]
    assert rows == [["NAME", "DATA"], ["before", "0"], ["after", "0"]]
