"""Trivy command lines: which flags, where the secrets go, and that argv never holds one."""

from __future__ import annotations

import base64
import json
from pathlib import PurePath

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from ocscan.errors import InvalidReferenceError
from ocscan.registry.credential import RegistryCredential
from ocscan.registry.platform import Platform
from ocscan.scan.trivy_command import (
    ClientServer,
    Standalone,
    TrivyCommand,
    build_trivy_command,
    registry_key,
)

IMAGE = "registry.example:5000/team/app:1.0"
CANARY = "canary-Pw-7f3a"
STANDALONE = Standalone(cache_dir=PurePath("/var/cache/trivy"))
CLIENT = ClientServer(server_url="http://trivy.example:4954", token=SecretStr("tok-9c1e"))


def flag_value(argv: tuple[str, ...], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def everything_visible(command: TrivyCommand) -> str:
    """All of a command that may be shown: argv and the reprs of the secret carriers."""
    return " ".join(command.argv) + repr(command)


@pytest.mark.parametrize("mode", [STANDALONE, CLIENT])
def test_every_scan_skips_all_downloads_and_reads_the_image_remotely(
    mode: Standalone | ClientServer,
) -> None:
    command = build_trivy_command(IMAGE, mode, credential=RegistryCredential.of("u", "p"))
    argv = command.argv

    assert argv[:2] == ("trivy", "image")
    assert argv[-2:] == ("--", IMAGE)
    for flag in (
        "--skip-db-update",
        "--skip-java-db-update",
        "--skip-check-update",
        "--skip-vex-repo-update",
        "--skip-version-check",
        "--offline-scan",
    ):
        assert flag in argv
    assert flag_value(argv, "--scanners") == "vuln"
    assert flag_value(argv, "--format") == "json"
    assert flag_value(argv, "--image-src") == "remote"
    assert flag_value(argv, "--timeout") == "300000ms"
    # No config or ignore file from the working directory.
    assert flag_value(argv, "--config") == ""
    assert flag_value(argv, "--ignorefile") == ""


def test_standalone_uses_the_prepared_cache() -> None:
    argv = build_trivy_command(IMAGE, STANDALONE).argv

    assert flag_value(argv, "--cache-dir") == "/var/cache/trivy"
    assert "--server" not in argv


def test_client_passes_the_server_token_in_the_environment() -> None:
    command = build_trivy_command(IMAGE, CLIENT)

    assert flag_value(command.argv, "--server") == "http://trivy.example:4954"
    assert "--token" not in command.argv
    assert "--cache-dir" not in command.argv
    assert {k: v.get_secret_value() for k, v in command.secret_env.items()} == {
        "TRIVY_TOKEN": "tok-9c1e"
    }
    assert "tok-9c1e" not in everything_visible(command)
    assert command.secret_values() == ("tok-9c1e",)


def test_credentials_travel_as_trivy_username_and_password() -> None:
    credential = RegistryCredential.of("alice", CANARY)

    command = build_trivy_command(IMAGE, STANDALONE, credential=credential)

    assert {k: v.get_secret_value() for k, v in command.secret_env.items()} == {
        "TRIVY_USERNAME": "alice",
        "TRIVY_PASSWORD": CANARY,
    }
    assert command.docker_config is None
    assert "--username" not in command.argv
    assert "--password" not in command.argv
    assert CANARY not in everything_visible(command)
    assert {"alice", CANARY} <= set(command.secret_values())


def test_anonymous_scan_carries_no_secret() -> None:
    command = build_trivy_command(IMAGE, STANDALONE)

    assert command.secret_env == {}
    assert command.docker_config is None
    assert command.secret_values() == ()


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("alice", "with,comma"),
        ("alice", " leading-space"),
        ("alice", "trailing-tab\t"),
        ("al,ice", "plain"),
        (" alice", "plain"),
    ],
)
def test_values_trivy_would_split_or_trim_go_in_a_docker_config(
    username: str, password: str
) -> None:
    credential = RegistryCredential.of(username, password)

    command = build_trivy_command(IMAGE, STANDALONE, credential=credential)

    assert command.secret_env == {}
    assert command.docker_config is not None
    document = json.loads(command.docker_config.get_secret_value())
    assert list(document) == ["auths"]
    assert list(document["auths"]) == ["registry.example:5000"]
    auth = document["auths"]["registry.example:5000"]["auth"]
    assert base64.b64decode(auth).decode() == f"{username}:{password}"
    assert password not in everything_visible(command)
    assert {username, password, auth} <= set(command.secret_values())


def test_server_token_and_docker_config_combine() -> None:
    credential = RegistryCredential.of("alice", "a,b")

    command = build_trivy_command(IMAGE, CLIENT, credential=credential)

    assert set(command.secret_env) == {"TRIVY_TOKEN"}
    assert command.docker_config is not None


@pytest.mark.parametrize(
    ("image", "key"),
    [
        ("nginx:1.25", "https://index.docker.io/v1/"),
        ("docker.io/library/nginx", "https://index.docker.io/v1/"),
        ("index.docker.io/team/app", "https://index.docker.io/v1/"),
        ("127.0.0.1:5000/team/app@sha256:" + "a" * 64, "127.0.0.1:5000"),
        ("ghcr.io/org/app:v1", "ghcr.io"),
    ],
)
def test_docker_config_key_is_the_one_trivy_looks_up(image: str, key: str) -> None:
    assert registry_key(image) == key


def test_ca_file_and_timeout() -> None:
    argv = build_trivy_command(
        IMAGE, STANDALONE, ca_file=PurePath("/etc/ca.pem"), timeout=0.25
    ).argv

    assert flag_value(argv, "--cacert") == "/etc/ca.pem"
    assert flag_value(argv, "--timeout") == "250ms"


def test_a_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        build_trivy_command(IMAGE, STANDALONE, timeout=0)


def test_an_invalid_image_is_refused_when_credentials_need_its_registry() -> None:
    with pytest.raises(InvalidReferenceError):
        build_trivy_command("Bad Image", STANDALONE, credential=RegistryCredential.of("u", ","))


def test_custom_trivy_binary() -> None:
    assert build_trivy_command(IMAGE, STANDALONE, trivy="/opt/trivy").argv[0] == "/opt/trivy"


@given(
    username=st.text(min_size=1, max_size=20).filter(lambda s: s.strip() and ":" not in s),
    password=st.text(min_size=1, max_size=30),
)
def test_credentials_never_change_argv_and_always_arrive(username: str, password: str) -> None:
    credential = RegistryCredential.of(username, password)

    for mode in (STANDALONE, CLIENT):
        command = build_trivy_command(IMAGE, mode, credential=credential)
        assert command.argv == build_trivy_command(IMAGE, mode).argv
        if command.docker_config is None:
            carried = command.secret_env["TRIVY_PASSWORD"].get_secret_value()
        else:
            document = json.loads(command.docker_config.get_secret_value())
            auth = document["auths"]["registry.example:5000"]["auth"]
            carried = base64.b64decode(auth).decode().split(":", 1)[1]
        assert carried == password


@pytest.mark.parametrize("mode", [STANDALONE, CLIENT])
def test_a_known_platform_picks_that_entry_of_a_multi_platform_image(
    mode: Standalone | ClientServer,
) -> None:
    command = build_trivy_command(IMAGE, mode, platform=Platform("linux", "arm64"))

    assert flag_value(command.argv, "--platform") == "linux/arm64"
    assert command.argv[-2:] == ("--", IMAGE)  # a flag, never taken for the image


def test_without_a_platform_trivy_picks_its_default() -> None:
    argv = build_trivy_command(IMAGE, CLIENT).argv

    assert not any(arg.startswith("--platform") for arg in argv)
