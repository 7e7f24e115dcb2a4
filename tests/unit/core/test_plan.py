"""Planning: one target per running digest, credentials scoped to each image's registry."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from ocscan.kube.workloads import ContainerSnapshot, OwnerLink, PodSnapshot
from ocscan.registry.platform import Platform
from ocscan.report.consolidate import consolidate
from ocscan.scan.failure import FailureKind, ScanFailure
from ocscan.scan.outcome import ScanOutcome
from ocscan.scan.plan import plan_scans, pull_secret_keys

CANARY = "canary-pw-9c1d"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def dockerconfig_secret(name: str, auths: dict[str, tuple[str, str]]) -> dict[str, Any]:
    document = {
        "auths": {
            key: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()}
            for key, (u, p) in auths.items()
        }
    }
    return {
        "metadata": {"name": name, "namespace": "shop"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(document).encode()).decode()},
    }


def pod(
    name: str,
    containers: list[tuple[str, str, str | None]],
    *,
    owner: OwnerLink | None = None,
    secrets: tuple[str, ...] = (),
    service_account: str = "default",
) -> PodSnapshot:
    return PodSnapshot(
        namespace="shop",
        name=name,
        owner=owner,
        service_account=service_account,
        pull_secret_names=secrets,
        containers=tuple(
            ContainerSnapshot(c, "container", image, image_id) for c, image, image_id in containers
        ),
    )


def replicas(deployment: str, count: int, image: str, digest: str) -> list[PodSnapshot]:
    owner = OwnerLink("ReplicaSet", f"{deployment}-rs")
    return [
        pod(
            f"{deployment}-{i}",
            [("app", image, f"{image.split(':')[0]}@{digest}")],
            owner=owner,
            secrets=("pull",),
        )
        for i in range(count)
    ]


OWNERS = {
    ("shop", "ReplicaSet", "web-rs"): OwnerLink("Deployment", "web"),
    ("shop", "ReplicaSet", "api-rs"): OwnerLink("Deployment", "api"),
}
SECRETS = {("shop", "pull"): dockerconfig_secret("pull", {"reg.a:5000": ("alice", CANARY)})}


def test_same_digest_in_two_deployments_is_one_target() -> None:
    pods = replicas("web", 5, "reg.a:5000/team/app:1", DIGEST_A)
    pods += replicas("api", 2, "reg.a:5000/team/app:1", DIGEST_A)
    plan = plan_scans(pods, OWNERS, {}, SECRETS)
    (target,) = plan.targets
    assert str(target.reference) == f"reg.a:5000/team/app@{DIGEST_A}"
    assert {(u.workload.name, u.container) for u in target.uses} == {("web", "app"), ("api", "app")}
    assert len(target.uses) == 7  # one per pod; the report folds replicas
    assert [m.source for m in target.credentials] == ["shop/pull"]


def test_credentials_never_cross_registries() -> None:
    secrets = {
        ("shop", "both"): dockerconfig_secret(
            "both", {"reg.a:5000": ("alice", "pw-a"), "reg.b:5000": ("bob", "pw-b")}
        )
    }
    two = pod(
        "p", [("a", "reg.a:5000/x:1", None), ("b", "reg.b:5000/y:1", None)], secrets=("both",)
    )
    plan = plan_scans([two], {}, {}, secrets)
    by_registry = {t.reference.registry: t for t in plan.targets}
    for registry, user in (("reg.a:5000", "alice"), ("reg.b:5000", "bob")):
        (match,) = by_registry[registry].credentials
        assert match.credential.reveal()[0] == user
        assert match.key == registry


def test_service_account_secrets_apply_only_when_the_pod_lists_none() -> None:
    accounts = {("shop", "builder"): ("sa-pull",)}
    secrets = {
        ("shop", "sa-pull"): dockerconfig_secret("sa-pull", {"reg.a:5000": ("sa", "x")}),
        ("shop", "pull"): dockerconfig_secret("pull", {"reg.a:5000": ("pod", "y")}),
    }
    via_sa = pod("p1", [("c", "reg.a:5000/x:1", None)], service_account="builder")
    own = pod("p2", [("c", "reg.a:5000/z:1", None)], service_account="builder", secrets=("pull",))
    assert pull_secret_keys([via_sa, own], accounts) == {("shop", "sa-pull"), ("shop", "pull")}
    plan = plan_scans([via_sa, own], {}, accounts, secrets)
    users = {t.reference.repository: t.credentials[0].credential.reveal()[0] for t in plan.targets}
    assert users == {"x": "sa", "z": "pod"}


def test_missing_and_unreadable_secrets_are_recorded() -> None:
    p = pod("p", [("c", "reg.a:5000/x:1", None)], secrets=("gone", "locked"))
    plan = plan_scans([p], {}, {}, {("shop", "gone"): None}, {("shop", "locked"): "forbidden"})
    (target,) = plan.targets
    (use,) = target.uses
    kinds = {(problem.secret, problem.kind) for problem in use.problems}
    assert kinds == {("shop/gone", "secret_missing"), ("shop/locked", "secret_invalid")}
    assert target.credentials == []


def test_same_digest_with_other_credentials_is_scanned_again() -> None:
    # A stale password must be tried for real: sharing web's working scan would hide it.
    stale = {("shop", "stale"): dockerconfig_secret("stale", {"reg.a:5000": ("alice", "expired")})}
    image = "reg.a:5000/team/app:1"
    running = f"reg.a:5000/team/app@{DIGEST_A}"
    pods = replicas("web", 2, image, DIGEST_A)
    pods.append(pod("legacy-0", [("app", image, running)], secrets=("stale",)))
    pods.append(pod("orphan-0", [("app", image, running)], secrets=("deleted",)))
    pods.append(pod("public-0", [("app", image, running)]))
    plan = plan_scans(pods, OWNERS, {}, {**SECRETS, **stale})
    assert len(plan.targets) == 3  # web's credentials, the stale ones, none at all
    anonymous = next(t for t in plan.targets if not t.credentials)
    problems = {u.pod: [p.kind for p in u.problems] for u in anonymous.uses}
    assert problems == {"orphan-0": ["secret_missing"], "public-0": []}


def test_the_same_credentials_in_two_secrets_share_one_scan() -> None:
    twin = {("shop", "copy"): dockerconfig_secret("copy", {"reg.a:5000": ("alice", CANARY)})}
    image = "reg.a:5000/team/app:1"
    pods = [
        pod("a", [("app", image, f"reg.a:5000/team/app@{DIGEST_A}")], secrets=("pull",)),
        pod("b", [("app", image, f"reg.a:5000/team/app@{DIGEST_A}")], secrets=("copy",)),
    ]
    assert len(plan_scans(pods, {}, {}, {**SECRETS, **twin}).targets) == 1


def test_running_digest_wins_over_the_tag_and_missing_digest_falls_back() -> None:
    running = pod("p", [("c", "reg.a:5000/x:1", f"docker-pullable://reg.a:5000/x@{DIGEST_B}")])
    pending = pod("q", [("c", "reg.a:5000/x:2", None)])
    keys = {t.key for t in plan_scans([running, pending], {}, {}, {}).targets}
    assert keys == {f"reg.a:5000/x@{DIGEST_B}", "reg.a:5000/x:2"}


def test_invalid_reference_is_unplanned_with_a_reason() -> None:
    plan = plan_scans([pod("p", [("c", "Reg/UPPER:1", None)])], {}, {}, {})
    (unplanned,) = plan.unplanned
    assert "Reg/UPPER:1" in unplanned.reason


def _report(plan: Any, outcome: ScanOutcome) -> str:
    now = datetime.now(UTC)
    report = consolidate(
        plan,
        {t.key: outcome for t in plan.targets},
        started_at=now,
        finished_at=now,
        namespaces={"shop"},
    )
    return report.model_dump_json()


def test_auth_failure_names_the_secrets_tried_and_never_the_password() -> None:
    pods = replicas("web", 2, "reg.a:5000/team/app:1", DIGEST_A)
    plan = plan_scans(pods, OWNERS, {}, SECRETS)
    outcome = ScanOutcome(
        failure=ScanFailure(kind=FailureKind.AUTH, message="UNAUTHORIZED: authentication required"),
        attempts=["secret shop/pull (key reg.a:5000)"],
    )
    text = _report(plan, outcome)
    assert CANARY not in text and "alice" not in text
    document = json.loads(text)
    (workload,) = document["workloads"]
    (container,) = workload["containers"]  # five replicas, one container entry
    assert container["status"] == "auth"
    assert "shop/pull" in container["error"]["message"]
    assert "UNAUTHORIZED" in container["error"]["message"]
    assert document["cycle"]["namespaces"] == {"shop": False}


def test_auth_failure_after_a_missing_secret_is_secret_missing() -> None:
    plan = plan_scans(
        [pod("p", [("c", "reg.a:5000/x:1", None)], secrets=("gone",))],
        {},
        {},
        {("shop", "gone"): None},
    )
    outcome = ScanOutcome(
        failure=ScanFailure(kind=FailureKind.AUTH, message="UNAUTHORIZED"),
        attempts=["no credentials"],
    )
    container = json.loads(_report(plan, outcome))["workloads"][0]["containers"][0]
    assert container["status"] == "secret_missing"
    assert "shop/gone" in container["error"]["message"]


def test_unscanned_target_counts_as_timeout() -> None:
    plan = plan_scans([pod("p", [("c", "reg.a:5000/x:1", None)])], {}, {}, {})
    now = datetime.now(UTC)
    report = consolidate(plan, {}, started_at=now, finished_at=now, namespaces={"shop"})
    assert report.workloads[0].containers[0].status == "timeout"
    assert report.cycle.by_status == {"timeout": 1}


def test_messages_with_brackets_are_shown_as_they_are() -> None:
    from rich.console import Console

    from ocscan.report.table import print_report

    plan = plan_scans([pod("p", [("c", "reg.a:5000/x:1", None)])], {}, {}, {})
    weird = "UNAUTHORIZED: [map[Action:pull]] [/x] [bold]"
    outcome = ScanOutcome(failure=ScanFailure(kind=FailureKind.AUTH, message=weird))
    now = datetime.now(UTC)
    report = consolidate(plan, {t.key: outcome for t in plan.targets}, started_at=now,
                         finished_at=now, namespaces={"shop"})  # fmt: skip
    console = Console(width=300, record=True)
    print_report(report, console)
    assert weird in console.export_text()


AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")
NODES = {"node-x86": AMD64, "node-arm": ARM64}


def on_node(snapshot: PodSnapshot, node: str | None) -> PodSnapshot:
    return dataclasses.replace(snapshot, node=node)


def test_one_index_digest_on_two_platforms_is_two_targets() -> None:
    # A tag of a multi-platform image resolves to the index digest on every node; each node
    # runs its own platform's entry, so each platform is scanned on its own.
    web = replicas("web", 3, "reg.a:5000/team/app:1", DIGEST_A)
    nodes = ["node-x86", "node-arm", "node-x86"]
    pods = [on_node(p, node) for p, node in zip(web, nodes, strict=True)]
    api = replicas("api", 1, "reg.a:5000/team/app:1", DIGEST_A)
    pods += [on_node(p, "node-arm") for p in api]

    plan = plan_scans(pods, OWNERS, {}, SECRETS, node_platforms=NODES)

    amd, arm = sorted(plan.targets, key=lambda t: str(t.platform))
    assert (amd.platform, arm.platform) == (AMD64, ARM64)
    assert amd.reference == arm.reference and amd.key != arm.key
    assert {u.pod for u in amd.uses} == {"web-0", "web-2"}
    assert {u.pod for u in arm.uses} == {"web-1", "api-0"}
    assert [m.credential.identity for m in amd.credentials] == [
        m.credential.identity for m in arm.credentials
    ]


def test_pods_without_a_known_node_platform_get_the_scanners_default() -> None:
    pods = [
        on_node(replicas("web", 1, "reg.a:5000/team/app:1", DIGEST_A)[0], None),  # unscheduled
        on_node(replicas("api", 1, "reg.a:5000/team/app:1", DIGEST_A)[0], "node-gone"),
    ]

    plan = plan_scans(pods, OWNERS, {}, SECRETS, node_platforms=NODES)

    (target,) = plan.targets
    assert target.platform is None
    assert "for" not in target.key  # the key names a platform only when there is one
    assert {u.pod for u in target.uses} == {"web-0", "api-0"}


def test_a_daemonset_on_two_platforms_reports_each_platform() -> None:
    owner = OwnerLink("DaemonSet", "agent")
    image = ("app", "reg.a:5000/team/app:1", f"reg.a:5000/team/app@{DIGEST_A}")
    pods = [
        on_node(pod(f"agent-{node}", [image], owner=owner, secrets=("pull",)), node)
        for node in NODES
    ]
    plan = plan_scans(pods, {}, {}, SECRETS, node_platforms=NODES)
    outcomes = {target.key: ScanOutcome() for target in plan.targets}
    now = datetime.now(UTC)
    report = consolidate(plan, outcomes, started_at=now, finished_at=now, namespaces={"shop"})

    (workload,) = report.workloads
    assert [(c.name, c.platform) for c in workload.containers] == [
        ("app", "linux/amd64"),
        ("app", "linux/arm64"),
    ]
    assert report.cycle.images == 1 and report.cycle.scan_targets == 2


def test_a_container_on_a_windows_node_is_reported_unscanned_not_clean() -> None:
    nodes = {**NODES, "node-win": Platform("windows", "amd64")}
    pods = [on_node(p, "node-win") for p in replicas("web", 1, "reg.a:5000/team/app:1", DIGEST_A)]
    pods += [on_node(p, "node-x86") for p in replicas("api", 1, "reg.a:5000/team/app:1", DIGEST_A)]

    plan = plan_scans(pods, OWNERS, {}, SECRETS, node_platforms=nodes)

    (target,) = plan.targets
    assert target.platform == AMD64 and {u.pod for u in target.uses} == {"api-0"}
    (skipped,) = plan.unplanned
    assert (skipped.use.pod, skipped.kind) == ("web-0", "scanner_error")
    assert "Trivy scans Linux images only" in skipped.reason
    assert "node node-win, a windows/amd64 node" in skipped.reason
