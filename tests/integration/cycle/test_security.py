"""Credentials stay with their registry, never show anywhere, and never outlive a scan."""

from __future__ import annotations

import base64
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cycle_support import ObjectRecorder, container, run, sandbox_config

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.registry import RegistryServer, SilentRegistry
from ocscan.sandbox.samples import push_sample
from ocscan.sandbox.stack import REGISTRY_USER, Sandbox, deployment, docker_config_secret
from ocscan.sandbox.trivydb import SAMPLE_APP, SAMPLE_MINIMAL
from scanner_objects import managed_objects

BOB_PASSWORD = "bob-only-for-registry-b"


@pytest.fixture
def registry_b(tmp_path: Path, sandbox: Sandbox) -> Iterator[RegistryServer]:
    with RegistryServer.start(tmp_path / "registry-b", {"bob": BOB_PASSWORD}) as registry:
        sandbox.add_registry(registry.address)
        yield registry


def test_each_container_is_scanned_with_its_own_registrys_credentials_only(
    sandbox: Sandbox, registry_b: RegistryServer, scratch_namespace: str
) -> None:
    assert sandbox.registry is not None
    registry_a = sandbox.registry
    image_b = push_sample(registry_b, SAMPLE_MINIMAL, RegistryCredential.of("bob", BOB_PASSWORD))
    namespace = scratch_namespace
    # One secret holding both registries' credentials, as teams often do.
    both = docker_config_secret("both", namespace, registry_a.address, REGISTRY_USER,
                                sandbox.registry_password)  # fmt: skip
    document = json.loads(base64.b64decode(both["data"][".dockerconfigjson"]))
    document["auths"][registry_b.address] = {"username": "bob", "password": BOB_PASSWORD}
    both["data"][".dockerconfigjson"] = base64.b64encode(json.dumps(document).encode()).decode()
    sandbox.apply(both)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "duo", "namespace": namespace},
        "spec": {
            "imagePullSecrets": [{"name": "both"}],
            "containers": [
                {"name": "a", "image": sandbox.image(SAMPLE_APP.repository).reference},
                {"name": "b", "image": image_b.reference},
            ],
        },
    }
    sandbox.apply(pod)
    sandbox.wait_for_running(namespace, 1)
    # Look only at what this test makes the registries log (the sandbox's is shared).
    start_a, start_b = len(registry_a.log_text()), len(registry_b.log_text())
    # The registries log user names on failed logins: prove it before relying on it.
    probe = RegistryCredential.of("probe-user", "wrong")
    for registry in (registry_a, registry_b):
        with pytest.raises(Exception):  # noqa: B017 - any refusal will do
            push_sample(registry, SAMPLE_MINIMAL, probe, tag="probe")
        assert "probe-user" in registry.failed_login_users()

    report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": [namespace]}))

    (workload,) = report.workloads
    statuses = {c.name: (c.status, c.digest) for c in workload.containers}
    assert statuses == {
        "a": ("scanned", sandbox.image(SAMPLE_APP.repository).digest),
        "b": ("scanned", image_b.digest),
    }
    log_a, log_b = registry_a.log_text()[start_a:], registry_b.log_text()[start_b:]
    assert "bob" not in log_a
    assert f'"{REGISTRY_USER}"' not in log_b and "probe-user" in log_b


def test_canary_passwords_never_appear_in_specs_events_logs_or_output(
    sandbox: Sandbox,
    recorder: ObjectRecorder,
    caplog: pytest.LogCaptureFixture,
    scratch_namespace: str,
) -> None:
    canaries = [sandbox.registry_password]
    stale = "canary-" + "7f3e9a1c"
    sandbox.pull_secret("stale", scratch_namespace, password=stale)
    canaries.append(stale)
    image = sandbox.image(SAMPLE_APP.repository).reference
    sandbox.apply(deployment("good", scratch_namespace, image, pull_secrets=["registry-pull"]))
    sandbox.apply(deployment("bad", scratch_namespace, image, pull_secrets=["stale"]))
    sandbox.wait_for_running(scratch_namespace, 2)
    config = sandbox_config(
        sandbox, targets={"namespaces": [scratch_namespace]}, scanner={"keep_failed_pods": True}
    )
    with caplog.at_level(logging.DEBUG):
        report = run(sandbox, config)
    output = report.model_dump_json()
    assert container(report, scratch_namespace, "bad").status == "auth"
    assert container(report, scratch_namespace, "good").status == "scanned"
    # The failed scanner pod was kept: its spec and log are there to read.
    assert sandbox.kube is not None
    store = sandbox.kube.store
    pods_type = store.registry.for_kind("v1", "Pod")
    assert pods_type is not None
    (kept,) = store.list(pods_type, "ocscan", label_selector="app.kubernetes.io/component=scanner")
    provider = store.log_provider
    assert provider is not None
    scanner_log = b"".join(provider("ocscan", kept["metadata"]["name"], "scanner", False))
    assert b"UNAUTHORIZED" in scanner_log  # it is the real log
    # Every version of every object but Secrets, every event, log line and output.
    texts = {
        "objects": "\n".join(text for kind, text in recorder.versions if kind != "Secret"),
        "scanner pod log": scanner_log.decode(errors="replace"),
        "agent log": caplog.text,
        "report": output,
    }
    assert {"Job", "Pod", "Event"} <= recorder.kinds()
    for canary in canaries:
        for where, text in texts.items():
            assert canary not in text, f"canary found in {where}"
    # Temporary Secrets held exactly the registry's username and password, nothing more.
    temporary = [
        json.loads(text)
        for text in recorder.of_kind("Secret")
        if '"app.kubernetes.io/component": "credentials"' in text
    ]
    assert temporary
    assert all(set(s.get("data", {})) == {"TRIVY_USERNAME", "TRIVY_PASSWORD"} for s in temporary)
    run(sandbox, sandbox_config(sandbox, targets={"namespaces": ["batch"]}))  # sweeps the kept pod
    assert managed_objects(sandbox) == []


def test_a_scanner_pod_is_created_only_once_its_secret_exists(
    sandbox: Sandbox, recorder: ObjectRecorder
) -> None:
    """Job suspended, Secret owned by it, Job resumed: the pod never waits for its Secret.

    (A pod that met a missing Secret would wait out the kubelet's retry back-off.)
    """
    start = len(recorder.versions)
    report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": ["shop"]}))
    assert container(report, "shop", "web").status == "scanned"

    secrets_seen: set[str] = set()
    first_job_versions: dict[str, dict[str, object]] = {}
    credentialed_pods = 0
    for kind, text in recorder.versions[start:]:
        obj = json.loads(text)
        meta = obj["metadata"]
        if meta.get("namespace") != "ocscan":
            continue
        if kind == "Secret":
            secrets_seen.add(meta["name"])
        elif kind == "Job":
            first_job_versions.setdefault(meta["name"], obj["spec"])
        elif kind == "Pod" and "ocscan.io/scan" in (meta.get("labels") or {}):
            scan = meta["labels"]["ocscan.io/scan"]
            env = obj["spec"]["containers"][0]["env"]
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e}
            if scan in refs:
                credentialed_pods += 1
                assert scan in secrets_seen, f"pod of {scan} created before its Secret"
                assert first_job_versions[scan]["suspend"] is True
    assert credentialed_pods >= 2  # web and api; legacy's stale password too
    pods = [text for kind, text in recorder.versions[start:] if kind == "Pod"]
    waited = [text for text in pods if '"namespace": "ocscan"' in text]
    assert not [text for text in waited if "CreateContainerConfigError" in text]


def test_an_agent_killed_mid_scan_leaves_no_secret_after_the_next_cycle(
    sandbox: Sandbox, scratch_namespace: str, tmp_path: Path
) -> None:
    hanging = SilentRegistry()
    try:
        namespace = scratch_namespace
        # The kubelet does not serve this registry: the pod runs with a fake digest.
        sandbox.apply(docker_config_secret("slow", namespace, hanging.address, "slowpoke", "pw"))
        image = f"{hanging.address}/team/app:1.0"
        sandbox.apply(deployment("slow", namespace, image, pull_secrets=["slow"]))
        sandbox.wait_for_running(namespace, 1)
        config_file = tmp_path / "ocscan.yaml"
        config = sandbox.ocscan_config()
        config["targets"] = {"namespaces": [namespace]}
        config_file.write_text(yaml.safe_dump(config))
        # The Secret lives only until the scanner starts: refuse its deletion so that the
        # kill below certainly lands while it exists.
        assert sandbox.kube is not None
        held = sandbox.kube.faults.fail(verb="delete", resource="secrets", namespace="ocscan")
        agent = subprocess.Popen(
            [sys.executable, "-m", "ocscan", "scan", "--kubeconfig", str(sandbox.kubeconfig),
             "--config", str(config_file), "--format", "json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while not any(name.startswith("Secret/") for name in managed_objects(sandbox)):
                assert agent.poll() is None, agent.stderr.read() if agent.stderr else ""
                assert time.monotonic() < deadline, "no temporary Secret appeared"
                time.sleep(0.02)
            agent.send_signal(signal.SIGKILL)
            agent.wait(10)
        finally:
            sandbox.kube.faults.remove(held)
            if agent.poll() is None:
                agent.kill()
                agent.wait()
        left = managed_objects(sandbox)
        assert any(name.startswith("Secret/") for name in left)  # the crash left it behind
        # The Secret is owned by its Job from birth: nothing unowned even after a crash.
        assert sandbox.kube is not None
        store = sandbox.kube.store
        secret_type = store.registry.for_kind("v1", "Secret")
        assert secret_type is not None
        for name in left:
            if name.startswith("Secret/"):
                secret = store.get(secret_type, "ocscan", name.removeprefix("Secret/"))
                (owner,) = secret["metadata"]["ownerReferences"]
                assert owner["kind"] == "Job" and owner["name"] == name.removeprefix("Secret/")
                assert f"Job/{owner['name']}" in left

        report = run(sandbox, sandbox_config(sandbox, targets={"namespaces": ["batch"]}))

        assert report.cycle.swept >= 1
        assert managed_objects(sandbox) == []
    finally:
        hanging.close()
