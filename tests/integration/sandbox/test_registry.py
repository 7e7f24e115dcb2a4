"""The sandbox registry: real docker-registry, htpasswd (bcrypt) users, TLS with its own CA."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ocscan.registry.credential import RegistryCredential
from ocscan.sandbox.errors import RegistryRequestError, SandboxError
from ocscan.sandbox.oci import (
    LINUX_AMD64,
    LINUX_ARM64,
    OCI_INDEX,
    OCI_MANIFEST,
    ApkPackage,
    build_alpine_image,
    build_index,
    push_image,
)
from ocscan.sandbox.processes import ProcessRecord
from ocscan.sandbox.registry import RegistryServer

IMAGE = build_alpine_image([ApkPackage(name="musl", version="1.2.4_git20230717-r4")])
CANARY = "canary-Zq9-do-not-leak"


def test_push_with_credentials_stores_the_exact_manifest(
    registry_a: RegistryServer, alice_credential: RegistryCredential
) -> None:
    digest = push_image(IMAGE, registry_a.url, "push/ok", "v1", credential=alice_credential)

    assert digest == IMAGE.digest
    response = httpx.get(
        f"{registry_a.url}/v2/push/ok/manifests/{digest}",
        headers={"Accept": OCI_MANIFEST},
        auth=alice_credential.reveal(),
    )
    assert response.status_code == 200
    assert response.content == IMAGE.manifest.data
    assert response.headers["Docker-Content-Digest"] == digest


def test_registry_2_8_hides_oci_manifests_from_clients_that_do_not_accept_them(
    registry_a: RegistryServer, alice_credential: RegistryCredential
) -> None:
    push_image(IMAGE, registry_a.url, "push/accept", "v1", credential=alice_credential)

    response = httpx.get(
        f"{registry_a.url}/v2/push/accept/manifests/v1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        auth=alice_credential.reveal(),
    )

    assert response.status_code == 404


def test_push_without_credentials_gets_the_registrys_401(registry_a: RegistryServer) -> None:
    with pytest.raises(RegistryRequestError) as caught:
        push_image(IMAGE, registry_a.url, "push/anonymous", "v1")

    assert caught.value.status_code == 401
    assert caught.value.registry_message == "UNAUTHORIZED: authentication required"


def test_push_with_a_wrong_password_is_refused_and_logged_by_user_name(
    registry_a: RegistryServer,
) -> None:
    wrong = RegistryCredential.of("alice", CANARY)

    with pytest.raises(RegistryRequestError) as caught:
        push_image(IMAGE, registry_a.url, "push/wrong", "v1", credential=wrong)

    assert caught.value.status_code == 401
    assert "alice" in registry_a.failed_login_users()
    assert CANARY not in str(caught.value) + repr(caught.value)
    assert CANARY not in registry_a.log_text()


def test_credentials_of_one_registry_do_not_open_another(
    registry_b: RegistryServer, alice_credential: RegistryCredential
) -> None:
    with pytest.raises(RegistryRequestError, match="HTTP 401"):
        push_image(IMAGE, registry_b.url, "push/cross", "v1", credential=alice_credential)

    assert registry_b.failed_login_users()[-1] == "alice"


def test_tls_registry_with_its_ca(
    tls_registry: RegistryServer, carol_credential: RegistryCredential
) -> None:
    assert tls_registry.url.startswith("https://127.0.0.1:")
    assert tls_registry.ca_file is not None

    digest = push_image(
        IMAGE, tls_registry.url, "push/tls", "v1",
        credential=carol_credential, ca_file=tls_registry.ca_file,
    )  # fmt: skip

    assert digest == IMAGE.digest


def test_tls_registry_is_not_trusted_without_its_ca(
    tls_registry: RegistryServer, carol_credential: RegistryCredential
) -> None:
    with pytest.raises(SandboxError, match="CERTIFICATE_VERIFY_FAILED"):
        push_image(IMAGE, tls_registry.url, "push/tls-no-ca", "v1", credential=carol_credential)


def test_several_users_no_clear_password_on_disk_or_in_argv(tmp_path: Path) -> None:
    users = {"dave": CANARY + "-dave", "erin": CANARY + "-erin"}
    with RegistryServer.start(tmp_path, users) as registry:
        for name, password in users.items():
            credential = RegistryCredential.of(name, password)
            push_image(IMAGE, registry.url, f"users/{name}", "v1", credential=credential)
        with pytest.raises(RegistryRequestError):
            push_image(
                IMAGE, registry.url, "users/x", "v1",
                credential=RegistryCredential.of("dave", users["erin"]),
            )  # fmt: skip
        cmdline = Path(f"/proc/{registry.pid}/cmdline").read_bytes()

    assert registry.users == ("dave", "erin")
    assert CANARY.encode() not in cmdline
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    htpasswd = (tmp_path / "htpasswd").read_text().splitlines()
    assert [line.split(":", 1)[0] for line in htpasswd] == ["dave", "erin"]
    assert all(line.split(":", 1)[1].startswith("$2y$") for line in htpasswd)  # bcrypt


def test_anonymous_registry_accepts_pushes_without_credentials(tmp_path: Path) -> None:
    with RegistryServer.start(tmp_path, {}) as registry:
        assert push_image(IMAGE, registry.url, "open/app", "v1") == IMAGE.digest
        assert not (tmp_path / "htpasswd").exists()


def test_invalid_user_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="invalid registry user name 'a:b'"):
        RegistryServer.start(tmp_path, {"a:b": "x"})


def test_stop_leaves_no_process_and_is_idempotent(tmp_path: Path) -> None:
    registry = RegistryServer.start(tmp_path, {"u": "p"})
    record = registry.process.record
    assert record.is_running()

    registry.stop()
    registry.stop()

    assert not record.is_running()
    assert not Path(f"/proc/{record.pid}").exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{registry.url}/v2/")


def test_pid_file_names_the_running_registry(tmp_path: Path) -> None:
    pid_file = tmp_path / "registry.pid"
    with RegistryServer.start(tmp_path / "work", {"u": "p"}, pid_file=pid_file) as registry:
        assert ProcessRecord.read(pid_file) == registry.process.record
    assert not pid_file.exists()


def test_an_index_is_pushed_with_its_images_and_served_under_its_tag(
    registry_a: RegistryServer, alice_credential: RegistryCredential
) -> None:
    arm = build_alpine_image(
        [ApkPackage(name="musl", version="1.2.4_git20230717-r4", arch="aarch64")],
        platform=LINUX_ARM64,
    )
    index = build_index({LINUX_AMD64: IMAGE, LINUX_ARM64: arm})

    digest = push_image(index, registry_a.url, "push/multi", "v1", credential=alice_credential)

    assert digest == index.digest
    auth = alice_credential.reveal()
    url = f"{registry_a.url}/v2/push/multi/manifests"
    tagged = httpx.get(f"{url}/v1", headers={"Accept": OCI_INDEX}, auth=auth)
    assert tagged.status_code == 200 and tagged.headers["Docker-Content-Digest"] == digest
    entries = {
        (m["platform"]["os"], m["platform"]["architecture"]): m["digest"]
        for m in tagged.json()["manifests"]
    }
    assert entries == {("linux", "amd64"): IMAGE.digest, ("linux", "arm64"): arm.digest}
    for image in (IMAGE, arm):  # each variant by its digest, its config saying its platform
        variant = httpx.get(f"{url}/{image.digest}", headers={"Accept": OCI_MANIFEST}, auth=auth)
        assert variant.status_code == 200 and variant.content == image.manifest.data
    assert json.loads(arm.config.data)["architecture"] == "arm64"
