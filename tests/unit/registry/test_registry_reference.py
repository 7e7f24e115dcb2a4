"""Image references: distribution's grammar and normalisation, as the kubelet applies them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocscan.errors import InvalidReferenceError
from ocscan.registry.reference import ImageReference, image_id_digest, parse_reference

SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "0123456789abcdef" * 8


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", None, None),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", None),
        ("library/nginx", "docker.io", "library/nginx", None, None),
        ("docker.io/nginx", "docker.io", "library/nginx", None, None),
        ("docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", None),
        ("index.docker.io/x/y", "docker.io", "x/y", None, None),
        ("index.docker.io/nginx", "docker.io", "library/nginx", None, None),
        ("myuser/app", "docker.io", "myuser/app", None, None),
        (
            "registry.example.com:5000/team/app:tag",
            "registry.example.com:5000",
            "team/app",
            "tag",
            None,
        ),
        (f"host.example/a/b/c@{SHA256}", "host.example", "a/b/c", None, SHA256),
        (f"nginx:1.25@{SHA256}", "docker.io", "library/nginx", "1.25", SHA256),
        (f"quay.io/app@{SHA512}", "quay.io", "app", None, SHA512),
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None, None),
        ("[::1]:5000/app", "[::1]:5000", "app", None, None),
        # Upper case is fine in a host; an upper-case first component is a host.
        ("Registry.Example.com/app", "Registry.Example.com", "app", None, None),
        ("Foo/bar", "Foo", "bar", None, None),
        # Without a slash, "host:5000" is the official image "host" with tag "5000".
        ("example.com:5000", "docker.io", "library/example.com", "5000", None),
        # registry-1.docker.io is a host like any other: only index.docker.io is folded.
        ("registry-1.docker.io/library/nginx", "registry-1.docker.io", "library/nginx", None, None),
        ("a__b/c-d--e/f.g_h:Tag_1.-x", "docker.io", "a__b/c-d--e/f.g_h", "Tag_1.-x", None),
        ("app:" + "t" * 128, "docker.io", "library/app", "t" * 128, None),
    ],
)
def test_valid_references_are_normalised(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    reference = parse_reference(text)
    assert reference == ImageReference(registry, repository, tag, digest)
    assert reference.name == f"{registry}/{repository}"


def test_str_is_the_canonical_full_form() -> None:
    assert str(parse_reference("nginx")) == "docker.io/library/nginx"
    assert str(parse_reference(f"nginx:1@{SHA256}")) == f"docker.io/library/nginx:1@{SHA256}"
    assert str(parse_reference("index.docker.io/x/y:2")) == "docker.io/x/y:2"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Nginx", "must be lower-case"),
        ("registry.example.com/Team/app", "must be lower-case"),
        ("reg.io/a//b", "empty path component"),
        ("reg.io/app/", "empty path component"),
        ("/app", "empty path component"),
        ("nginx@sha256:abc", "invalid digest 'sha256:abc'"),
        ("nginx@" + SHA256.upper().replace("SHA256", "sha256"), "lower-case hex"),
        ("nginx@md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("nginx@sha256:" + "a" * 63, "64 hex characters, not 63"),
        ("nginx@", "empty digest"),
        (f"nginx@{SHA256}@{SHA256}", "more than one '@'"),
        ("nginx:", "empty tag"),
        ("nginx:-bad", "invalid tag '-bad'"),
        ("nginx:" + "t" * 129, "invalid tag"),
        ("a" * 64, "hex identifier"),
        ("reg.io:abc/app", "invalid registry host 'reg.io:abc'"),
        ("reg_io.com/app", "invalid registry host 'reg_io.com'"),
        ("nginx latest", "whitespace"),
        ("reg.io/a-/b", "invalid path component 'a-'"),
        ("reg.io/" + "a" * 256, "longer than 255"),
        ("a" * 3000, "longer than 2048"),
    ],
)
def test_invalid_references_name_the_reference_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse_reference(text)
    assert caught.value.reference == text
    assert reason in caught.value.reason
    assert repr(text) in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("image_id", "digest"),
    [
        (f"docker-pullable://nginx@{SHA256}", SHA256),
        (f"docker-pullable://registry.example.com:5000/team/app@{SHA256}", SHA256),
        (f"docker.io/library/nginx@{SHA256}", SHA256),
        (f"quay.io/app@{SHA512}", SHA512),
        (SHA256, None),  # a local image configuration ID, not a registry digest
        (f"docker://{SHA256}", None),
        ("", None),  # container not started yet
    ],
)
def test_image_id_digest(image_id: str, digest: str | None) -> None:
    assert image_id_digest(image_id) == digest


@pytest.mark.parametrize(
    "image_id", ["containerd://garbage", "docker-pullable://nginx@sha256:zz", "sha256:abc"]
)
def test_malformed_image_id_is_an_error(image_id: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        image_id_digest(image_id)
    assert caught.value.reference == image_id


def test_with_digest_pins_and_validates() -> None:
    reference = parse_reference("registry.example.com/app:1")
    assert str(reference.with_digest(SHA256)) == f"registry.example.com/app:1@{SHA256}"
    with pytest.raises(InvalidReferenceError, match="unsupported digest algorithm"):
        reference.with_digest("md5:" + "a" * 32)


_component = st.from_regex(r"[a-z0-9]{1,4}([._-][a-z0-9]{1,3})?", fullmatch=True)
_host = st.from_regex(r"[a-z]([a-z0-9-]{0,4}[a-z0-9])?\.[a-z]{2,3}(:[0-9]{1,5})?", fullmatch=True)


@given(
    host=_host,
    path=st.lists(_component, min_size=1, max_size=4),
    tag=st.none() | st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True),
    digest=st.none() | st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True),
)
def test_canonical_form_round_trips(
    host: str, path: list[str], tag: str | None, digest: str | None
) -> None:
    reference = ImageReference(host, "/".join(path), tag, digest)
    assert parse_reference(str(reference)) == reference
