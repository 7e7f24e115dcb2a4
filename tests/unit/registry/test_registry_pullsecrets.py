"""Pull-secret sources and per-image credential resolution."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ocscan.errors import InvalidReferenceError
from ocscan.registry.pullsecrets import (
    InvalidSecret,
    pull_secret_names,
    resolve_pull_credentials,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pull_secret(name: str, auths: dict[str, tuple[str, str]]) -> dict[str, Any]:
    document = {"auths": {key: {"auth": b64(f"{u}:{p}")} for key, (u, p) in auths.items()}}
    return {
        "metadata": {"name": name, "namespace": "team-a"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(json.dumps(document))},
    }


def refs(*names: str) -> list[dict[str, str]]:
    return [{"name": name} for name in names]


# -- which secrets ---------------------------------------------------------------------------


def test_pod_secrets_in_order() -> None:
    spec = {"imagePullSecrets": refs("b", "a")}
    account = {"imagePullSecrets": refs("sa")}
    assert pull_secret_names(spec, account) == (["b", "a"], "pod")


def test_service_account_secrets_only_when_the_pod_lists_none() -> None:
    account = {"imagePullSecrets": refs("sa-1", "sa-2")}
    assert pull_secret_names({}, account) == (["sa-1", "sa-2"], "serviceaccount")
    assert pull_secret_names({"imagePullSecrets": []}, account) == (
        ["sa-1", "sa-2"],
        "serviceaccount",
    )


def test_pod_listing_only_empty_names_still_shadows_the_service_account() -> None:
    """Admission copies the account's list only into a pod whose list is empty."""
    account = {"imagePullSecrets": refs("sa")}
    assert pull_secret_names({"imagePullSecrets": [{"name": ""}, {}]}, account) == ([], "pod")


def test_empty_and_repeated_names_are_skipped() -> None:
    spec = {"imagePullSecrets": [{"name": ""}, {"name": "a"}, {}, {"name": "a"}, {"name": "b"}]}
    assert pull_secret_names(spec, None) == (["a", "b"], "pod")


def test_no_secrets_anywhere() -> None:
    assert pull_secret_names({}, None) == ([], "none")
    assert pull_secret_names({}, {"metadata": {"name": "default"}}) == ([], "none")


# -- resolution ------------------------------------------------------------------------------


def test_only_the_images_registry_credentials_are_returned() -> None:
    secrets = {
        "regcred": pull_secret(
            "regcred",
            {"reg-a.example.com": ("alice", "pw-a"), "reg-b.example.com": ("bob", "pw-b")},
        )
    }
    result = resolve_pull_credentials("reg-a.example.com/app:1", ["regcred"], secrets, "team-a")
    assert [(m.key, m.source) for m in result.matches] == [("reg-a.example.com", "team-a/regcred")]
    assert result.matches[0].credential.reveal() == ("alice", "pw-a")
    assert result.complete


def test_secret_order_and_specificity() -> None:
    secrets = {
        "first": pull_secret("first", {"reg.io": ("first", "1")}),
        "second": pull_secret("second", {"reg.io/team": ("second", "2"), "reg.io": ("s", "3")}),
    }
    result = resolve_pull_credentials("reg.io/team/app", ["first", "second"], secrets, "team-a")
    assert [(m.source, m.key) for m in result.matches] == [
        ("team-a/second", "reg.io/team"),
        ("team-a/first", "reg.io"),
        ("team-a/second", "reg.io"),
    ]
    assert result.tried == ("first", "second")


def test_missing_secrets_are_skipped_and_reported() -> None:
    secrets: dict[str, dict[str, Any] | None] = {
        "present": pull_secret("present", {"reg.io": ("u", "p")}),
        "deleted": None,
    }
    result = resolve_pull_credentials(
        "reg.io/app", ["gone", "present", "deleted"], secrets, "team-a"
    )
    assert [m.key for m in result.matches] == ["reg.io"]
    assert result.missing == ("gone", "deleted")
    assert result.tried == ("gone", "present", "deleted")
    assert not result.complete


def test_invalid_secrets_are_reported_and_contribute_nothing() -> None:
    opaque = pull_secret("opaque", {"reg.io": ("opaque-user", "p")}) | {"type": "Opaque"}
    broken = pull_secret("broken", {}) | {"data": {".dockerconfigjson": b64("{")}}
    good = pull_secret("good", {"reg.io": ("good-user", "p")})
    secrets = {"opaque": opaque, "broken": broken, "good": good}
    result = resolve_pull_credentials("reg.io/app", ["opaque", "broken", "good"], secrets, "ns")
    assert [m.credential.reveal()[0] for m in result.matches] == ["good-user"]
    assert [i.name for i in result.invalid] == ["opaque", "broken"]
    assert "type 'Opaque'" in result.invalid[0].reason
    assert "not valid JSON" in result.invalid[1].reason
    assert result.invalid[0] == InvalidSecret(name="opaque", reason=result.invalid[0].reason)
    assert not result.complete


def test_repeated_and_empty_names_are_consulted_once() -> None:
    secrets = {"a": pull_secret("a", {"reg.io": ("u", "p")})}
    result = resolve_pull_credentials("reg.io/app", ["a", "", "a"], secrets, "ns")
    assert len(result.matches) == 1
    assert result.tried == ("a",)


def test_docker_hub_image_with_index_key() -> None:
    secrets = {"hub": pull_secret("hub", {"https://index.docker.io/v1/": ("u", "p")})}
    result = resolve_pull_credentials("nginx:1.25", ["hub"], secrets, "ns")
    assert [m.key for m in result.matches] == ["https://index.docker.io/v1/"]


def test_no_secrets_no_matches() -> None:
    result = resolve_pull_credentials("reg.io/app", [], {}, "ns")
    assert result.matches == () and result.tried == () and result.complete


def test_invalid_image_is_an_error() -> None:
    with pytest.raises(InvalidReferenceError):
        resolve_pull_credentials("reg.io/App", [], {}, "ns")
