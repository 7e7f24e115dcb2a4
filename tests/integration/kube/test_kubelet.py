"""The process-running kubelet through the emulator's HTTP API, with lightkube.

Pods of the runnable image run as real local processes (``sh``, ``python``); everything is
observed the way a client sees it: pod status, logs, events.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ConfigMap, Event, Node, Pod, Secret
from polling import eventually

from ocscan.sandbox.kube.cluster import SandboxCluster
from ocscan.sandbox.kube.imagepull import ImagePuller
from ocscan.sandbox.kube.kubelet import KubeletConfig, RunnableImage
from ocscan.sandbox.kube.server import KubeEmulator

RUNNER = "sandbox.local/runner"
PATH = os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"])
NS = "default"


def runner_config(tmp_path: Path, **fast: Any) -> KubeletConfig:
    """A kubelet running the runnable image, with ``fast`` back-offs where a test says so."""
    return KubeletConfig(
        runnable=(RunnableImage(RUNNER, entrypoint=("sh", "-c")),),
        images=ImagePuller(resolve_digest=None, fake_digests=True),
        state_dir=tmp_path / "kubelet",
        path=PATH,
        **fast,
    )


@pytest.fixture
def cluster(kube: KubeEmulator, tmp_path: Path) -> Iterator[SandboxCluster]:
    config = runner_config(tmp_path, backoff=0.2, config_error_backoff=0.2, resync=0.2)
    with SandboxCluster(kube.store, config) as running:
        yield running


def runner_pod(name: str, script: str | None = None, **spec: Any) -> Pod:
    """A pod of the runnable image; its entrypoint is ``sh -c``, ``script`` the argument."""
    container: dict[str, Any] = {"name": "main", "image": f"{RUNNER}:1"}
    if script is not None:
        container["args"] = [script]
    container |= spec.pop("container", {})
    body = {
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }
    return Pod.from_dict(body)


async def pod_status(client: AsyncClient, name: str) -> dict[str, Any]:
    pod = await client.get(Pod, name, namespace=NS)
    status: dict[str, Any] = pod.to_dict().get("status") or {}
    return status


async def finished(client: AsyncClient, name: str, within: float = 15) -> dict[str, Any]:
    status: dict[str, Any] = await eventually(
        lambda: pod_status(client, name),
        lambda s: s.get("phase") in ("Succeeded", "Failed"),
        within,
    )
    return status


def main_state(status: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = status["containerStatuses"][0]["state"]
    return state


async def logs(client: AsyncClient, name: str, container: str | None = None) -> str:
    return "".join([line async for line in client.log(name, namespace=NS, container=container)])


async def test_node_is_registered_and_pods_are_scheduled_to_it(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    node = await client.get(Node, "sandbox-node")
    assert node.metadata is not None and node.metadata.labels is not None
    assert node.metadata.labels["kubernetes.io/hostname"] == "sandbox-node"
    await client.create(runner_pod("hello", "echo hi"))
    status = await finished(client, "hello")
    pod = await client.get(Pod, "hello", namespace=NS)
    assert pod.spec is not None and pod.spec.nodeName == "sandbox-node"
    assert status["phase"] == "Succeeded"
    assert status["podIP"].startswith("10.244.0.")
    assert {c["type"]: c["status"] for c in status["conditions"]}["PodScheduled"] == "True"


async def test_env_from_secret_configmap_fields_and_expansion(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    password = "canary-Pa55-in-secret"
    await client.create(
        Secret.from_dict(
            {
                "metadata": {"name": "creds"},
                "stringData": {"username": "alice", "password": password},
            }
        )
    )
    await client.create(
        ConfigMap.from_dict({"metadata": {"name": "settings"}, "data": {"mode": "fast"}})
    )
    script = (
        'echo "user=$REGISTRY_USER mode=$MODE pod=$POD_NAME ns=$POD_NS node=$NODE '
        'label=$APP greeting=$GREETING"; '
        'printf %s "$REGISTRY_PASSWORD" > /work/password; '
        'echo "sha=$(sha256sum /work/password | cut -d" " -f1)"; '
        'echo "home=$HOME"; env | cut -d= -f1 | sort | tr "\\n" " "'
    )
    pod = runner_pod(
        "env-test",
        script,
        volumes=[{"name": "work", "emptyDir": {}}],
        container={
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            "env": [
                {
                    "name": "REGISTRY_USER",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "username"}},
                },
                {
                    "name": "REGISTRY_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                },
                {
                    "name": "MODE",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
                },
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {
                    "name": "POD_NS",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                },
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {
                    "name": "APP",
                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
                },
                {"name": "GREETING", "value": "hello $(POD_NAME), $$(POD_NAME) $(UNDEFINED)"},
            ],
        },
    )
    assert pod.metadata is not None
    pod.metadata.labels = {"app": "scanner"}
    await client.create(pod)
    status = await finished(client, "env-test")
    output = await logs(client, "env-test")
    assert status["phase"] == "Succeeded", output
    assert (
        "user=alice mode=fast pod=env-test ns=default node=sandbox-node label=scanner "
        "greeting=hello env-test, $(POD_NAME) $(UNDEFINED)"
    ) in output
    assert f"sha={hashlib.sha256(password.encode()).hexdigest()}" in output
    assert password not in output
    # Only the pod's env, PATH, HOME and HOSTNAME: nothing of the emulator's environment.
    names = output.strip().splitlines()[-1].split()
    assert set(names) - {"PWD", "SHLVL", "_"} == {
        "APP", "GREETING", "HOME", "HOSTNAME", "MODE", "NODE", "PATH", "POD_NAME", "POD_NS",
        "REGISTRY_PASSWORD", "REGISTRY_USER",
    }  # fmt: skip
    home = next(line for line in output.splitlines() if line.startswith("home="))[5:]
    assert home != os.environ.get("HOME") and "env-test" in home


async def test_secret_volume_items_and_mode(cluster: SandboxCluster, client: AsyncClient) -> None:
    await client.create(
        Secret.from_dict(
            {"metadata": {"name": "files"}, "stringData": {"user": "alice", "other": "x"}}
        )
    )
    pod = runner_pod(
        "volume-test",
        "ls /creds; stat -c %a /creds/sub/user.txt; cat /creds/sub/user.txt",
        volumes=[
            {
                "name": "creds",
                "secret": {
                    "secretName": "files",
                    "defaultMode": 0o400,
                    "items": [{"key": "user", "path": "sub/user.txt"}],
                },
            }
        ],
        container={"volumeMounts": [{"name": "creds", "mountPath": "/creds"}]},
    )
    await client.create(pod)
    status = await finished(client, "volume-test")
    output = await logs(client, "volume-test")
    assert status["phase"] == "Succeeded", output
    assert output == "sub\n400\nalice\n"  # lightkube ends every line with a newline


async def test_missing_secret_is_create_container_config_error_until_it_appears(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}]
    await client.create(runner_pod("waits", 'echo "token=$TOKEN"', container={"env": env}))
    status = await eventually(
        lambda: pod_status(client, "waits"),
        lambda s: "waiting" in main_state(s) if s.get("containerStatuses") else False,
    )
    assert status["phase"] == "Pending"
    assert main_state(status)["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "late" not found',
    }
    with pytest.raises(ApiError) as caught:
        await logs(client, "waits")
    assert caught.value.status.code == 400
    assert "is waiting to start: CreateContainerConfigError" in str(caught.value.status.message)

    await client.create(
        Secret.from_dict({"metadata": {"name": "late"}, "stringData": {"other": "1"}})
    )
    status = await eventually(
        lambda: pod_status(client, "waits"),
        lambda s: main_state(s).get("waiting", {}).get("message", "").startswith("couldn't"),
    )
    assert main_state(status)["waiting"]["message"] == (
        "couldn't find key token in Secret default/late"
    )

    secret = await client.get(Secret, "late", namespace=NS)
    secret.stringData = {"token": "t0k"}
    await client.replace(secret)
    status = await finished(client, "waits")
    assert status["phase"] == "Succeeded"
    assert await logs(client, "waits") == "token=t0k\n"


async def test_config_error_waits_out_the_back_off_not_for_the_secret(
    kube: KubeEmulator, tmp_path: Path, client: AsyncClient
) -> None:
    """As on a real node: neither the Secret's creation nor status writes wake the pod before
    the sync back-off; an update of the pod (a label) does; deletion never waits."""
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "late", "key": "token"}}}]

    async def config_error(name: str) -> None:
        await eventually(
            lambda: pod_status(client, name),
            lambda s: (
                bool(s.get("containerStatuses"))
                and main_state(s).get("waiting", {}).get("reason") == "CreateContainerConfigError"
            ),
        )

    with SandboxCluster(kube.store, runner_config(tmp_path, config_error_backoff=3600)):
        for name in ("patient", "doomed"):
            await client.create(runner_pod(name, 'echo "token=$TOKEN"', container={"env": env}))
            await config_error(name)
        await client.create(
            Secret.from_dict({"metadata": {"name": "late"}, "stringData": {"token": "t0k"}})
        )
        condition = {"type": "Example", "status": "True"}
        await client.patch(
            Pod.Status, "patient", {"status": {"conditions": [condition]}}, namespace=NS
        )
        await asyncio.sleep(1)
        status = await pod_status(client, "patient")
        assert status["phase"] == "Pending"
        assert main_state(status)["waiting"] == {
            "reason": "CreateContainerConfigError",
            "message": 'secret "late" not found',
        }

        await client.delete(Pod, "doomed", namespace=NS)
        await client.patch(Pod, "patient", {"metadata": {"labels": {"poke": "1"}}}, namespace=NS)
        status = await finished(client, "patient")
        assert status["phase"] == "Succeeded"
        assert await logs(client, "patient") == "token=t0k\n"
        with pytest.raises(ApiError) as caught:
            await client.get(Pod, "doomed", namespace=NS)
        assert caught.value.status.code == 404


async def test_memory_limit_ends_in_oomkilled(cluster: SandboxCluster, client: AsyncClient) -> None:
    grow = "chunks = []\nwhile True:\n    chunks.append(b'x' * 4194304)\n"
    pod = runner_pod(
        "hog",
        container={
            "command": ["python", "-c", grow],
            "args": [],
            "resources": {"limits": {"memory": "64Mi"}},
        },
    )
    await client.create(pod)
    status = await finished(client, "hog", within=30)
    terminated = main_state(status)["terminated"]
    assert status["phase"] == "Failed"
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)


async def test_active_deadline_fails_the_pod_and_kills_the_process(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    started = time.monotonic()
    pod = runner_pod(
        "slow", "echo started; sleep 60", activeDeadlineSeconds=1, terminationGracePeriodSeconds=1
    )
    await client.create(pod)
    status = await finished(client, "slow", within=20)
    assert time.monotonic() - started < 15
    assert (status["phase"], status["reason"]) == ("Failed", "DeadlineExceeded")
    assert status["message"] == "Pod was active on the node longer than the specified deadline"
    assert main_state(status)["terminated"]["exitCode"] == 137
    assert await logs(client, "slow") == "started\n"


async def test_exit_codes_reasons_and_termination_messages(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    await client.create(runner_pod("ok", "exit 0"))
    await client.create(
        runner_pod("fails", "echo 'bad input' > /dev/termination-log; echo noise; exit 3")
    )
    await client.create(
        runner_pod(
            "fallback",
            "echo first; echo last words >&2; exit 2",
            container={"terminationMessagePolicy": "FallbackToLogsOnError"},
        )
    )
    await client.create(runner_pod("missing", container={"command": ["no-such-tool-xyz"]}))
    ok, fails, fallback, missing = [
        await finished(client, name) for name in ("ok", "fails", "fallback", "missing")
    ]
    assert ok["phase"] == "Succeeded"
    assert main_state(ok)["terminated"]["reason"] == "Completed"
    assert fails["phase"] == "Failed"
    terminated = main_state(fails)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert terminated["message"] == "bad input\n"
    assert main_state(fallback)["terminated"]["message"] == "first\nlast words\n"
    terminated = main_state(missing)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (128, "StartError")
    assert 'exec: "no-such-tool-xyz": executable file not found in $PATH' in terminated["message"]
    assert ok["containerStatuses"][0]["imageID"].startswith(f"{RUNNER}@sha256:")


async def test_restart_policy_on_failure_restarts_with_back_off(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    # Fails twice, then succeeds: the count lives in an emptyDir that survives restarts.
    script = "n=$(cat /state/n 2>/dev/null || echo 0); echo $((n+1)) > /state/n; [ $n -ge 2 ]"
    pod = runner_pod(
        "flaky",
        script,
        restartPolicy="OnFailure",
        volumes=[{"name": "state", "emptyDir": {}}],
        container={"volumeMounts": [{"name": "state", "mountPath": "/state"}]},
    )
    await client.create(pod)
    status = await finished(client, "flaky")
    container = status["containerStatuses"][0]
    assert status["phase"] == "Succeeded"
    assert container["restartCount"] == 2
    assert container["lastState"]["terminated"]["exitCode"] == 1


async def test_logs_follow_streams_while_the_container_runs(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    await client.create(runner_pod("talker", "echo one; sleep 0.6; echo two >&2; echo three"))
    await eventually(lambda: pod_status(client, "talker"), lambda s: s.get("phase") == "Running")
    arrivals = []
    async for line in client.log("talker", namespace=NS, follow=True):
        arrivals.append((time.monotonic(), line))
    assert [line for _, line in arrivals] == ["one\n", "two\n", "three\n"]
    assert arrivals[1][0] - arrivals[0][0] > 0.3, "lines arrived only at the end"


LOG_MAX_SIZE = 64 * 1024
# One `seq -f 'line %05g'` line as a record of a CRI log file.
SEQ_RECORD = len("2006-01-02T15:04:05.000000000Z stdout F line 00000\n")


@pytest.fixture
def small_logs_cluster(kube: KubeEmulator, tmp_path: Path) -> Iterator[SandboxCluster]:
    config = runner_config(tmp_path, container_log_max_size=LOG_MAX_SIZE)
    with SandboxCluster(kube.store, config) as running:
        yield running


def seq_lines(first: int, stop: int) -> list[str]:
    return [f"line {number:05d}\n" for number in range(first, stop)]


def current_file_start(count: int) -> int:
    """The first of ``count`` seq lines left in the current file after the last rotation."""
    per_file = -(-LOG_MAX_SIZE // SEQ_RECORD)  # the record that reaches the size rotates
    return count // per_file * per_file


async def test_logs_serve_only_the_current_file_after_a_rotation(
    small_logs_cluster: SandboxCluster, client: AsyncClient
) -> None:
    count = 3000  # about 2.3 times the rotation size
    await client.create(runner_pod("chatty", f"seq -f 'line %05g' 0 {count - 1}"))
    assert (await finished(client, "chatty"))["phase"] == "Succeeded"
    served = await logs(client, "chatty")
    start = current_file_start(count)
    assert 0 < start < count
    assert served.splitlines(keepends=True) == seq_lines(start, count)


async def test_logs_follow_keeps_streaming_across_a_rotation(
    small_logs_cluster: SandboxCluster, client: AsyncClient, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    count = 3000
    script = (
        f"echo ready; while [ ! -e {go} ]; do sleep 0.05; done; seq -f 'line %05g' 0 {count - 1}"
    )
    await client.create(runner_pod("streamer", script))
    await eventually(lambda: pod_status(client, "streamer"), lambda s: s.get("phase") == "Running")
    followed = []
    async for line in client.log("streamer", namespace=NS, follow=True):
        followed.append(line)
        if line == "ready\n":
            go.touch()  # write the burst only once the follow stream is open
    assert followed == ["ready\n", *seq_lines(0, count)]
    current = (await logs(client, "streamer")).splitlines(keepends=True)
    assert 0 < len(current) < count  # rotated: a plain read has only the tail
    assert followed[-len(current) :] == current


async def test_deletion_stops_the_process_then_removes_the_pod(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    handler = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('terminating', flush=True), "
        "time.sleep(0.3), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    pod = runner_pod("graceful", container={"command": ["python", "-c", handler]})
    await client.create(pod)
    await eventually(lambda: logs_or_empty(client, "graceful"), lambda text: "ready" in text)
    await client.delete(Pod, "graceful", namespace=NS)
    deleting = await client.get(Pod, "graceful", namespace=NS)
    assert deleting.metadata is not None
    assert deleting.metadata.deletionTimestamp is not None
    assert deleting.metadata.deletionGracePeriodSeconds == 30

    async def gone() -> bool:
        try:
            await client.get(Pod, "graceful", namespace=NS)
        except ApiError as error:
            return error.status.code == 404
        return False

    await eventually(gone, bool, within=10)
    events = [e async for e in client.list(Event, namespace=NS)]
    assert any(e.reason == "Killing" and e.involvedObject.name == "graceful" for e in events)


async def test_a_pid1_ignoring_sigterm_is_killed_after_the_grace_period(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    await client.create(runner_pod("stubborn", container={"command": ["sleep", "60"]}))
    await eventually(lambda: pod_status(client, "stubborn"), lambda s: s.get("phase") == "Running")
    started = time.monotonic()
    await client.delete(Pod, "stubborn", namespace=NS, grace_period=1)

    async def gone() -> bool:
        try:
            await client.get(Pod, "stubborn", namespace=NS)
        except ApiError:
            return True
        return False

    await eventually(gone, bool, within=10)
    assert 0.9 <= time.monotonic() - started < 8


async def test_stopping_the_kubelet_kills_every_process(
    kube: KubeEmulator, tmp_path: Path, client: AsyncClient
) -> None:
    with SandboxCluster(kube.store, runner_config(tmp_path)):
        await client.create(runner_pod("long", "echo $$$$; sleep 60"))  # $$ escapes a $
        output = await eventually(lambda: logs_or_empty(client, "long"), bool)
        pid = int(output.strip())
        assert not _gone(pid)
    deadline = time.monotonic() + 5
    while not _gone(pid):
        assert time.monotonic() < deadline, "the container process survived the kubelet"
        await asyncio.sleep(0.05)


async def logs_or_empty(client: AsyncClient, name: str) -> str:
    try:
        return await logs(client, name)
    except ApiError:
        return ""


def _gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs (absent, or a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


async def test_init_containers_run_first_and_a_failed_one_fails_the_pod(
    cluster: SandboxCluster, client: AsyncClient
) -> None:
    shared = {
        "volumes": [{"name": "shared", "emptyDir": {}}],
        "initContainers": [
            {
                "name": "prepare",
                "image": f"{RUNNER}:1",
                "args": ["echo prepared > /shared/flag"],
                "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            }
        ],
    }
    await client.create(
        runner_pod(
            "initialized",
            "cat /shared/flag",
            container={"volumeMounts": [{"name": "shared", "mountPath": "/shared"}]},
            **shared,
        )
    )
    status = await finished(client, "initialized")
    assert status["phase"] == "Succeeded"
    init = status["initContainerStatuses"][0]
    assert init["state"]["terminated"]["reason"] == "Completed"
    assert (init["ready"], init["started"]) == (True, False)
    assert await logs(client, "initialized") == "prepared\n"

    failing = {"name": "prepare", "image": f"{RUNNER}:1", "args": ["exit 5"]}
    await client.create(runner_pod("not-initialized", "echo never", initContainers=[failing]))
    status = await finished(client, "not-initialized")
    assert status["phase"] == "Failed"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 5
    waiting = main_state(status)["waiting"]
    assert waiting["reason"] == "PodInitializing"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Initialized"]["status"] == "False"
