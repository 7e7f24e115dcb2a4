"""Docker config documents and pull secrets, decoded like the kubelet's config.go/secrets.go."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ocscan.errors import MalformedSecretError
from ocscan.registry.dockerconfig import (
    DockerConfigEntry,
    entries_from_secret,
    parse_docker_config,
)


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def revealed(entries: list[DockerConfigEntry]) -> list[tuple[str, str, str]]:
    return [(entry.key, *entry.credential.reveal()) for entry in entries]


def secret(secret_type: str, data: dict[str, Any], name: str = "regcred") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "team-a"},
        "type": secret_type,
        "data": data,
    }


def dockerconfigjson_secret(auths: dict[str, Any], name: str = "regcred") -> dict[str, Any]:
    document = json.dumps({"auths": auths})
    return secret("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b64(document)}, name)


# -- entry decoding --------------------------------------------------------------------------


def test_dockerconfigjson_username_and_password() -> None:
    document = {
        "auths": {
            "http://foo.example.com": {"username": "foo", "password": "bar", "email": "f@x"},
            "http://bar.example.com": {"username": "bar", "password": "baz"},
        }
    }
    entries = parse_docker_config(json.dumps(document), source="f")
    assert revealed(entries) == [
        ("http://foo.example.com", "foo", "bar"),
        ("http://bar.example.com", "bar", "baz"),
    ]


@pytest.mark.parametrize(
    ("auth", "username", "password"),
    [
        ("Zm9vOmJhcg==", "foo", "bar"),  # padded
        ("Zm9vOmJhcg", "foo", "bar"),  # the same, unpadded
        (b64("ping:pong"), "ping", "pong"),
        (b64("user:pa:ss:word"), "user", "pa:ss:word"),  # split on the first colon only
        (b64(":only-password"), "", "only-password"),
        (b64("only-user:"), "only-user", ""),
        ("Zm9vOmJh\r\ncg==", "foo", "bar"),  # line breaks are skipped, as Go's decoder does
        (b64("ünïcode:pässwörd"), "ünïcode", "pässwörd"),
    ],
)
def test_auth_decodes_to_username_and_password(auth: str, username: str, password: str) -> None:
    entries = parse_docker_config({"auths": {"reg.io": {"auth": auth}}}, source="f")
    assert revealed(entries) == [("reg.io", username, password)]


def test_auth_wins_over_username_and_password() -> None:
    entry = {"username": "foo", "password": "bar", "auth": "cGluZzpwb25n", "email": "x@y"}
    entries = parse_docker_config({"auths": {"reg.io": entry}}, source="f")
    assert revealed(entries) == [("reg.io", "ping", "pong")]


def test_empty_auth_falls_back_to_username_and_password() -> None:
    entry = {"username": "foo", "password": "bar", "auth": ""}
    entries = parse_docker_config({"auths": {"reg.io": entry}}, source="f")
    assert revealed(entries) == [("reg.io", "foo", "bar")]


def test_entry_without_credentials_is_anonymous_like_the_kubelet() -> None:
    entries = parse_docker_config(
        {"auths": {"reg.io": {"identitytoken": "token", "registrytoken": "t", "email": None}}},
        source="f",
    )
    assert revealed(entries) == [("reg.io", "", "")]


def test_dockercfg_is_a_bare_map() -> None:
    document = {"https://index.docker.io/v1/": {"auth": b64("u:p"), "email": "e@x"}}
    entries = parse_docker_config(json.dumps(document).encode(), source="f", kind="dockercfg")
    assert revealed(entries) == [("https://index.docker.io/v1/", "u", "p")]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"auths": {"reg.io": {"auth": b64("a:b")}}}, [("reg.io", "a", "b")]),
        ({"reg.io": {"auth": b64("a:b")}}, [("reg.io", "a", "b")]),
        # A real ~/.docker/config.json: other top-level keys are ignored.
        (
            {"auths": {"reg.io": {"auth": b64("a:b")}}, "credsStore": "desktop", "HttpHeaders": {}},
            [("reg.io", "a", "b")],
        ),
        ({"auths": {}}, []),
        ({}, []),
    ],
)
def test_format_is_detected(document: dict[str, Any], expected: list[tuple[str, str, str]]) -> None:
    assert revealed(parse_docker_config(json.dumps(document), source="f")) == expected


def test_entries_keep_document_order() -> None:
    keys = ["z.example.com", "a.example.com", "m.example.com"]
    document = {"auths": {key: {"auth": b64(f"{key}:p")} for key in keys}}
    assert [entry.key for entry in parse_docker_config(json.dumps(document), source="f")] == keys


# -- malformed documents ---------------------------------------------------------------------

MALFORMED_DOCUMENTS = [
    ('{"auths": {"reg.io": {"auth": "YTpi"}}', "not valid JSON"),
    ("", "empty"),
    ("  \n", "empty"),
    (b"\xff\xfe{}", "not UTF-8"),
    ("[]", "not a JSON object"),
    ('{"auths": {"reg.io": null}}', "entry 'reg.io' is not an object"),
    ('{"auths": {"reg.io": "x"}}', "entry 'reg.io' is not an object"),
    ('{"auths": {"reg.io": {"email": false}}}', "entry 'reg.io': email is not a string"),
    ('{"auths": {"reg.io": {"username": 5}}}', "entry 'reg.io': username is not a string"),
    ('{"auths": {"reg.io": {"auth": ["x"]}}}', "entry 'reg.io': auth is not a string"),
    ('{"auths": {"reg.io": {"auth": "pants"}}}', "auth is not valid base64"),
    ('{"auths": {"reg.io": {"auth": "Zm9v!mJhcg=="}}}', "auth is not valid base64"),
    ('{"auths": {"reg.io": {"auth": "Zm9vOmJhcg== "}}}', "auth is not valid base64"),
    ('{"auths": {"reg.io": {"auth": "Zm9vOmJhcg=x"}}}', "auth is not valid base64"),
    ('{"auths": {"reg.io": {"auth": "cGFudHM="}}}', "auth must be base64 of username:password"),
    ('{"auths": {"reg.io": {"auth": "//79"}}}', "does not decode to UTF-8"),
    ('{"auths": {"reg.io": {}, "reg.io": {}}}', "the key 'reg.io' appears twice"),
    ('{"auths": {"reg.io": {"auth": NaN}}}', "NaN is not valid JSON"),
    # Detection: without an "auths" object the document is a bare dockercfg map.
    ('{"auths": "reg.io"}', "entry 'auths' is not an object"),
    ('{"auths": {"ftp://reg.io": {}}}', "registry key 'ftp://reg.io'"),
    ('{"auths": {"reg.io:port": {}}}', "the port is not a number"),
    ('{"auths": {"reg.io?x=1": {}}}', "no query or fragment"),
    ('{"auths": {"reg[.io": {}}}', "not a valid wildcard pattern"),
    ('{"auths": {"https:///v1/": {}}}', "no registry host"),
    ('{"auths": {"reg io": {}}}', "invalid character ' ' in host"),
    ("[" * 100_000, "nested too deeply"),
]


@pytest.mark.parametrize(("document", "reason"), MALFORMED_DOCUMENTS)
def test_malformed_document_names_the_source_and_the_reason(
    document: str | bytes, reason: str
) -> None:
    with pytest.raises(MalformedSecretError) as caught:
        parse_docker_config(document, source="ns/regcred")
    assert caught.value.source == "ns/regcred"
    assert reason in caught.value.reason
    assert str(caught.value).startswith("malformed pull secret ns/regcred: ")


def test_dockerconfigjson_without_auths_is_reported() -> None:
    with pytest.raises(MalformedSecretError, match='no "auths" object'):
        parse_docker_config('{"reg.io": {"auth": "YTpi"}}', source="f", kind="dockerconfigjson")


def test_dockerconfigjson_with_auths_not_an_object_is_reported() -> None:
    with pytest.raises(MalformedSecretError, match='"auths" is not an object'):
        parse_docker_config('{"auths": null}', source="f", kind="dockerconfigjson")


def test_dockerconfigjson_document_under_dockercfg_is_reported() -> None:
    with pytest.raises(MalformedSecretError, match=r"use type kubernetes\.io/dockerconfigjson"):
        parse_docker_config('{"auths": {"reg.io": {}}}', source="f", kind="dockercfg")


def test_key_with_user_information_is_rejected_without_quoting_it() -> None:
    with pytest.raises(MalformedSecretError) as caught:
        parse_docker_config({"auths": {"user:hunter2@reg.io": {}}}, source="f")
    assert "user information" in caught.value.reason
    assert "hunter2" not in str(caught.value)


def test_non_string_key_in_a_decoded_mapping_is_rejected() -> None:
    with pytest.raises(MalformedSecretError, match="registry key is not a string"):
        parse_docker_config({"auths": {5: {}}}, source="f")


# -- pull secrets ----------------------------------------------------------------------------


def test_dockerconfigjson_secret() -> None:
    entries = entries_from_secret(dockerconfigjson_secret({"reg.io": {"auth": b64("a:b")}}))
    assert revealed(entries) == [("reg.io", "a", "b")]


def test_dockercfg_secret() -> None:
    document = json.dumps({"reg.io": {"username": "a", "password": "b"}})
    entries = entries_from_secret(secret("kubernetes.io/dockercfg", {".dockercfg": b64(document)}))
    assert revealed(entries) == [("reg.io", "a", "b")]


@pytest.mark.parametrize(
    ("secret_type", "data", "reason"),
    [
        ("Opaque", {".dockerconfigjson": b64('{"auths": {}}')}, "type 'Opaque' is not"),
        (None, {".dockerconfigjson": b64('{"auths": {}}')}, "type None is not"),
        # Type and data key disagree: the kubelet skips these silently.
        (
            "kubernetes.io/dockerconfigjson",
            {".dockercfg": b64("{}")},
            "needs data key .dockerconfigjson (data keys: .dockercfg)",
        ),
        (
            "kubernetes.io/dockercfg",
            {".dockerconfigjson": b64('{"auths": {}}')},
            "needs data key .dockercfg (data keys: .dockerconfigjson)",
        ),
        ("kubernetes.io/dockercfg", {}, "(data keys: none)"),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": ""}, "is empty"),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "%%%"}, "not valid base64"),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": 5}, "not a base64 string"),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b64("{")}, "not valid JSON"),
    ],
)
def test_unusable_secret_is_reported_by_name(
    secret_type: str | None, data: dict[str, Any], reason: str
) -> None:
    with pytest.raises(MalformedSecretError) as caught:
        entries_from_secret(secret(secret_type, data))  # type: ignore[arg-type]
    assert caught.value.source == "team-a/regcred"
    assert reason in caught.value.reason


def test_secret_source_can_be_given() -> None:
    broken = secret("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b64("[]")})
    with pytest.raises(MalformedSecretError) as caught:
        entries_from_secret(broken, source="other/name")
    assert caught.value.source == "other/name"
