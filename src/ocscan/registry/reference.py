"""Image references as pods carry them, parsed and normalised the way the kubelet does.

The grammar and the normalisation are those of ``github.com/distribution/reference``
(``ParseNormalizedNamed``), which the kubelet applies before it looks up pull credentials:
``nginx:1.25`` is ``docker.io/library/nginx:1.25``, ``index.docker.io/x/y`` is
``docker.io/x/y``. Digests are checked like ``go-digest`` does (sha256, sha384, sha512 in
lower-case hex of the algorithm's length).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocscan.errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
"""The registry host every Docker Hub reference is normalised to."""

_LEGACY_DOCKER_HUB = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_LOCALHOST = "localhost"

_MAX_PATH = 255
_MAX_INPUT = 2048  # bounds the regex work on hostile input; far above any valid reference

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALPHANUMERIC}(?:{_SEPARATOR}{_ALPHANUMERIC})*"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"

_REFERENCE_RE = re.compile(
    rf"((?:{_DOMAIN}/)?{_REMOTE_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?", re.ASCII
)
_NAME_RE = re.compile(rf"(?:({_DOMAIN})/)?({_REMOTE_NAME})", re.ASCII)
_PATH_COMPONENT_RE = re.compile(_PATH_COMPONENT, re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")
_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.-]*://")

# Hex length of each digest algorithm the kubelet links in (go-digest's registered set).
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed, normalised image reference: where the image lives and which one it is."""

    registry: str
    """Registry host with optional port; Docker Hub is always ``docker.io``."""
    repository: str
    """Repository path on the registry, e.g. ``library/nginx``."""
    tag: str | None = None
    digest: str | None = None
    """``algorithm:hex`` when the reference pins a digest."""

    @property
    def name(self) -> str:
        """``registry/repository``: the form credentials are matched on."""
        return f"{self.registry}/{self.repository}"

    def with_digest(self, digest: str) -> ImageReference:
        """This reference pinned to ``digest`` (the tag is kept for display)."""
        _check_digest(f"{self.name}@{digest}", digest)
        return ImageReference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse ``text`` as a pod's ``image`` field, normalised like the kubelet does.

    Raises :class:`InvalidReferenceError` quoting ``text`` and saying what is wrong.
    """
    if not text:
        raise InvalidReferenceError(text, "the reference is empty")
    if len(text) > _MAX_INPUT:
        raise InvalidReferenceError(text, f"longer than {_MAX_INPUT} characters")
    if _IDENTIFIER_RE.fullmatch(text):
        raise InvalidReferenceError(text, "a 64-character hex identifier is not a repository name")
    domain, remainder = _split_docker_domain(text)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        raise InvalidReferenceError(text, "the repository path must be lower-case")

    match = _REFERENCE_RE.fullmatch(f"{domain}/{remainder}")
    if match is None:
        raise InvalidReferenceError(text, _diagnose(domain, remainder))
    name, tag, digest = match.groups()
    name_match = _NAME_RE.fullmatch(name)
    if name_match is None or name_match[1] is None:
        # e.g. "reg_io.com/app": distribution reads an invalid host as a path component,
        # leaving the reference without a registry; no runtime can pull that as meant.
        raise InvalidReferenceError(text, _diagnose(domain, remainder))
    registry, repository = name_match[1], name_match[2]
    if len(repository) > _MAX_PATH:
        raise InvalidReferenceError(
            text, f"the repository path is longer than {_MAX_PATH} characters"
        )
    if digest is not None:
        _check_digest(text, digest)
    return ImageReference(registry, repository, tag, digest)


def image_id_digest(image_id: str) -> str | None:
    """The manifest digest in a container status ``imageID``, or ``None`` when it has none.

    Accepts what container runtimes report: ``docker-pullable://host/repo@sha256:...``,
    ``host/repo@sha256:...``. Returns ``None`` for an empty value (container not started
    yet) and for a bare local image ID (``sha256:...``, ``docker://sha256:...``), which
    names an image configuration, not something a registry serves.
    """
    if not image_id:
        return None
    rest = image_id
    scheme = _SCHEME_RE.match(rest)
    if scheme is not None:
        rest = rest[scheme.end() :]
    if "@" in rest:
        try:
            digest = parse_reference(rest).digest
        except InvalidReferenceError as exc:
            reason = exc.reason
        else:
            return digest
        raise InvalidReferenceError(image_id, f"not a valid image ID: {reason}")
    if _DIGEST_RE.fullmatch(rest):
        _check_digest(image_id, rest)
        return None
    raise InvalidReferenceError(
        image_id, "not a valid image ID: expected [scheme://]name@algorithm:hex or algorithm:hex"
    )


def _split_docker_domain(name: str) -> tuple[str, str]:
    """Split off the registry host, defaulting to Docker Hub (distribution's rules)."""
    first, slash, rest = name.partition("/")
    if not slash:
        return DOCKER_HUB, _OFFICIAL_PREFIX + name
    if first == _LEGACY_DOCKER_HUB:
        domain, remainder = DOCKER_HUB, rest
    elif first == _LOCALHOST or any(c in first for c in ".:") or first.lower() != first:
        # A dot, a port or upper case cannot be a Docker Hub namespace: it is a host.
        domain, remainder = first, rest
    else:
        domain, remainder = DOCKER_HUB, name
    if domain == DOCKER_HUB and "/" not in remainder:
        remainder = _OFFICIAL_PREFIX + remainder
    return domain, remainder


def _check_digest(text: str, digest: str) -> None:
    algorithm, _, encoded = digest.partition(":")
    if not _DIGEST_RE.fullmatch(digest):
        raise InvalidReferenceError(text, f"invalid digest {digest!r}: expected algorithm:hex")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is None:
        raise InvalidReferenceError(text, f"unsupported digest algorithm {algorithm!r}")
    if len(encoded) != length:
        raise InvalidReferenceError(
            text, f"a {algorithm} digest has {length} hex characters, not {len(encoded)}"
        )
    if encoded.lower() != encoded:
        raise InvalidReferenceError(text, "the digest must be lower-case hex")


def _diagnose(domain: str, remainder: str) -> str:
    """The most specific reason why ``domain/remainder`` is not a valid reference."""
    full = f"{domain}/{remainder}"
    if any(c.isspace() or not c.isprintable() for c in full):
        return "contains whitespace or control characters"
    name_and_tag, at, digest = full.partition("@")
    if at:
        if "@" in digest:
            return "more than one '@'"
        if not digest:
            return "empty digest after '@'"
        if not _DIGEST_RE.fullmatch(digest):
            return f"invalid digest {digest!r}: expected algorithm:hex"
    name = name_and_tag
    colon = name_and_tag.rfind(":")
    if colon > name_and_tag.rfind("/"):
        name, tag = name_and_tag[:colon], name_and_tag[colon + 1 :]
        if not tag:
            return "empty tag after ':'"
        if not _TAG_RE.fullmatch(tag):
            return (
                f"invalid tag {tag!r}: up to 128 letters, digits, '_', '.' and '-', "
                "not starting with '.' or '-'"
            )
    components = name.split("/")
    if any(not component for component in components):
        return "empty path component (leading, trailing or double '/')"
    if not _DOMAIN_RE.fullmatch(domain):
        return f"invalid registry host {domain!r}"
    for component in components[1:]:
        if _PATH_COMPONENT_RE.fullmatch(component):
            continue
        if _PATH_COMPONENT_RE.fullmatch(component.lower()):
            return "the repository path must be lower-case"
        return (
            f"invalid path component {component!r}: lower-case letters and digits, "
            "joined by single '.', '_', '__' or runs of '-'"
        )
    return "invalid reference format"
