"""What the kubelet computes before starting a container: expansion, env, volumes, mounts."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ocscan.sandbox.kube.containerconfig import (
    ConfigError,
    MountError,
    MountTable,
    container_env,
    container_mounts,
    expand,
    field_value,
    memory_limit_bytes,
    mount_volumes,
    parse_quantity,
)
from ocscan.sandbox.kube.imagepull import ImagePuller, ImagePullError, fake_digest
from ocscan.sandbox.kube.kubelet import RunnableImage

VARIABLES = {"VAR_A": "A", "VAR_B": "B", "VAR_EMPTY": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-$(VAR_B)", "A-B"),
        ("$(VAR_EMPTY)x", "x"),
        ("$(UNKNOWN)", "$(UNKNOWN)"),
        ("$$(VAR_A)", "$(VAR_A)"),
        ("$$$(VAR_A)", "$A"),
        ("$$", "$"),
        ("$(VAR_A", "$(VAR_A"),
        ("$VAR_A", "$VAR_A"),
        ("$", "$"),
        ("x$", "x$"),
        ("$()", "$()"),
        ("echo $$HOME", "echo $HOME"),
    ],
)
def test_expansion_follows_the_kubelet(text: str, expected: str) -> None:
    assert expand(text, VARIABLES) == expected


@pytest.mark.parametrize(
    ("quantity", "value"),
    [("64Mi", 64 * 2**20), ("1Gi", 2**30), ("500m", Decimal("0.5")), ("1e3", 1000),
     ("128974848", 128974848), ("129M", 129_000_000), ("0.5Gi", 2**29)],
)  # fmt: skip
def test_quantities(quantity: str, value: Decimal | int) -> None:
    assert parse_quantity(quantity) == value


def test_bad_quantity_is_an_error() -> None:
    with pytest.raises(ValueError, match="quantities must match"):
        parse_quantity("64 MB")


def test_memory_limit_rounds_up_to_bytes() -> None:
    assert memory_limit_bytes({"resources": {"limits": {"memory": "1.5k"}}}) == 1500
    assert memory_limit_bytes({"resources": {}}) is None


def secret(**data: str) -> dict[str, Any]:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def lookup_from(objects: dict[tuple[str, str], dict[str, Any]]) -> Any:
    return lambda kind, namespace, name: objects.get((kind, name))


POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
    "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
    "status": {"podIP": "10.244.0.9", "podIPs": [{"ip": "10.244.0.9"}]},
}


def test_env_sources_in_order_with_expansion() -> None:
    objects = {
        ("secrets", "s"): secret(password="pw", user="alice"),
        ("configmaps", "cm"): {"data": {"MODE": "fast", "bad-name!": "x", "1X": "y"}},
    }
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CFG_"}],
        "env": [
            {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "s", "key": "user"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "URL", "value": "http://$(USER)@$(IP)/$(LATER)"},
            {"name": "LATER", "value": "late"},
            {"name": "EMPTY"},
        ],
    }
    env = container_env(POD, container, lookup_from(objects))
    assert env == {
        "CFG_MODE": "fast",
        "CFG_1X": "y",
        "USER": "alice",
        "IP": "10.244.0.9",
        "URL": "http://alice@10.244.0.9/$(LATER)",  # only variables defined before expand
        "LATER": "late",
        "EMPTY": "",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}],
         'secret "gone" not found'),
        ([{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nokey"}}}],
         "couldn't find key nokey in Secret ns/s"),
        ([{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}],
         'configmap "gone" not found'),
    ],
)  # fmt: skip
def test_missing_sources_are_config_errors_in_the_kubelets_words(
    env: list[dict[str, Any]], message: str
) -> None:
    lookup = lookup_from({("secrets", "s"): secret(user="alice")})
    with pytest.raises(ConfigError) as caught:
        container_env(POD, {"env": env}, lookup)
    assert caught.value.message == message


def test_optional_sources_may_be_missing() -> None:
    env = [
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": True}}}
    ]
    assert container_env(POD, {"env": env, "envFrom": [
        {"secretRef": {"name": "gone", "optional": True}}]}, lookup_from({})) == {}  # fmt: skip


def test_field_paths() -> None:
    assert field_value(POD, "metadata.uid") == "u-1"
    assert field_value(POD, "spec.nodeName") == "n1"
    assert field_value(POD, "metadata.labels['app']") == "x"
    assert field_value(POD, "metadata.labels['absent']") == ""
    assert field_value(POD, "metadata.labels") == 'app="x"'
    with pytest.raises(ConfigError, match="unsupported fieldPath"):
        field_value(POD, "spec.containers")


def test_secret_volume_with_items_and_modes(tmp_path: Path) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "volumes": [
                {"name": "all", "secret": {"secretName": "s"}},
                {
                    "name": "some",
                    "secret": {
                        "secretName": "s",
                        "defaultMode": 0o440,
                        "items": [
                            {"key": "user", "path": "dir/u"},
                            {"key": "password", "path": "p", "mode": 0o400},
                        ],
                    },
                },
                {"name": "cache", "emptyDir": {}},
            ]
        },
    }
    lookup = lookup_from({("secrets", "s"): secret(user="alice", password="pw")})
    paths = mount_volumes(pod, tmp_path, lookup, lambda *args: "token")
    assert (paths["all"] / "user").read_text() == "alice"
    assert (paths["all"] / "password").stat().st_mode & 0o777 == 0o644
    assert (paths["some"] / "dir" / "u").stat().st_mode & 0o777 == 0o440
    assert (paths["some"] / "p").stat().st_mode & 0o777 == 0o400
    assert not (paths["some"] / "user").exists()
    assert list(paths["cache"].iterdir()) == []


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"secret": {"secretName": "gone"}},
         'MountVolume.SetUp failed for volume "v" : secret "gone" not found'),
        ({"secret": {"secretName": "s", "items": [{"key": "nokey", "path": "x"}]}},
         'MountVolume.SetUp failed for volume "v" : secret references non-existent secret '
         "key: nokey"),
        ({"configMap": {"name": "s2", "items": [{"key": "nokey", "path": "x"}]}},
         'MountVolume.SetUp failed for volume "v" : configmap references non-existent config '
         "key: nokey"),
        ({"secret": {"secretName": "s", "items": [{"key": "user", "path": "../escape"}]}},
         "invalid path '../escape'"),
        ({"hostPath": {"path": "/etc"}}, "not supported by the sandbox kubelet"),
    ],
)  # fmt: skip
def test_volume_errors(tmp_path: Path, volume: dict[str, Any], message: str) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"volumes": [{"name": "v"} | volume]},
    }
    lookup = lookup_from({("secrets", "s"): secret(user="a"), ("configmaps", "s2"): {"data": {}}})
    with pytest.raises(MountError) as caught:
        mount_volumes(pod, tmp_path, lookup, lambda *args: "token")
    assert message in caught.value.message
    assert not (tmp_path.parent / "escape").exists()


def test_projected_volume_with_token_configmap_and_downward_api(tmp_path: Path) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {
            "serviceAccountName": "sa",
            "volumes": [
                {
                    "name": "api",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}},
                            {"configMap": {"name": "ca", "items": [
                                {"key": "ca.crt", "path": "ca.crt"}]}},
                            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                                "fieldPath": "metadata.namespace"}}]}},
                        ]
                    },
                }
            ],
        },
    }  # fmt: skip
    minted: list[tuple[Any, ...]] = []

    def token(*args: Any) -> str:
        minted.append(args)
        return "tok"

    lookup = lookup_from({("configmaps", "ca"): {"data": {"ca.crt": "PEM"}}})
    directory = mount_volumes(pod, tmp_path, lookup, token)["api"]
    assert (directory / "token").read_text() == "tok"
    assert (directory / "ca.crt").read_text() == "PEM"
    assert (directory / "namespace").read_text() == "ns"
    assert minted == [("ns", "sa", "", 600)]


def test_mount_paths_are_rewritten_only_as_whole_paths(tmp_path: Path) -> None:
    table = MountTable.of(
        [("/cache", tmp_path / "c"), ("/cache/db", tmp_path / "db"), ("/", tmp_path / "root")]
    )
    assert table.rewrite("/cache") == str(tmp_path / "c")
    assert table.rewrite("/cache/x/y") == f"{tmp_path / 'c'}/x/y"
    assert table.rewrite("/cache/db/trivy.db") == f"{tmp_path / 'db'}/trivy.db"
    assert table.rewrite("--cache-dir=/cache") == f"--cache-dir={tmp_path / 'c'}"
    assert table.rewrite("cat /cache/a > '/cache/b'") == (
        f"cat {tmp_path / 'c'}/a > '{tmp_path / 'c'}/b'"
    )
    assert table.rewrite("/cachefoo /x/cache http://h/cache") == "/cachefoo /x/cache http://h/cache"
    assert table.host_path("/cache/db/x") == tmp_path / "db" / "x"
    assert table.host_path("/elsewhere") is None


def test_container_mounts_include_sub_paths_and_the_termination_log(tmp_path: Path) -> None:
    container = {
        "volumeMounts": [{"name": "v", "mountPath": "/etc/app/config.yaml", "subPath": "c.yaml"}],
        "terminationMessagePath": "/tmp/done",
    }
    table = container_mounts(container, {"v": tmp_path / "v"}, tmp_path / "log")
    assert table.host_path("/etc/app/config.yaml") == tmp_path / "v" / "c.yaml"
    assert table.rewrite("/tmp/done") == str(tmp_path / "log")
    with pytest.raises(ConfigError, match='cannot find volume "w"'):
        container_mounts({"volumeMounts": [{"name": "w", "mountPath": "/w"}]}, {}, tmp_path)


@pytest.mark.parametrize(
    ("entry", "image", "runs"),
    [
        ("ghcr.io/aquasecurity/trivy", "ghcr.io/aquasecurity/trivy:0.76.0", True),
        ("ghcr.io/aquasecurity/trivy", "ghcr.io/aquasecurity/trivy@sha256:" + "a" * 64, True),
        ("ghcr.io/aquasecurity/trivy", "ghcr.io/aquasecurity/trivy-operator:1", False),
        ("ghcr.io/aquasecurity/", "ghcr.io/aquasecurity/anything:1", True),
        ("runner:1", "runner:1", True),
        ("runner:1", "runner:10", False),
    ],
)
def test_runnable_image_matching(entry: str, image: str, runs: bool) -> None:
    assert RunnableImage(entry).matches(image) is runs


def test_fake_digests_only_when_enabled() -> None:
    pulled = ImagePuller(resolve_digest=None, fake_digests=True).pull("nginx", [])
    assert pulled.image == "docker.io/library/nginx:latest"
    assert pulled.image_id == "docker.io/library/nginx@" + fake_digest(pulled.image)
    with pytest.raises(ImagePullError, match=r"registry docker\.io is not served in the sandbox"):
        ImagePuller(resolve_digest=None).pull("nginx", [])


def test_resolver_gets_only_the_matching_credentials() -> None:
    seen: list[list[tuple[str, str]]] = []

    def resolve(image: str, credentials: Any) -> str:
        seen.append([credential.reveal() for credential in credentials])
        return "sha256:" + "b" * 64

    config = '{"auths": {"reg.example:5000/team": {"username": "u1", "password": "p1"}, ' \
        '"other.example": {"username": "u2", "password": "p2"}}}'  # fmt: skip
    secret_obj = {
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
        "metadata": {"name": "pull", "namespace": "ns"},
    }
    opaque = {"type": "Opaque", "data": {"x": "eA=="}}  # skipped, like the kubelet does
    pulled = ImagePuller(resolve).pull("reg.example:5000/team/app:1", [opaque, secret_obj])
    assert seen == [[("u1", "p1")]]
    assert pulled.image_id == "reg.example:5000/team/app@sha256:" + "b" * 64
