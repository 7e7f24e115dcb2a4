"""Property tests: keyring lookup against an independent model of the kubelet's rules.

Keys are generated from parts (host labels with ``*`` wildcards, port, path, scheme and
``/v1/``-style prefixes), so the model knows each key's normalised form without parsing
it, and judges label matches with :func:`fnmatch.fnmatchcase` (identical to Go's
``path.Match`` for patterns made of letters, digits and ``*``).
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from ocscan.registry.credential import RegistryCredential
from ocscan.registry.dockerconfig import DockerConfigEntry
from ocscan.registry.keyring import Keyring
from ocscan.registry.reference import ImageReference

_LABEL = st.text(alphabet="ab1", min_size=1, max_size=3)
_PATTERN_LABEL = _LABEL | st.just("*") | _LABEL.map(lambda label: label + "*")
_PORT = st.sampled_from(["", "5000", "443"])
_COMPONENT = st.text(alphabet="ab", min_size=1, max_size=2)


@dataclass(frozen=True)
class Key:
    raw: str
    labels: tuple[str, ...]
    port: str
    path: str  # "" or "/..."

    @property
    def normalized(self) -> str:
        return ".".join(self.labels) + (f":{self.port}" if self.port else "") + self.path


def _written(draw: st.DrawFn, labels: tuple[str, ...], port: str, path: str) -> Key:
    """A key as a user might write it: optional scheme, optional /v1/ or /v2/ prefix."""
    scheme = draw(st.sampled_from(["", "https://", "http://"]))
    version = draw(st.sampled_from(["", "/v1", "/v2"]))
    written_path = f"{version}{path}" if version and path else (f"{version}/" if version else path)
    raw = scheme + ".".join(labels) + (f":{port}" if port else "") + written_path
    return Key(raw, labels, port, path)


@st.composite
def keys(draw: st.DrawFn) -> Key:
    labels = tuple(draw(st.lists(_PATTERN_LABEL, min_size=1, max_size=3)))
    components = draw(st.lists(_COMPONENT, max_size=2))
    path = "".join(f"/{component}" for component in components)
    if path and draw(st.booleans()):
        path += "/"
    return _written(draw, labels, draw(_PORT), path)


@st.composite
def keys_near(draw: st.DrawFn, image: ImageReference) -> Key:
    """A key derived from ``image``, so that several keys often apply to one image."""
    host, _, port = image.registry.partition(":")
    labels = [
        draw(st.sampled_from([label, "*", label[:1] + "*", label + "*"]))
        for label in host.split(".")
    ]
    if draw(st.integers(0, 4)) == 0:  # sometimes one label too many or too few
        labels = labels[1:] if len(labels) > 1 and draw(st.booleans()) else ["*", *labels]
    if draw(st.integers(0, 4)) == 0:
        port = draw(_PORT)
    full_path = f"/{image.repository}"
    path = full_path[: draw(st.integers(0, len(full_path)))]  # any string prefix
    if draw(st.integers(0, 3)) == 0:  # sometimes a path elsewhere on the same host
        path = "/" + "/".join(draw(st.lists(_COMPONENT, min_size=1, max_size=3)))
    return _written(draw, tuple(labels), port, "" if path == "/" else path)


@st.composite
def images(draw: st.DrawFn) -> ImageReference:
    host = ".".join(draw(st.lists(_LABEL, min_size=1, max_size=3)))
    port = draw(_PORT)
    repository = "/".join(draw(st.lists(_COMPONENT, min_size=1, max_size=3)))
    return ImageReference(host + (f":{port}" if port else ""), repository)


def model_matches(key: Key, image: ImageReference) -> bool:
    host, _, port = image.registry.partition(":")
    labels = host.split(".")
    return (
        key.port == port
        and len(key.labels) == len(labels)
        and all(
            fnmatch.fnmatchcase(label, glob) for glob, label in zip(key.labels, labels, strict=True)
        )
        and f"/{image.repository}".startswith(key.path)
    )


def build(sources: list[list[Key]]) -> Keyring:
    return Keyring(
        (
            f"ns/s{number}",
            [
                DockerConfigEntry(key=key.raw, credential=RegistryCredential.of(f"{number}", "p"))
                for key in keys_
            ],
        )
        for number, keys_ in enumerate(sources)
    )


def sources_for(image: ImageReference) -> st.SearchStrategy[list[list[Key]]]:
    key = keys() | keys_near(image)
    return st.lists(st.lists(key, max_size=5, unique_by=lambda k: k.raw), max_size=3)


@given(data=st.data(), image=images())
def test_lookup_equals_the_model(data: st.DataObject, image: ImageReference) -> None:
    """Every key that matches label by label, port and path prefix is returned, nothing
    else; most specific (reverse lexicographic) first, sources in order for equal keys."""
    sources = data.draw(sources_for(image))
    flat = [(number, key) for number, keys_ in enumerate(sources) for key in keys_]
    expected = sorted(
        ((f"ns/s{number}", key.raw) for number, key in flat if model_matches(key, image)),
        key=lambda pair: next(k.normalized for _, k in flat if k.raw == pair[1]),
        reverse=True,
    )
    found = [(match.source, match.key) for match in build(sources).lookup(image)]
    assert found == expected


@given(data=st.data(), image=images())
def test_a_key_never_reaches_another_host_unless_every_label_matches(
    data: st.DataObject, image: ImageReference
) -> None:
    key = data.draw(keys() | keys_near(image))
    matched = bool(build([[key]]).lookup(image))
    host, _, port = image.registry.partition(":")
    labels = host.split(".")
    if matched:
        assert key.port == port
        assert len(key.labels) == len(labels)
        for glob, label in zip(key.labels, labels, strict=True):
            assert fnmatch.fnmatchcase(label, glob)


@given(data=st.data(), image=images(), seed=st.integers())
def test_lookup_is_deterministic(data: st.DataObject, image: ImageReference, seed: int) -> None:
    sources = data.draw(sources_for(image))
    first = build(sources).lookup(image)
    assert build(sources).lookup(image) == first
    ring = build(sources)
    assert ring.lookup(image) == ring.lookup(image)
    # Within a source, the order of keys with distinct normalised forms does not matter.
    shuffled = []
    for keys_ in sources:
        distinct = list({key.normalized: key for key in keys_}.values())
        random.Random(seed).shuffle(distinct)
        shuffled.append(distinct)
    canonical = [list({key.normalized: key for key in keys_}.values()) for keys_ in sources]
    assert build(shuffled).lookup(image) == build(canonical).lookup(image)


@given(data=st.data(), repository=st.lists(_COMPONENT, min_size=1, max_size=2))
def test_docker_hub_fallback_only_when_nothing_matched(
    data: st.DataObject, repository: list[str]
) -> None:
    hub = Key("https://index.docker.io/v1/", ("index", "docker", "io"), "", "")
    image = ImageReference("docker.io", "/".join(repository))
    sources = data.draw(sources_for(image))
    ring = build([*sources, [hub]])
    direct = [key for keys_ in sources for key in keys_ if model_matches(key, image)]
    found = [match.key for match in ring.lookup(image)]
    if direct:
        assert hub.raw not in found
        assert len(found) == len(direct)
    else:
        assert found == [hub.raw]
