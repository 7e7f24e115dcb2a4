"""Keyring lookup: cases derived from the kubelet's keyring.go and its keyring_test.go."""

from __future__ import annotations

import pytest

from ocscan.errors import InvalidReferenceError
from ocscan.registry.credential import RegistryCredential
from ocscan.registry.dockerconfig import DockerConfigEntry
from ocscan.registry.keyring import (
    InvalidRegistryKeyError,
    Keyring,
    parse_registry_key,
)


def entry(key: str, username: str = "user") -> DockerConfigEntry:
    return DockerConfigEntry(key=key, credential=RegistryCredential.of(username, "password"))


def keyring(*keys: str) -> Keyring:
    """One source whose entries are ``keys``; each credential's username is its key."""
    return Keyring([("ns/secret", [entry(key, username=key) for key in keys])])


def tried(ring: Keyring, image: str) -> list[str]:
    return [match.key for match in ring.lookup(image)]


# -- normalisation (BasicDockerKeyring.Add) --------------------------------------------------


@pytest.mark.parametrize(
    ("key", "normalized"),
    [
        ("reg.io", "reg.io"),
        ("https://reg.io", "reg.io"),
        ("http://reg.io", "reg.io"),
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("index.docker.io/v1/", "index.docker.io"),
        ("https://quay.io/v2/", "quay.io"),
        ("https://reg.io/v2/team/app", "reg.io/team/app"),
        ("reg.io/", "reg.io"),
        ("reg.io/v1", "reg.io/v1"),  # only "/v1/" with its slash is dropped
        ("reg.io/team/", "reg.io/team/"),
        ("reg.io:5000/team", "reg.io:5000/team"),
        ("*.reg.io", "*.reg.io"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_keys_are_normalised_like_the_kubelet(key: str, normalized: str) -> None:
    assert parse_registry_key(key).normalized == normalized


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "no registry host"),
        ("https://", "no registry host"),
        ("/team", "no registry host"),
        ("ftp://reg.io", "only http:// and https://"),
        ("HTTPS://reg.io", "only http:// and https://"),
        ("user:secret@reg.io", "user information"),
        ("reg.io?x", "no query or fragment"),
        ("reg.io#frag", "no query or fragment"),
        ("reg.io/te%41m", "percent-escapes"),
        ("reg.io:50a0", "the port is not a number"),
        ("reg\x00.io", "control character"),
        ("reg^x.io", "invalid character '^' in host"),
        ("reg\\x.io", "invalid character '\\\\' in host"),
        ("[::1", "malformed IPv6 host"),
        ("[zz]:5000", "malformed IPv6 host"),
        ("reg[.io", "host label 'reg[' is not a valid wildcard pattern"),
        ("x[]x.io", "not a valid wildcard pattern"),
        ("x[a-].io", "not a valid wildcard pattern"),
        ("x[-a]x.io", "not a valid wildcard pattern"),
        ("x[a.io", "not a valid wildcard pattern"),
        ("[]x.io", "malformed IPv6 host"),  # a leading "[" starts an IPv6 literal
    ],
)
def test_unusable_keys_are_rejected(key: str, reason: str) -> None:
    with pytest.raises(InvalidRegistryKeyError) as caught:
        parse_registry_key(key)
    assert reason in caught.value.reason


def test_rejected_key_with_user_information_is_not_quoted() -> None:
    with pytest.raises(InvalidRegistryKeyError) as caught:
        parse_registry_key("https://user:hunter2@reg.io")
    assert "hunter2" not in str(caught.value)


# -- URLsMatch (kubelet TestUrlsMatch) -------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "target", "expected"),
    [
        # no path component
        ("*.kubernetes.io", "prefix.kubernetes.io", True),
        ("prefix.*.io", "prefix.kubernetes.io", True),
        ("prefix.kubernetes.*", "prefix.kubernetes.io", True),
        ("*-good.kubernetes.io", "prefix-good.kubernetes.io", True),
        # path components
        ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", True),
        ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", True),
        # path components and ports
        ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", True),
        ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", True),
        # label counts differ: a wildcard is one label, never more, never none
        ("*.kubernetes.io", "kubernetes.io", False),
        ("*.kubernetes.io", "a.b.kubernetes.io", False),
        ("*.*.kubernetes.io", "prefix.kubernetes.io", False),
        ("*.*.kubernetes.io", "kubernetes.io", False),
        # labels differ
        ("kubernetes.io", "kubernetes.com", False),
        ("k*.io", "quay.io", False),
        # ports differ (compared as strings)
        ("*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", False),
        ("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", False),
        ("reg.io:5000", "reg.io/app", False),
        ("reg.io:443", "reg.io/app", False),
        ("reg.io:5000", "reg.io:05000/app", False),
        # path is a plain string prefix: "team" also covers "teams" (kubelet behaviour)
        ("reg.io/team", "reg.io/teams/app", True),
        ("reg.io/team/", "reg.io/teams/app", False),
        ("reg.io/team", "reg.io/other/app", False),
        ("reg.io/team/app", "reg.io/team", False),
        # Go path.Match classes and ?-wildcards within one label
        ("reg[0-9].io", "reg7.io/app", True),
        ("reg[0-9].io", "regx.io/app", False),
        ("reg[a-cx].io", "regx.io/app", True),
        ("reg[c-a].io", "regb.io/app", False),  # inverted range: valid, matches nothing
        # matching is case-sensitive, as in the kubelet
        ("REG.io", "reg.io/app", False),
        # IPv6 hosts match with a port; without one Go cannot split them (kubelet quirk)
        ("[::1]:5000", "[::1]:5000/app", True),
        ("[::1]", "[::1]/app", False),
    ],
)
def test_urls_match(key: str, target: str, expected: bool) -> None:
    assert parse_registry_key(key).matches(target) is expected


@pytest.mark.parametrize(
    ("key", "target"),
    [
        ("https://hello.kubernetes.io", "hello.kubernetes.io"),
        ("https://*.docker.io", "prefix.docker.io"),
        ("https://prefix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.*", "prefix.docker.io"),
        ("https://*.docker.io/path", "prefix.docker.io/path"),
        ("https://prefix.*.io/path", "prefix.docker.io/path/subpath"),
        ("https://prefix.docker.*/path", "prefix.docker.io/path"),
        ("https://*.docker.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.*.io:8888", "prefix.docker.io:8888"),
        ("https://prefix.docker.*:8888", "prefix.docker.io:8888"),
        ("https://*.docker.io/path:1111", "prefix.docker.io/path:1111"),
        ("https://*.docker.io/v1/", "prefix.docker.io/path:1111"),
        ("https://*.docker.io/v2/", "prefix.docker.io/path:1111"),
        ("https://prefix.docker.*/path:1111", "prefix.docker.io/path:1111"),
        ("prefix.docker.io:1111", "prefix.docker.io:1111/path"),
        ("*.docker.io:1111", "prefix.docker.io:1111/path"),
    ],
)
def test_kubelet_glob_hits(key: str, target: str) -> None:
    assert parse_registry_key(key).matches(target + "/foo/bar")


@pytest.mark.parametrize(
    ("key", "target"),
    [
        ("https://hello.kubernetes.io", "world.mesos.org/foo/bar"),
        ("https://*.docker.com", "prefix.docker.io"),
        ("https://suffix.*.io", "prefix.docker.io"),
        ("https://prefix.docker.c*", "prefix.docker.io"),
        ("https://prefix.*.io/path:1111", "prefix.docker.io/path/subpath:1111"),
        ("suffix.*.io", "prefix.docker.io"),
    ],
)
def test_kubelet_glob_misses(key: str, target: str) -> None:
    assert not parse_registry_key(key).matches(target + "/foo/bar")


# -- Lookup order ----------------------------------------------------------------------------


def test_most_specific_key_first() -> None:
    """kubelet TestDockerKeyringLookup, with references that parse."""
    ring = keyring("bar.example.com/pong", "bar.example.com")
    assert tried(ring, "bar.example.com/pong") == ["bar.example.com/pong", "bar.example.com"]
    assert tried(ring, "bar.example.com/ping") == ["bar.example.com"]
    assert tried(ring, "bar.example.com/pongz") == ["bar.example.com/pong", "bar.example.com"]
    assert tried(ring, "bar.example.com/pong/pang:1") == [
        "bar.example.com/pong",
        "bar.example.com",
    ]
    assert tried(ring, "example.com/pong") == []
    assert tried(ring, "foo.example.com/pong") == []


def test_key_with_scheme_and_version_path_matches_the_whole_host() -> None:
    """kubelet TestIssue3797."""
    ring = keyring("https://quay.io/v1/")
    assert tried(ring, "quay.io/foo") == ["https://quay.io/v1/"]
    assert tried(ring, "quay.io/foo/bar@sha256:" + "a" * 64) == ["https://quay.io/v1/"]


def test_keys_are_tried_in_reverse_lexicographic_order() -> None:
    ring = keyring("*.example.com", "reg.example.com", "reg.example.com/team", "r*.example.com")
    assert tried(ring, "reg.example.com/team/app") == [
        "reg.example.com/team",
        "reg.example.com",
        "r*.example.com",
        "*.example.com",
    ]


def test_all_sources_share_one_index() -> None:
    """The kubelet adds every pull secret to one keyring: the most specific key of any
    secret comes first; for the same normalised key, secrets keep their order."""
    ring = Keyring(
        [
            ("ns/first", [entry("reg.io", "first-host"), entry("other.io", "first-other")]),
            ("ns/second", [entry("reg.io/team", "second-team"), entry("https://reg.io/v2/")]),
        ]
    )
    matches = ring.lookup("reg.io/team/app")
    assert [(m.source, m.key) for m in matches] == [
        ("ns/second", "reg.io/team"),
        ("ns/first", "reg.io"),
        ("ns/second", "https://reg.io/v2/"),
    ]
    assert matches[0].credential.reveal() == ("second-team", "password")


def test_same_normalised_key_keeps_document_order_within_a_source() -> None:
    ring = keyring("https://reg.io", "reg.io/", "http://reg.io/v1/", "reg.io")
    assert tried(ring, "reg.io/app") == ["https://reg.io", "reg.io/", "http://reg.io/v1/", "reg.io"]


def test_credentials_never_cross_registries() -> None:
    ring = keyring("reg-a.example.com", "reg-b.example.com", "reg-a.example.com:5000")
    assert tried(ring, "reg-a.example.com/app") == ["reg-a.example.com"]
    assert tried(ring, "reg-b.example.com/app") == ["reg-b.example.com"]
    assert tried(ring, "reg-a.example.com:5000/app") == ["reg-a.example.com:5000"]
    assert tried(ring, "reg-c.example.com/app") == []


# -- Docker Hub ------------------------------------------------------------------------------

HUB_KEY = "https://index.docker.io/v1/"


@pytest.mark.parametrize(
    "image",
    [
        "google/docker-registry",
        "jenkins",
        "nginx:1.25",
        "docker.io/library/nginx",
        "index.docker.io/google/docker-registry",
    ],
)
def test_docker_hub_images_fall_back_to_index_docker_io(image: str) -> None:
    assert tried(keyring(HUB_KEY), image) == [HUB_KEY]


@pytest.mark.parametrize(
    "image",
    [
        "world.mesos.org/foo/bar",
        "registry.tld/foo/bar",
        "registry:5000/foo/bar",
        "myhostdocker.io/foo/bar",
        # The kubelet's name heuristic would hand Docker Hub credentials to these
        # registries; ocscan keeps them on Docker Hub.
        "localhost/app",
        "Foo/bar",
    ],
)
def test_index_docker_io_credentials_stay_on_docker_hub(image: str) -> None:
    assert tried(keyring(HUB_KEY, "index.docker.io"), image) == []


def test_docker_hub_fallback_only_when_nothing_else_matched() -> None:
    ring = keyring(HUB_KEY, "docker.io")
    assert tried(ring, "nginx") == ["docker.io"]
    assert tried(keyring(HUB_KEY, "*.io"), "nginx") == ["*.io"]


def test_docker_hub_fallback_collects_every_index_docker_io_key_in_source_order() -> None:
    ring = Keyring(
        [
            ("ns/a", [entry("index.docker.io")]),
            ("ns/b", [entry(HUB_KEY), entry("https://index.docker.io/v2/")]),
        ]
    )
    assert [(m.source, m.key) for m in ring.lookup("nginx")] == [
        ("ns/a", "index.docker.io"),
        ("ns/b", HUB_KEY),
        ("ns/b", "https://index.docker.io/v2/"),
    ]


@pytest.mark.parametrize(
    "key",
    [
        "registry-1.docker.io",
        "https://registry-1.docker.io/v2/",
        "*.docker.io",
        "index.docker.io/v1",  # no trailing slash: a path, not the index key
        "index.docker.io:443",
    ],
)
def test_other_docker_hosts_never_match_docker_hub_images(key: str) -> None:
    assert tried(keyring(key), "nginx") == []
    assert tried(keyring(key), "docker.io/team/app") == []


# -- Interface -------------------------------------------------------------------------------


def test_lookup_takes_a_parsed_reference_or_a_string() -> None:
    from ocscan.registry.reference import parse_reference

    ring = keyring("reg.io")
    assert ring.lookup(parse_reference("reg.io/app:1")) == ring.lookup("reg.io/app:1")
    with pytest.raises(InvalidReferenceError):
        ring.lookup("reg.io/App")


def test_unusable_key_fails_keyring_construction() -> None:
    with pytest.raises(InvalidRegistryKeyError):
        keyring("ftp://reg.io")


def test_empty_keyring_matches_nothing() -> None:
    assert Keyring().lookup("nginx") == []
